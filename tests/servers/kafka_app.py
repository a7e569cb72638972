"""An HTTP service that produces to and consumes from Kafka while serving its
requests, for the Kafka end-to-end tests (tests/tests/kafka.rs). Run with
/usr/bin/python3 (Debian's python3-kafka: kafka-python).

    kafka_app.py PORT

The broker is at 127.0.0.1:ZT_KAFKA_PORT, tansu's own program at ZT_TANSU (tests/src/kafka_broker.rs starts
tansu there with the topics `orders` and `payments`, the latter checked by a
JSON schema). Prints "listening" once its socket is bound.

One GET path per scenario, each on fresh client connections (so the agent
sees them from their first byte): answers 200 "ok" when every call went as
expected, 500 with the traceback otherwise.
"""
import os
import subprocess
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"


def bootstrap():
    return f"{HOST}:{int(os.environ['ZT_KAFKA_PORT'])}"


def producer(client_id):
    from kafka import KafkaProducer

    # linger: the three sends of a scenario go in one batch, one Produce request.
    return KafkaProducer(
        bootstrap_servers=bootstrap(),
        client_id=client_id,
        acks=1,
        linger_ms=200,
        retries=0,
    )


def produce_orders():
    """Three messages to `orders` partition 0 in one batch."""
    p = producer("zt-order-producer")
    futures = [
        p.send("orders", key=b"k%d" % i, value=b'{"order": %d}' % i, partition=0)
        for i in range(3)
    ]
    p.flush(10)
    for f in futures:
        f.get(10)
    p.close(5)


def consume_orders():
    """Polls `orders` from three before its end until it has three messages."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(
        bootstrap_servers=bootstrap(),
        client_id="zt-order-consumer",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    tp = TopicPartition("orders", 0)
    c.assign([tp])
    # The last batch (three messages) only: its fetch response fits in what
    # the kernel captures of a read (512 bytes), so its count is known.
    end = c.end_offsets([tp])[tp]
    c.seek(tp, max(end - 3, 0))
    got = 0
    for _ in range(50):
        batches = c.poll(timeout_ms=200)
        got += sum(len(records) for records in batches.values())
        if got >= 3:
            break
    c.close()
    assert got >= 3, f"consumed {got} messages"


def produce_invalid():
    """A value that is not JSON to `payments`, whose schema the broker checks:
    the broker refuses it (INVALID_RECORD, 87, on the wire; kafka-python
    2.0.2 does not know that code and raises UnknownError)."""
    from kafka.errors import KafkaError

    p = producer("zt-payment-producer")
    future = p.send("payments", value=b"not json", partition=0)
    p.flush(10)
    try:
        future.get(10)
    except KafkaError:
        pass
    else:
        raise AssertionError("the broker accepted a record its schema refuses")
    finally:
        p.close(5)


def tansu_cat():
    """`tansu cat consume` as a child (instrumented with the service): newer
    API versions than kafka-python's, Metadata v12 and Fetch v17 naming the
    topic by id. The program is at ZT_TANSU."""
    out = subprocess.run(
        [
            os.environ["ZT_TANSU"],
            "cat",
            "consume",
            "--broker",
            f"tcp://{bootstrap()}",
            "--max-wait-time-ms",
            "200",
            "orders",
        ],
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert b"order" in out.stdout, out


ROUTES = {
    "/produce": produce_orders,
    "/consume": consume_orders,
    "/produce/invalid": produce_invalid,
    "/tansu-cat": tansu_cat,
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        scenario = ROUTES.get(self.path)
        if scenario is None:
            self.reply(404, b"no such scenario\n")
            return
        try:
            scenario()
        except Exception:  # noqa: BLE001 - the test prints what went wrong
            self.reply(500, traceback.format_exc().encode())
            return
        self.reply(200, b"ok\n")


def main():
    server = ThreadingHTTPServer((HOST, int(sys.argv[1])), Handler)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

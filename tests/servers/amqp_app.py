"""An HTTP service that publishes to and consumes from RabbitMQ while
serving its requests, for the AMQP end-to-end tests (tests/tests/amqp.rs).
Run with /usr/bin/python3 (Debian's python3-pika, 1.2: AMQP 0-9-1).

    amqp_app.py PORT

The broker is at 127.0.0.1:ZT_AMQP_PORT (tests/src/amqp_broker.rs starts
Debian's rabbitmq-server there). Prints "listening" once its socket is bound.

One GET path per scenario (scenario_server.py), each on fresh connections
(so the agent sees them from their first byte).
"""
import os
import sys
import threading
import urllib.request
import uuid

import pika
from pika.exceptions import ChannelClosedByBroker

from scenario_server import HOST, serve


def connection():
    params = pika.ConnectionParameters(
        host=HOST,
        port=int(os.environ["ZT_AMQP_PORT"]),
        heartbeat=0,
        client_properties={"connection_name": "zt-amqp-app"},
    )
    return pika.BlockingConnection(params)


def publish():
    """Two messages to the default exchange (routing key `orders`), then two
    more with publisher confirms, then one to an exchange that does not
    exist: the broker closes the channel with 404 NOT_FOUND."""
    with connection() as conn:
        channel = conn.channel()
        channel.queue_declare("orders")
        for i in range(2):
            channel.basic_publish("", "orders", b"order %d" % i)
        channel.confirm_delivery()
        for i in range(2, 4):
            channel.basic_publish("", "orders", b"order %d" % i)
        try:
            channel.basic_publish("missing", "orders", b"lost")
            raise AssertionError("the publish to a missing exchange succeeded")
        except ChannelClosedByBroker as e:
            assert e.reply_code == 404, e


def publish_large():
    """A 200 KB message (two body frames) with confirms, then a small one."""
    with connection() as conn:
        channel = conn.channel()
        channel.exchange_declare("blobs", exchange_type="fanout")
        channel.confirm_delivery()
        for body in (b"x" * 200_000, b"small"):
            channel.basic_publish("blobs", "", body)


def consume():
    """Three messages published to a queue of this call's own (`jobs-…`:
    tests share the broker and run at once), then consumed with manual
    acknowledgements on another channel."""
    queue = "jobs-" + uuid.uuid4().hex[:12]
    with connection() as conn:
        producer = conn.channel()
        producer.queue_declare(queue, auto_delete=True)
        for i in range(3):
            producer.basic_publish("", queue, b"job %d" % i)
        consumer = conn.channel()
        received = []
        for method, _properties, body in consumer.consume(queue, inactivity_timeout=10):
            assert method is not None, received
            received.append(body)
            consumer.basic_ack(method.delivery_tag)
            if len(received) == 3:
                break
        consumer.cancel()
        assert received == [b"job 0", b"job 1", b"job 2"], received


def consume_calling(prefetch):
    """Three jobs (`0`, `1`, `2`) published to a queue of this call's own
    (`calls-…`), then consumed by a consumer thread with a connection of its
    own (as a service's consumer runs beside its HTTP handlers), which for
    each job calls this service's `/noop/{job}` before acknowledging it.
    `prefetch`: how many unacknowledged deliveries the broker may push
    (None: no limit, so they may come read together)."""
    queue = "calls-" + uuid.uuid4().hex[:12]
    with connection() as conn:
        producer = conn.channel()
        producer.queue_declare(queue)
        for i in range(3):
            producer.basic_publish("", queue, b"%d" % i)
    outcome = []

    def consumer():
        try:
            with connection() as conn:
                channel = conn.channel()
                if prefetch is not None:
                    channel.basic_qos(prefetch_count=prefetch)
                done = []
                for method, _properties, body in channel.consume(queue, inactivity_timeout=10):
                    assert method is not None, done
                    url = "http://%s:%s/noop/%s" % (HOST, sys.argv[1], body.decode())
                    with urllib.request.urlopen(url) as answer:
                        assert answer.read() == b"ok\n"
                    channel.basic_ack(method.delivery_tag)
                    done.append(body)
                    if len(done) == 3:
                        break
                channel.cancel()
                channel.queue_delete(queue)
                assert done == [b"0", b"1", b"2"], done
                outcome.append(None)
        except Exception as e:  # reported by the scenario's thread
            outcome.append(e)

    thread = threading.Thread(target=consumer, name="consumer")
    thread.start()
    thread.join(30)
    if not outcome:
        raise AssertionError("the consumer did not finish")
    if outcome[0] is not None:
        raise outcome[0]


# The trace context of an SDK-instrumented requester (the W3C
# specification's example).
REQUESTER_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def rpc():
    """RPC over RabbitMQ, as pika's tutorial does it: a responder thread
    with a connection of its own serves the queue `rpc-…` (prefetch 1),
    calling this service's `/noop/{job}` for each request before it
    publishes the answer to the request's `reply_to` with its
    `correlation_id` and acknowledges the request. This thread asks for
    jobs 0 and 1 (job 1 with a `traceparent` header, as an SDK's
    instrumentation writes it) and reads each answer on a callback queue of
    its own."""
    queue = "rpc-" + uuid.uuid4().hex[:12]
    ready = threading.Event()
    outcome = []

    def responder():
        try:
            with connection() as conn:
                channel = conn.channel()
                channel.queue_declare(queue, auto_delete=True)
                channel.basic_qos(prefetch_count=1)
                ready.set()
                served = 0
                for method, properties, body in channel.consume(queue, inactivity_timeout=10):
                    assert method is not None, served
                    url = "http://%s:%s/noop/%s" % (HOST, sys.argv[1], body.decode())
                    with urllib.request.urlopen(url) as answer:
                        assert answer.read() == b"ok\n"
                    answered = pika.BasicProperties(correlation_id=properties.correlation_id)
                    channel.basic_publish("", properties.reply_to, b"done " + body, answered)
                    channel.basic_ack(method.delivery_tag)
                    served += 1
                    if served == 2:
                        break
                channel.cancel()
            outcome.append(None)
        except Exception as e:  # reported by the scenario's thread
            outcome.append(e)
            ready.set()

    thread = threading.Thread(target=responder, name="responder")
    thread.start()
    assert ready.wait(30), "the responder did not start"
    with connection() as conn:
        channel = conn.channel()
        callback = channel.queue_declare("", exclusive=True).method.queue
        answers = {}

        def on_answer(_channel, _method, properties, body):
            answers[properties.correlation_id] = body

        channel.basic_consume(callback, on_answer, auto_ack=True)
        for job, headers in ((b"0", None), (b"1", {"traceparent": REQUESTER_TRACEPARENT})):
            correlation_id = uuid.uuid4().hex
            asked = pika.BasicProperties(
                reply_to=callback, correlation_id=correlation_id, headers=headers
            )
            channel.basic_publish("", queue, job, asked)
            while correlation_id not in answers:
                conn.process_data_events(time_limit=10)
            assert answers[correlation_id] == b"done " + job, answers
    thread.join(30)
    if not outcome:
        raise AssertionError("the responder did not finish")
    if outcome[0] is not None:
        raise outcome[0]


# A connection opened before the agent starts, kept for later requests
# (services keep theirs for days).
LONG_LIVED = {}
LONG_LIVED_LOCK = threading.Lock()


def long_lived_open():
    """Opens the kept connection and its channel (queue `long-lived`)."""
    with LONG_LIVED_LOCK:
        conn = connection()
        channel = conn.channel()
        channel.queue_declare("long-lived")
        LONG_LIVED["channel"] = channel


def long_lived_publish():
    """Two publishes on the kept connection."""
    with LONG_LIVED_LOCK:
        channel = LONG_LIVED["channel"]
        for i in range(2):
            channel.basic_publish("", "long-lived", b"kept %d" % i)


SCENARIOS = {
    "/long-lived/open": long_lived_open,
    "/long-lived/publish": long_lived_publish,
    "/publish": publish,
    "/publish/large": publish_large,
    "/consume": consume,
    "/consume/calling": lambda: consume_calling(1),
    "/consume/calling/batched": lambda: consume_calling(None),
    "/rpc": rpc,
}
# What the consumer calls for each job.
SCENARIOS.update({"/noop/%d" % i: lambda: None for i in range(3)})


if __name__ == "__main__":
    serve(SCENARIOS)

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
import threading
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
}


if __name__ == "__main__":
    serve(SCENARIOS)

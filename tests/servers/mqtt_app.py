"""An HTTP service that publishes to and receives from an MQTT broker while
serving its requests, for the MQTT end-to-end tests (tests/tests/mqtt.rs).
Run with /usr/bin/python3 (Debian's python3-paho-mqtt, 1.6).

    mqtt_app.py PORT

The broker is at 127.0.0.1:ZT_MQTT_PORT (tests/src/mqtt_broker.rs starts
Debian's mosquitto there; its ACL lets clients write `sensors/#` and
`alerts/#` and only read `locked/#`). Prints "listening" once its socket is
bound.

One GET path per scenario (scenario_server.py), each on fresh client
connections (so the agent sees them from their first byte).
"""
import os
import sys
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt

from scenario_server import HOST, serve

TIMEOUT = 10


def connected(client_id, protocol=mqtt.MQTTv311):
    """A client connected to the broker, its network loop running."""
    client = mqtt.Client(client_id=client_id, protocol=protocol)
    ready = threading.Event()
    client.on_connect = lambda *args: ready.set()
    client.connect(HOST, int(os.environ["ZT_MQTT_PORT"]), keepalive=30)
    client.loop_start()
    assert ready.wait(TIMEOUT), "no CONNACK"
    return client


def subscribed(client_id, topic, qos, on_message):
    """A client connected and subscribed to `topic`, its messages handed to
    `on_message` on paho's network thread."""
    client = connected(client_id)
    client.on_message = on_message
    acknowledged = threading.Event()
    client.on_subscribe = lambda *args: acknowledged.set()
    client.subscribe(topic, qos=qos)
    assert acknowledged.wait(TIMEOUT), "no SUBACK"
    return client


def close(client):
    client.disconnect()
    client.loop_stop()


def publish():
    """`sensors/temp` at QoS 0, 1 and 2, each acknowledged as its QoS asks."""
    client = connected("zt-publisher")
    for qos in (0, 1, 2):
        info = client.publish("sensors/temp", b"21.5", qos=qos)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), qos
    close(client)


def publish_large():
    """100 KB to `sensors/blob` at QoS 1, then a small message after it."""
    client = connected("zt-blob-publisher")
    for payload in (b"x" * 100_000, b"small"):
        info = client.publish("sensors/blob", payload, qos=1)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()
    close(client)


def publish_refused():
    """MQTT 5: a QoS 1 publish to `locked/door`, which the ACL refuses:
    mosquitto answers PUBACK with reason 0x87 (not authorized)."""
    client = connected("zt-v5-publisher", protocol=mqtt.MQTTv5)
    refused = threading.Event()

    def on_publish(_client, _userdata, _mid):
        refused.set()

    client.on_publish = on_publish
    client.publish("locked/door", b"open", qos=1)
    assert refused.wait(TIMEOUT), "no PUBACK"
    close(client)


def consume():
    """A subscriber to `alerts/#` receives three messages (QoS 0, 1, 2) that
    another client publishes to `alerts/fire`."""
    received = []
    done = threading.Event()

    def on_message(_client, _userdata, message):
        received.append(message.qos)
        if len(received) == 3:
            done.set()

    subscriber = subscribed("zt-subscriber", "alerts/#", 2, on_message)
    publisher = connected("zt-alerter")
    for qos in (0, 1, 2):
        publisher.publish("alerts/fire", b"smoke %d" % qos, qos=qos).wait_for_publish(TIMEOUT)
    assert done.wait(TIMEOUT), received
    close(publisher)
    close(subscriber)
    assert sorted(received) == [0, 1, 2], received


def consume_calling():
    """A subscriber to `alerts/jobs` calls this service's `/noop/{job}` for
    each of two messages (QoS 1) before paho acknowledges it, on paho's
    network thread (where `on_message` runs). The second is published once
    the first was processed, and a moment more: paho reads every packet
    waiting before it writes the acknowledgements queued meanwhile, so a
    message already there when the first is processed would be read before
    the first's PUBACK is written (both deliveries then hold its call)."""
    done = []
    processed = [threading.Event(), threading.Event()]

    def on_message(_client, _userdata, message):
        url = "http://%s:%s/noop/%s" % (HOST, sys.argv[1], message.payload.decode())
        with urllib.request.urlopen(url) as answer:
            assert answer.read() == b"ok\n"
        done.append(message.payload)
        processed[len(done) - 1].set()

    subscriber = subscribed("zt-worker", "alerts/jobs", 1, on_message)
    publisher = connected("zt-dispatcher")
    for job, was_processed in zip((b"0", b"1"), processed):
        publisher.publish("alerts/jobs", job, qos=1).wait_for_publish(TIMEOUT)
        assert was_processed.wait(TIMEOUT), done
        time.sleep(0.1)
    close(publisher)
    close(subscriber)
    assert done == [b"0", b"1"], done


# A client connected before the agent starts, kept for later requests
# (clients keep their connections for days).
LONG_LIVED = {}


def long_lived_open():
    """Connects the kept client."""
    LONG_LIVED["client"] = connected("zt-long-lived")


def long_lived_publish():
    """Two QoS 1 publishes to `sensors/kept` on the kept connection."""
    client = LONG_LIVED["client"]
    for _ in range(2):
        info = client.publish("sensors/kept", b"1", qos=1)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()


SCENARIOS = {
    "/long-lived/open": long_lived_open,
    "/long-lived/publish": long_lived_publish,
    "/publish": publish,
    "/publish/large": publish_large,
    "/publish/refused": publish_refused,
    "/consume": consume,
    "/consume/calling": consume_calling,
}
# What the subscriber calls for each job.
SCENARIOS.update({"/noop/%d" % i: lambda: None for i in range(2)})


if __name__ == "__main__":
    serve(SCENARIOS)

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
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

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


def subscribed(client_id, topic, qos, on_message, protocol=mqtt.MQTTv311):
    """A client connected and subscribed to `topic`, its messages handed to
    `on_message` on paho's network thread."""
    client = connected(client_id, protocol)
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


# The trace context of an SDK-instrumented requester (the W3C
# specification's example).
REQUESTER_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def request():
    """MQTT 5 request/response: a responder subscribed to `sensors/work`
    (QoS 1) calls this service's `/noop/{job}` for each request on paho's
    network thread, then publishes the answer to the request's response
    topic with its correlation data. A requester asks for jobs 0 and 1
    (job 1 with a `traceparent` user property, as an SDK's instrumentation
    writes it), each once the last was answered."""
    answers = {}
    answered = threading.Event()

    def on_request(client, _userdata, message):
        url = "http://%s:%s/noop/%s" % (HOST, sys.argv[1], message.payload.decode())
        with urllib.request.urlopen(url) as answer:
            assert answer.read() == b"ok\n"
        reply = Properties(PacketTypes.PUBLISH)
        reply.CorrelationData = message.properties.CorrelationData
        client.publish(message.properties.ResponseTopic, b"done", qos=1, properties=reply)

    def on_answer(_client, _userdata, message):
        answers[message.properties.CorrelationData] = message.payload
        answered.set()

    responder = subscribed("zt-responder", "sensors/work", 1, on_request, mqtt.MQTTv5)
    requester = subscribed("zt-requester", "alerts/answers", 1, on_answer, mqtt.MQTTv5)
    for job, user_properties in ((b"0", []), (b"1", [("traceparent", REQUESTER_TRACEPARENT)])):
        asked = Properties(PacketTypes.PUBLISH)
        asked.ResponseTopic = "alerts/answers"
        asked.CorrelationData = b"job-" + job
        for name_value in user_properties:
            asked.UserProperty = name_value
        answered.clear()
        requester.publish("sensors/work", job, qos=1, properties=asked).wait_for_publish(TIMEOUT)
        assert answered.wait(TIMEOUT), answers
        assert answers[b"job-" + job] == b"done", answers
        time.sleep(0.1)
    close(requester)
    close(responder)


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
    "/request": request,
}
# What the subscriber calls for each job.
SCENARIOS.update({"/noop/%d" % i: lambda: None for i in range(2)})


if __name__ == "__main__":
    serve(SCENARIOS)

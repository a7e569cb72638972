"""An HTTP service that publishes to, requests from and receives from a NATS
server while serving its requests, for the NATS end-to-end tests
(tests/tests/nats.rs). Run with the venv's python3 that
tests/servers/ensure-nats-client.sh prints (nats-py, from PyPI).

    nats_app.py PORT

The server is at 127.0.0.1:ZT_NATS_PORT (tests/src/nats_server.rs starts
Debian's nats-server there, with JetStream on; user `app`, password
`secret`, may not publish to `locked.>`). With ZT_NATS_TLS_CA (the server's
self-signed certificate) it connects with TLS (Python's ssl: OpenSSL).
Prints "listening" once its socket is bound.

One GET path per scenario (scenario_server.py), each on fresh client
connections (so the agent sees them from their first byte).
"""
import asyncio
import os
import ssl
import sys
import threading
import urllib.request

import nats
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

from scenario_server import HOST, serve

TIMEOUT = 10


async def connected(name):
    """A client connected to the server as `name` (over TLS when asked)."""
    ca = os.environ.get("ZT_NATS_TLS_CA")
    scheme, tls = ("tls", ssl.create_default_context(cafile=ca)) if ca else ("nats", None)
    return await nats.connect(
        f"{scheme}://app:secret@{HOST}:{os.environ['ZT_NATS_PORT']}",
        tls=tls,
        name=name,
        connect_timeout=TIMEOUT,
        allow_reconnect=False,
        error_cb=ignore,
    )


async def ignore(_error):
    pass


async def publish():
    """Two messages to `orders.created`, flushed."""
    nc = await connected("zt-publisher")
    for order in (b"1", b"2"):
        await nc.publish("orders.created", order)
    await nc.flush(TIMEOUT)
    await nc.close()


async def publish_large():
    """200 KB to `orders.blob`, flushed, then a small message after it."""
    nc = await connected("zt-blob-publisher")
    await nc.publish("orders.blob", b"x" * 200_000)
    await nc.flush(TIMEOUT)
    await nc.publish("orders.blob", b"small")
    await nc.flush(TIMEOUT)
    await nc.close()


async def request():
    """A responder on `svc.add` answers a request; a request to `svc.none`
    finds no responder (the server's 503 status message)."""
    responder = await connected("zt-responder")

    async def add(msg):
        a, b = msg.data.split()
        await msg.respond(str(int(a) + int(b)).encode())

    await responder.subscribe("svc.add", cb=add)
    await responder.flush(TIMEOUT)
    requester = await connected("zt-requester")
    reply = await requester.request("svc.add", b"2 3", timeout=TIMEOUT)
    assert reply.data == b"5", reply.data
    try:
        await requester.request("svc.none", b"?", timeout=TIMEOUT)
        raise AssertionError("svc.none answered")
    except NoRespondersError:
        pass
    await requester.close()
    await responder.close()


async def request_refused():
    """A request to `locked.door`, which the user may not publish to: the
    server answers -ERR 'Permissions Violation for Publish to "locked.door"'
    and the request times out."""
    nc = await connected("zt-intruder")
    try:
        await nc.request("locked.door", b"open", timeout=0.5)
        raise AssertionError("locked.door answered")
    except NatsTimeout:
        pass
    await nc.close()


async def consume():
    """A subscriber to `events.>` receives two messages another client
    publishes to `events.login`."""
    subscriber = await connected("zt-subscriber")
    sub = await subscriber.subscribe("events.>")
    await subscriber.flush(TIMEOUT)
    emitter = await connected("zt-emitter")
    for user in (b"ada", b"bob"):
        await emitter.publish("events.login", user)
    await emitter.flush(TIMEOUT)
    received = [await sub.next_msg(timeout=TIMEOUT) for _ in range(2)]
    assert [m.data for m in received] == [b"ada", b"bob"], received
    await emitter.close()
    await subscriber.close()


# The W3C trace context an SDK-instrumented publisher would put in a
# message's headers (the specification's example).
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def consume_traced():
    """A message to `events.traced` whose headers carry a traceparent, as an
    OpenTelemetry SDK's NATS instrumentation writes it, received by a
    subscriber."""
    subscriber = await connected("zt-traced-subscriber")
    sub = await subscriber.subscribe("events.traced")
    await subscriber.flush(TIMEOUT)
    emitter = await connected("zt-traced-emitter")
    await emitter.publish(
        "events.traced", b"ada", headers={"Nats-Msg-Id": "1", "traceparent": TRACEPARENT}
    )
    await emitter.flush(TIMEOUT)
    msg = await sub.next_msg(timeout=TIMEOUT)
    assert msg.headers["traceparent"] == TRACEPARENT, msg.headers
    await emitter.close()
    await subscriber.close()


async def jetstream():
    """A JetStream publish to `jobs.new` (acknowledged by the stream), then a
    pull consumer fetches it and acknowledges it."""
    nc = await connected("zt-jetstream")
    js = nc.jetstream()
    await js.add_stream(name="JOBS", subjects=["jobs.>"])
    ack = await js.publish("jobs.new", b"build", timeout=TIMEOUT)
    assert ack.stream == "JOBS", ack
    sub = await js.pull_subscribe("jobs.new", durable="worker")
    msgs = await sub.fetch(1, timeout=TIMEOUT)
    assert [m.data for m in msgs] == [b"build"], msgs
    for msg in msgs:
        await msg.ack()
    await nc.flush(TIMEOUT)
    await js.delete_stream("JOBS")
    await nc.close()


# The trace context of an SDK-instrumented requester (another of the
# specification's examples).
REQUESTER_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def request_calling():
    """A responder on `svc.work`, on a thread and event loop of its own (as a
    NATS service runs beside its HTTP handlers), calls this service's
    `/noop/{job}` for each request before it answers; job 0 is requested
    plainly, job 1 with a traceparent in its headers."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="responder", daemon=True)
    thread.start()

    def on_loop(coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(TIMEOUT)

    async def start_responder():
        nc = await connected("zt-worker")

        async def work(msg):
            url = "http://%s:%s/noop/%s" % (HOST, sys.argv[1], msg.data.decode())
            # Blocking, on the responder's thread: the call its processing makes.
            with urllib.request.urlopen(url) as answer:
                assert answer.read() == b"ok\n"
            await msg.respond(b"done")

        await nc.subscribe("svc.work", cb=work)
        await nc.flush(TIMEOUT)
        return nc

    async def ask():
        nc = await connected("zt-boss")
        for job, headers in ((b"0", None), (b"1", {"traceparent": REQUESTER_TRACEPARENT})):
            reply = await nc.request("svc.work", job, timeout=TIMEOUT, headers=headers)
            assert reply.data == b"done", reply.data
        await nc.close()

    try:
        responder = on_loop(start_responder())
        asyncio.run(ask())
        on_loop(responder.close())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)


# A client connected before the agent starts, kept for later requests
# (clients keep their connections for days), its event loop in a thread.
LONG_LIVED = {}


def long_lived_open():
    """Connects the kept client on its own loop."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    LONG_LIVED["loop"] = loop
    LONG_LIVED["client"] = on_long_lived(connected("zt-long-lived"))


def on_long_lived(coroutine):
    return asyncio.run_coroutine_threadsafe(coroutine, LONG_LIVED["loop"]).result(TIMEOUT)


def long_lived_publish():
    """Two messages to `orders.kept` on the kept connection, flushed."""
    nc = LONG_LIVED["client"]

    async def send():
        for _ in range(2):
            await nc.publish("orders.kept", b"1")
        await nc.flush(TIMEOUT)

    on_long_lived(send())


def run(coroutine_function):
    return lambda: asyncio.run(coroutine_function())


SCENARIOS = {
    "/long-lived/open": long_lived_open,
    "/long-lived/publish": long_lived_publish,
    "/publish": run(publish),
    "/publish/large": run(publish_large),
    "/request": run(request),
    "/request/refused": run(request_refused),
    "/consume": run(consume),
    "/consume/traced": run(consume_traced),
    "/jetstream": run(jetstream),
    "/request/calling": request_calling,
}
# What the responder calls for each job.
SCENARIOS.update({"/noop/%d" % i: lambda: None for i in range(2)})


if __name__ == "__main__":
    serve(SCENARIOS)

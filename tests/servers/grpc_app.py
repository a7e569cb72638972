#!/usr/bin/python3
"""A gRPC server and client (grpcio, generic handlers, raw bytes: no codegen)
for the end-to-end tests. Run with Debian's /usr/bin/python3 (python3-grpcio).

  grpc_app.py server PORT   serves zerotrace.test.Echo on 127.0.0.1:PORT
  grpc_app.py client PORT   waits for a line on stdin, then makes one call of
                            each kind and prints "<method> <STATUS> <detail>"
  grpc_app.py client-fetch PORT TARGET N
                            the same wait, then N concurrent unary Fetch calls,
                            the i-th asking for TARGET/i
  grpc_app.py client-metadata PORT
                            the same wait, then 5 unary Say calls on one
                            channel, the first 3 with 2 KB of `authorization`
                            metadata (header blocks past 512 bytes)
  grpc_app.py client-large PORT
                            the same wait, then Say calls of 10 B to 100 KB
                            one after another, 20 of 8 KB at once, and a small
                            one; prints "Say OK <response length>" for each

Methods: Say (unary, OK), Count (server streaming: N messages 100 ms apart),
Slow (Count, called with a 250 ms deadline for 5 messages: DEADLINE_EXCEEDED),
Find (NOT_FOUND), Fetch (the request is "PORT/PATH": the handler GETs
http://127.0.0.1:PORT/PATH with http.client and answers with the body), Crash (the handler raises: UNKNOWN), and Missing, which the
server does not have (UNIMPLEMENTED). The client starts with a Ping: grpc's
C core writes a connection's first flight (preface, SETTINGS, the first
call's headers; the first response and its trailers) with one sendmsg of 12
to 30 iovecs, which the kernel side must capture whole.
"""

import http.client
import sys
import time
from concurrent import futures

import grpc

SERVICE = "zerotrace.test.Echo"


def say(request, context):
    return b"hello " + request


def count(request, context):
    for i in range(int(request or b"3")):
        time.sleep(0.1)
        yield str(i).encode()


def find(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such item: " + request.decode())


def fetch(request, context):
    port, _, path = request.decode().partition("/")
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=5)
    conn.request("GET", "/" + path)
    body = conn.getresponse().read()
    conn.close()
    return body


def crash(request, context):
    raise RuntimeError("the handler failed")


def serve(port):
    handlers = {
        "Ping": grpc.unary_unary_rpc_method_handler(lambda request, context: b"pong"),
        "Say": grpc.unary_unary_rpc_method_handler(say),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Slow": grpc.unary_stream_rpc_method_handler(count),
        "Find": grpc.unary_unary_rpc_method_handler(find),
        "Crash": grpc.unary_unary_rpc_method_handler(crash),
        "Fetch": grpc.unary_unary_rpc_method_handler(fetch),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    server.wait_for_termination()


def call(name, invoke):
    try:
        detail = invoke()
        print(name, "OK", detail, flush=True)
    except grpc.RpcError as error:
        print(name, error.code().name, error.details(), flush=True)


def client(port):
    sys.stdin.readline()
    options = [("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel("127.0.0.1:%d" % port, options=options) as channel:
        method = lambda name: "/%s/%s" % (SERVICE, name)
        call("Ping", lambda: channel.unary_unary(method("Ping"))(b"", timeout=10).decode())
        call("Say", lambda: channel.unary_unary(method("Say"))(b"python", timeout=10).decode())
        call("Count", lambda: len(list(channel.unary_stream(method("Count"))(b"3", timeout=10))))
        call("Slow", lambda: len(list(channel.unary_stream(method("Slow"))(b"5", timeout=0.25))))
        call("Find", lambda: channel.unary_unary(method("Find"))(b"42", timeout=10))
        call("Crash", lambda: channel.unary_unary(method("Crash"))(b"", timeout=10))
        call("Missing", lambda: channel.unary_unary(method("Missing"))(b"", timeout=10))
    print("done", flush=True)


def client_fetch(port, target, n):
    sys.stdin.readline()
    options = [("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel("127.0.0.1:%d" % port, options=options) as channel:
        fetch = channel.unary_unary("/%s/Fetch" % SERVICE)
        with futures.ThreadPoolExecutor(max_workers=n) as pool:
            calls = [pool.submit(fetch, ("%s/%d" % (target, i)).encode(), timeout=10) for i in range(n)]
            for done in calls:
                print("Fetch OK", done.result().decode().strip(), flush=True)
    print("done", flush=True)


def client_metadata(port):
    sys.stdin.readline()
    options = [("grpc.enable_http_proxy", 0)]
    token = "Bearer " + "m" * 2041
    with grpc.insecure_channel("127.0.0.1:%d" % port, options=options) as channel:
        say = channel.unary_unary("/%s/Say" % SERVICE)
        for i in range(5):
            metadata = [("authorization", token)] if i < 3 else []
            call("Say", lambda: say(str(i).encode(), timeout=10, metadata=metadata).decode())
    print("done", flush=True)


def client_large(port):
    # Messages larger than the capture both ways: "hello " + the request.
    sys.stdin.readline()
    options = [("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel("127.0.0.1:%d" % port, options=options) as channel:
        say = channel.unary_unary("/%s/Say" % SERVICE)
        for size in LARGE_SIZES:
            call("Say", lambda: len(say(b"x" * size, timeout=10)))
        with futures.ThreadPoolExecutor(max_workers=LARGE_AT_ONCE) as pool:
            calls = [pool.submit(say, b"y" * 8000, timeout=10) for _ in range(LARGE_AT_ONCE)]
            for done in calls:
                print("Say OK", len(done.result()), flush=True)
        call("Say", lambda: len(say(b"last", timeout=10)))
    print("done", flush=True)


# client-large: the sequential calls' request sizes, then that many at once of 8000 bytes.
LARGE_SIZES = [20000, 10, 3000, 100000, 10, 1000, 60000, 10]
LARGE_AT_ONCE = 20


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "server":
        serve(port)
    elif mode == "client-fetch":
        client_fetch(port, sys.argv[3], int(sys.argv[4]))
    elif mode == "client-metadata":
        client_metadata(port)
    elif mode == "client-large":
        client_large(port)
    else:
        client(port)

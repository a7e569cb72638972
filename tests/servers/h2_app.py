#!/usr/bin/python3
"""HTTP/2 with prior knowledge (h2c) on the `h2` protocol library (Debian
python3-h2), server and client, for the end-to-end tests. Run with Debian's
/usr/bin/python3.

  h2_app.py server PORT          serves 127.0.0.1:PORT: /status/NNN -> NNN with
                                 an empty body; /trailers/N -> 200, its HEADERS
                                 in one write, then N body bytes and trailers
                                 (HEADERS after DATA) in the next; anything
                                 else -> 200 and the body "ok <path>\\n"
  h2_app.py client PORT SPEC     SPEC is JSON: {"concurrent": bool,
                                 "requests": [{"path": "/x", "method": "GET",
                                 "headers": [["name", "value"], ...]}, ...]}.
                                 Makes the requests on ONE connection, one
                                 after another (each waits for the previous
                                 response) or all at once, and prints
                                 "<status> <body bytes>" per request, in order.

The library's HPACK encoder indexes what it sends (a repeated path or header
is a dynamic table reference on later requests), and splits a header block
larger than the peer's SETTINGS_MAX_FRAME_SIZE into HEADERS + CONTINUATION.
"""

import json
import socket
import sys
import threading

import h2.config
import h2.connection
import h2.events


def text(value):
    return value.decode() if isinstance(value, bytes) else value


def respond(conn, stream_id, path, flush):
    path = path.split("?")[0]
    if path.startswith("/trailers/"):
        size = int(path[len("/trailers/"):])
        conn.send_headers(stream_id, [(":status", "200"), ("content-type", "text/plain")])
        flush()
        conn.send_data(stream_id, b"t" * size)
        # Indexed by the encoder: the next response's trailers refer to it.
        conn.send_headers(stream_id, [("x-checksum", "c0ffee-%d" % size)], end_stream=True)
        return
    if path.startswith("/status/"):
        status, body = path[len("/status/"):], b""
    else:
        status, body = "200", ("ok %s\n" % path).encode()
    conn.send_headers(
        stream_id,
        [(":status", status), ("content-type", "text/plain"), ("content-length", str(len(body)))],
        end_stream=not body,
    )
    if body:
        conn.send_data(stream_id, body, end_stream=True)


def serve(sock):
    config = h2.config.H2Configuration(client_side=False, validate_inbound_headers=False)
    conn = h2.connection.H2Connection(config)
    conn.local_settings.max_header_list_size = 1 << 20
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    paths = {}

    def flush():
        sock.sendall(conn.data_to_send())

    while True:
        data = sock.recv(65536)
        if not data:
            return
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                fields = dict((text(k), text(v)) for k, v in event.headers)
                paths[event.stream_id] = fields.get(":path", "/")
                if event.stream_ended:
                    respond(conn, event.stream_id, paths.pop(event.stream_id), flush)
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id in paths:
                respond(conn, event.stream_id, paths.pop(event.stream_id), flush)
            elif isinstance(event, h2.events.ConnectionTerminated):
                sock.sendall(conn.data_to_send())
                return
        sock.sendall(conn.data_to_send())


def server(port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    print("listening", flush=True)
    while True:
        sock, _ = listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve_quietly, args=(sock,), daemon=True).start()


def serve_quietly(sock):
    try:
        with sock:
            serve(sock)
    except (ConnectionError, OSError):
        pass  # the client went away


def client(port, spec):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    results = {}

    def send(request):
        stream_id = conn.get_next_available_stream_id()
        headers = [
            (":method", request.get("method", "GET")),
            (":path", request["path"]),
            (":scheme", "http"),
            (":authority", "127.0.0.1:%d" % port),
        ] + [tuple(h) for h in request.get("headers", [])]
        conn.send_headers(stream_id, headers, end_stream=True)
        sock.sendall(conn.data_to_send())
        results[stream_id] = [None, 0, False]
        return stream_id

    def wait(done):
        while not done():
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    fields = dict((text(k), text(v)) for k, v in event.headers)
                    results[event.stream_id][0] = fields.get(":status")
                elif isinstance(event, h2.events.DataReceived):
                    results[event.stream_id][1] += len(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    results[event.stream_id][2] = True
            sock.sendall(conn.data_to_send())

    ids = []
    if spec.get("concurrent"):
        ids = [send(r) for r in spec["requests"]]
        wait(lambda: all(results[i][2] for i in ids))
    else:
        for request in spec["requests"]:
            stream_id = send(request)
            ids.append(stream_id)
            wait(lambda: results[stream_id][2])
    for stream_id in ids:
        print(results[stream_id][0], results[stream_id][1], flush=True)
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "server":
        server(port)
    else:
        client(port, json.loads(sys.argv[3]))

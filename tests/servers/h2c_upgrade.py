"""An HTTP/2 server reached through the HTTP/1.1 Upgrade mechanism (h2c,
RFC 7540 section 3.2), built on the `h2` protocol library (Debian python3-h2).

GET /hello -> 200 "hello over h2c"; anything else -> 404. Requests after the
upgraded one are served as ordinary HTTP/2 streams. Usage: h2c_upgrade.py PORT
"""
import socket
import sys
import threading

import h2.config
import h2.connection
import h2.events

HELLO = b"hello over h2c\n"


def respond(conn, stream_id, path):
    status, body = ("200", HELLO) if path.split("?")[0] == "/hello" else ("404", b"not found\n")
    conn.send_headers(
        stream_id,
        [(":status", status), ("content-type", "text/plain"), ("content-length", str(len(body)))],
    )
    conn.send_data(stream_id, body, end_stream=True)


def read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def serve(sock):
    with sock:
        head, rest = read_head(sock)
        if head is None:
            return
        lines = head.split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("upgrade", "").lower() != "h2c" or "http2-settings" not in headers:
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_upgrade_connection(headers["http2-settings"])
        respond(conn, 1, path)
        sock.sendall(conn.data_to_send())
        pending = rest
        while True:
            data = pending or sock.recv(65536)
            pending = b""
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    fields = dict((k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v) for k, v in event.headers)
                    respond(conn, event.stream_id, fields.get(":path", "/"))
                elif isinstance(event, h2.events.ConnectionTerminated):
                    sock.sendall(conn.data_to_send())
                    return
            sock.sendall(conn.data_to_send())


def main():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    listener.listen(64)
    print("listening", flush=True)
    while True:
        sock, _ = listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve_quietly, args=(sock,), daemon=True).start()


def serve_quietly(sock):
    try:
        serve(sock)
    except (ConnectionError, OSError):
        pass  # the client went away


if __name__ == "__main__":
    main()

"""Listens on 127.0.0.1:PORT; to every client it sends COUNT segments of 600
bytes, one send() each, then closes. Instrumented, that is a burst of COUNT
kernel events in a few milliseconds: far more than a tiny ring buffer holds
however quickly the worker drains it."""
import socket
import sys

port, count = int(sys.argv[1]), int(sys.argv[2])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen()
chunk = b"x" * 600
while True:
    conn, _ = server.accept()
    try:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            conn.sendall(chunk)
    except OSError:
        pass  # a client that left early (the readiness probe)
    conn.close()

"""Listens on 127.0.0.1:PORT and reads each request a moment after accepting
it, then answers `200 ok` and closes. A client that writes its request and
resets the connection has its bytes read after the socket reached TCP_CLOSE:
the late read the agent must count, not turn into a connection."""
import socket
import sys
import time

port = int(sys.argv[1])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen()
while True:
    conn, _ = server.accept()
    try:
        time.sleep(0.2)  # the reset, if any, arrives meanwhile
        if conn.recv(65536):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    except OSError:
        pass  # reset by the client: nothing to answer
    conn.close()

"""Forks N children that each listen on PORT and exit at once: discovery must
instrument and then forget every one of them (no leak)."""
import os
import socket
import sys

port, count = int(sys.argv[1]), int(sys.argv[2])
for _ in range(count):
    pid = os.fork()
    if pid == 0:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        os._exit(0)
    os.waitpid(pid, 0)
print("done", flush=True)

"""Forks N children that each listen on PORT and exit at once: discovery must
instrument and then forget every one of them (no leak). Every hundredth child
stays listening for 200 ms, so that some are surely caught alive (on a quiet
machine the others are all gone before the agent can look at them)."""
import os
import socket
import sys
import time

port, count = int(sys.argv[1]), int(sys.argv[2])
for i in range(count):
    pid = os.fork()
    if pid == 0:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        if i % 100 == 0:
            time.sleep(0.2)
        os._exit(0)
    os.waitpid(pid, 0)
print("done", flush=True)

#!/usr/bin/python3
"""An HTTP server whose request threads rename themselves (prctl PR_SET_NAME),
as grpcio's `event_engine`, Java's and Go's pools do: the agent must still
name the process, not the thread that wrote the bytes.

  renamed_threads.py PORT   serves GET /who on 127.0.0.1:PORT; prints "listening"
"""
import ctypes
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PR_SET_NAME = 15
libc = ctypes.CDLL(None, use_errno=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = b"served by a renamed thread\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class RenamingServer(ThreadingHTTPServer):
    def process_request_thread(self, request, client_address):
        # Renamed before the connection's first byte is read.
        libc.prctl(PR_SET_NAME, b"req-worker", 0, 0, 0)
        super().process_request_thread(request, client_address)


server = RenamingServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("listening", flush=True)
server.serve_forever()

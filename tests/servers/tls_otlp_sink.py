"""A minimal OTLP/HTTP sink over TLS for the https test: stores each POST body
in DIR/<n>.bin (and its path in DIR/<n>.path) and answers 200."""
import os
import ssl
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

port, cert, key, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
count = 0


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        count += 1
        with open(os.path.join(out, f"{count}.bin"), "wb") as f:
            f.write(body)
        with open(os.path.join(out, f"{count}.path"), "w") as f:
            f.write(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


server = HTTPServer(("127.0.0.1", port), Sink)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("listening", flush=True)
server.serve_forever()

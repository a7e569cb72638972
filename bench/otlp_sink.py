#!/usr/bin/env python3
"""An OTLP/HTTP endpoint that accepts every export and keeps nothing: the
backend of bench/nginx_overhead.sh's OTLP=1 runs, so that the agent's cost
with its exporter on can be measured without a collector's own cost.

    bench/otlp_sink.py PORT

Answers POST /v1/traces and /v1/metrics with 200 and an empty protobuf
message (an ExportServiceResponse with no partial success) and, at SIGTERM,
prints the requests and bytes it took on stderr.
"""
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

taken = {"requests": 0, "bytes": 0}


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the agent's client expects

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        taken["requests"] += 1
        taken["bytes"] += len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


def main():
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Sink)

    def stop(*_):
        print(f"otlp sink: {taken['requests']} requests, {taken['bytes']} bytes", file=sys.stderr)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()


if __name__ == "__main__":
    main()

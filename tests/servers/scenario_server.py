"""What the scenario services of the protocol tests share (mongo_app.py,
mqtt_app.py): an HTTP server with one GET path per scenario, answering 200
"ok" when the scenario's calls went as expected and 500 with the traceback
otherwise. It takes the port as its first argument and prints "listening"
once its socket is bound.
"""
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"


def serve(scenarios):
    """Serves `scenarios` (path -> function) on the port in argv[1], forever."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status, body):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            scenario = scenarios.get(self.path)
            if scenario is None:
                return self.reply(404, "no such scenario\n")
            try:
                scenario()
            except Exception:
                return self.reply(500, traceback.format_exc())
            self.reply(200, "ok\n")

    server = ThreadingHTTPServer((HOST, int(sys.argv[1])), Handler)
    print("listening", flush=True)
    server.serve_forever()

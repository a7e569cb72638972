"""A small HTTP/1.1 server for the integration tests (keep-alive on).

Routes: GET /hello (200, fixed body), GET /chunked (chunked body),
POST /echo (echoes the body), GET /proxy (this process calls its own
/hello as a client first), GET /call/<port>/<path> (this process calls
127.0.0.1:<port>/<path> first and answers with its status), GET /id/<id> (200,
body "id <id>": a request a test tells apart by its path), GET /status/<code>, GET or POST /size/<n>
(n bytes of body; `?chunked` sends them chunked, `?cookie=<m>` adds an
m-byte Set-Cookie before Content-Length), GET /burn/<ms> (spends <ms>
milliseconds of CPU time before answering), GET /hold/<mib> (allocates and
touches <mib> MiB that the process keeps), GET /exit (a response whose body
ends when the connection closes, and the process exits as it sends it: the
connection closes by the exit), anything else 404. Request
bodies may be chunked.

With `--tls CERT KEY` after the port it serves HTTPS (the `ssl` module,
which uses the system's libssl). `--preamble N` after those reads N bytes of
each connection before its TLS handshake, as servers that sniff a
connection's first bytes do (STARTTLS, PROXY protocol headers).
"""
import http.client
import os
import sys
import time
from urllib.parse import urlsplit
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HELLO = b"hello from the test server\n"
CHUNKS = [b"first chunk;", b"second chunk, a bit longer;", b"end\n"]
# What /hold/<mib> allocated: kept for the process's life.
HELD = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle + delayed ACK cost 40 ms each.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reply_size(self, query):
        size = int(urlsplit(self.path).path.rsplit("/", 1)[1])
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if "cookie" in params:
            self.send_header("Set-Cookie", "big=" + "c" * int(params["cookie"]))
        if "chunked" in params:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            left = size
            while left > 0:
                piece = min(left, 16384)
                self.wfile.write(b"%x\r\n%s\r\n" % (piece, b"x" * piece))
                left -= piece
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self.wfile.write(b"x" * size)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/hello":
            self.reply(200, HELLO)
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in CHUNKS:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/proxy":
            conn = http.client.HTTPConnection("127.0.0.1", self.server.server_port, timeout=5)
            conn.request("GET", "/hello")
            body = conn.getresponse().read()
            conn.close()
            self.reply(200, b"proxied: " + body)
        elif path.startswith("/call/"):
            # /call/<port>/<rest>: this process calls 127.0.0.1:<port>/<rest> first.
            port, _, rest = path[len("/call/"):].partition("/")
            conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=5)
            conn.request("GET", "/" + rest)
            response = conn.getresponse()
            body = response.read()
            conn.close()
            self.reply(response.status, b"called: " + body)
        elif path.startswith("/size/"):
            self.reply_size(urlsplit(self.path).query)
        elif path.startswith("/id/"):
            self.reply(200, b"id " + path[len("/id/"):].encode() + b"\n")
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            self.reply(code, b"status %d\n" % code)
        elif path.startswith("/burn/"):
            # CPU time of this thread, not wall time: what the test reads back.
            until = time.thread_time() + int(path.rsplit("/", 1)[1]) / 1000
            spins = 0
            while time.thread_time() < until:
                spins += 1
            self.reply(200, b"burnt %d\n" % spins)
        elif path.startswith("/hold/"):
            block = bytearray(int(path.rsplit("/", 1)[1]) << 20)
            for at in range(0, len(block), 4096):
                block[at] = 1
            HELD.append(block)
            self.reply(200, b"holding %d MiB\n" % (sum(len(b) for b in HELD) >> 20))
        elif path == "/exit":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye\n")
            self.wfile.flush()
            os._exit(0)
        else:
            self.reply(404, b"not found\n")

    def do_POST(self):
        body = self.read_body()
        if urlsplit(self.path).path.startswith("/size/"):
            self.reply_size(urlsplit(self.path).query)
        elif urlsplit(self.path).path == "/echo":
            self.reply(200, body, "application/octet-stream")
        else:
            self.reply(404, b"not found\n")


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    if sys.argv[2:3] == ["--tls"]:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[3], sys.argv[4])
        if sys.argv[5:6] == ["--preamble"]:
            import socket

            preamble = int(sys.argv[6])

            def get_request():
                conn, address = server.socket.accept()
                conn.recv(preamble, socket.MSG_WAITALL)
                return context.wrap_socket(conn, server_side=True), address

            server.get_request = get_request
        else:
            server.socket = context.wrap_socket(server.socket, server_side=True)
    print("listening", flush=True)
    server.serve_forever()

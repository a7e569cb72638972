// Streams chunked responses the way Node.js applications do: GET
// /stream/<seed> writes 1 to 8 pieces of 1 byte to 20 KB, some in one tick
// (Node sends them with one writev), some a tick or 2 ms apart, then ends,
// with a last piece or without. The same seed gives the same response.
// Usage: node stream_server.js PORT
const http = require("http");

function xorshift(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

const SIZES = [1, 10, 100, 400, 600, 1500, 5000, 20000];
http
  .createServer((req, res) => {
    const m = /^\/stream\/(\d+)/.exec(req.url);
    if (!m) {
      res.end("ok");
      return;
    }
    const next = xorshift(Number(m[1]));
    const pieces = 1 + (next() % 8);
    res.writeHead(200, { "Content-Type": "text/plain" });
    let written = 0;
    const step = () => {
      while (written < pieces) {
        res.write("a".repeat(SIZES[next() % 8]));
        written++;
        const pause = next() % 3;
        if (pause === 1) return setImmediate(step);
        if (pause === 2) return setTimeout(step, 2);
      }
      res.end(next() % 2 ? "end-" + "b".repeat(next() % 700) : undefined);
    };
    step();
  })
  .listen(Number(process.argv[2]), "127.0.0.1", () => console.log("listening"));

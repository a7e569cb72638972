// A Node.js HTTP server whose chunked bodies are written coalesced, as Node
// does under load: GET /burst/<n> writes n chunks of 4,000 bytes in one tick
// (Node sends what queues up with one writev, chunk size lines between the
// pieces), then "end\n"; GET /late streams two chunks 20 ms apart (the
// second, "end\n" and the last chunk in one writev); any other request has
// its body, of any framing, read and its size answered. Prints "listening"
// once bound.
// Usage: node chunked_node.js PORT
const http = require("http");

const port = Number(process.argv[2]);
const piece = "x".repeat(4000);
http
  .createServer((req, res) => {
    const burst = /^\/burst\/(\d+)$/.exec(req.url);
    if (burst) {
      res.writeHead(200, { "Content-Type": "text/plain" });
      for (let i = 0; i < Number(burst[1]); i++) {
        res.write(piece);
      }
      res.end("end\n");
      return;
    }
    if (req.url === "/late") {
      // A chunk now; 20 ms later the next one, then "end\n" and the last
      // chunk: Node writes those three with one writev.
      res.writeHead(200, { "Content-Type": "text/plain" });
      res.write(piece);
      setTimeout(() => {
        res.write(piece);
        res.end("end\n");
      }, 20);
      return;
    }
    let size = 0;
    req.on("data", (data) => (size += data.length));
    req.on("end", () => res.end(String(size)));
  })
  .listen(port, "127.0.0.1", () => console.log("listening"));

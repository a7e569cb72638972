// A Node.js HTTP server that calls another service while serving a request:
// GET /call/<port>/<rest> -> GET http://127.0.0.1:<port>/<rest> with
// http.request, then answers "called: <body>"; anything else -> 404.
// Many requests share its one event loop thread. Usage: node http_chain.js PORT
const http = require("http");

const port = Number(process.argv[2]);
http
  .createServer((req, res) => {
    const match = /^\/call\/(\d+)(\/.*)$/.exec(req.url);
    if (!match) {
      res.writeHead(404, { "Content-Length": 10 });
      res.end("not found\n");
      return;
    }
    const call = http.request(
      { host: "127.0.0.1", port: Number(match[1]), path: match[2], agent: false },
      (answer) => {
        const chunks = [];
        answer.on("data", (chunk) => chunks.push(chunk));
        answer.on("end", () => {
          const body = Buffer.concat([Buffer.from("called: "), ...chunks]);
          res.writeHead(answer.statusCode, { "Content-Length": body.length });
          res.end(body);
        });
      },
    );
    call.on("error", () => {
      res.writeHead(502, { "Content-Length": 0 });
      res.end();
    });
    call.end();
  })
  .listen(port, "127.0.0.1", () => console.log("listening"));

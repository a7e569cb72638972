// An HTTPS server on Node.js (which links OpenSSL into its executable):
// GET /hello -> 200, anything else -> 404. Usage: node https_app.js PORT CERT KEY
const https = require("https");
const fs = require("fs");

const [port, cert, key] = process.argv.slice(2);
https
  .createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
    const path = req.url.split("?")[0];
    const [status, body] = path === "/hello" ? [200, "hello from node\n"] : [404, "not found\n"];
    res.writeHead(status, { "Content-Type": "text/plain", "Content-Length": Buffer.byteLength(body) });
    res.end(body);
  })
  .listen(Number(port), "127.0.0.1", () => console.log("listening"));

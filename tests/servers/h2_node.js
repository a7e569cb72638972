// An HTTP/2 server over TLS on Node.js (its own statically linked OpenSSL),
// and its client.
//
//   node h2_node.js PORT CERT KEY           serves: /big/* answers 200 with a
//                                          3 KB Set-Cookie and 50 KB of body
//                                          (four DATA frames, written with
//                                          other streams' frames); /404/*
//                                          answers 404; anything else 200 "ok"
//   node h2_node.js PORT --client N C      N requests on one connection, C at
//                                          a time (every 10th to /big, every
//                                          7th to /404, with tokens and
//                                          cookies of 200 B to 1.7 KB); prints
//                                          "done N"
'use strict';
const http2 = require('http2');
const fs = require('fs');

const port = Number(process.argv[2]);
if (process.argv[3] !== '--client') {
  const server = http2.createSecureServer({
    cert: fs.readFileSync(process.argv[3]),
    key: fs.readFileSync(process.argv[4]),
  });
  server.on('stream', (stream, headers) => {
    const path = headers[':path'];
    if (path.startsWith('/big/')) {
      stream.respond({ ':status': 200, 'set-cookie': 'session='.padEnd(3000, 'c') });
      stream.end(Buffer.alloc(50000, 97));
    } else {
      stream.respond({ ':status': path.startsWith('/404/') ? 404 : 200 });
      stream.end('ok ' + path);
    }
  });
  server.listen(port, '127.0.0.1', () => console.log('listening'));
} else {
  const total = Number(process.argv[4]);
  const atOnce = Number(process.argv[5]);
  const client = http2.connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false });
  let started = 0;
  let done = 0;
  let inFlight = 0;
  const next = () => {
    while (inFlight < atOnce && started < total) {
      const n = started++;
      inFlight++;
      const kind = n % 10 === 0 ? 'big' : n % 7 === 0 ? '404' : 'r';
      const request = client.request({
        ':path': `/${kind}/${n}`,
        authorization: 'Bearer ' + 'a'.repeat(n % 3 === 0 ? 1500 : 40),
        cookie: 's=' + 'k'.repeat(200 + n),
      });
      request.resume();
      request.on('end', () => {
        inFlight--;
        if (++done === total) {
          console.log('done', done);
          client.close();
        } else {
          next();
        }
      });
      request.end();
    }
  };
  next();
}

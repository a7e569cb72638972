// A Redis pipeline written as node-redis writes one: each command its own
// socket.write() between cork() and uncork(), so Node hands them to the
// kernel in one writev of many buffers. For tests/tests/databases.rs (run
// by db_app.py's `batches`): `node redis_corked.js PORT COUNT` sends COUNT
// SETs of `corked:<i>` (after SELECT 3), reads every reply, and exits 0
// once all COUNT + 1 came back `+OK`.
'use strict';
const net = require('net');

const port = Number(process.argv[2]);
const count = Number(process.argv[3] || 1000);
const bulk = (s) => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
const command = (...words) => `*${words.length}\r\n${words.map(bulk).join('')}`;

const socket = net.connect(port, '127.0.0.1', () => {
  socket.cork();
  socket.write(command('SELECT', '3'));
  for (let i = 0; i < count; i++) socket.write(command('SET', `corked:${i}`, `value-${i}`));
  socket.uncork();
});
let replies = '';
socket.on('data', (data) => {
  replies += data.toString('latin1');
  const ok = replies.split('+OK\r\n').length - 1;
  if (ok === count + 1) {
    socket.end();
    process.exit(0);
  }
});
socket.on('error', (e) => {
  console.error(e.message);
  process.exit(1);
});
setTimeout(() => {
  console.error('timed out');
  process.exit(1);
}, 15000);

'use strict';
// The node `ws` row of bench_echo.py and bench_echo_deflate.py: an echo server on 127.0.0.1
// (text as text, binary as binary), ws as installed by `npm ci --prefix benchmarks/node`
// (without its optional bufferutil/utf-8-validate addons).
//
//   node echo_server.js [--deflate]
//
// Prints 'PORT N' once it listens; exits when stdin closes (as peers.py's Python servers).

const { WebSocketServer } = require('ws');

const deflate = process.argv.includes('--deflate');
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  maxPayload: 64 * 1024 * 1024,
  perMessageDeflate: deflate,
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => {
  process.stdout.write(`PORT ${wss.address().port}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();

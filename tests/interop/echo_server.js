'use strict';
// node ws echo server for wsfast's interop tests.
//
//   node echo_server.js [port|0] ['{"perMessageDeflate": {...}}' | '{...perMessageDeflate...}']
//
// Listens on 127.0.0.1, prints the bound port alone on the first stdout line, then one JSON
// line per event: connection, message, ping, pong, close, error (each with the request path,
// so tests sharing one server tell their connections apart). Every message is echoed with its
// type, except a text message starting with "__cmd__" followed by JSON, which makes the server
// act: {"op": "close", "code", "reason"} | {"op": "ping", "hex"} | {"op": "terminate"} |
// {"op": "fragments", "parts": [payload...], "binary", "compress"?} |
// {"op": "send", payload..., "binary", "compress"?}. The connection event also has the
// negotiated extensionParams and the Sec-WebSocket-Extensions header of the response.
// It runs until killed (SIGTERM/SIGINT close it cleanly).

const { WebSocketServer } = require('ws');
const {
  describe, emit, payload, isBinarySpec, sendFragments, sendOptions, extensionParams
} = require('./common');

const port = Number(process.argv[2] || 0);
let options = {};
if (process.argv[3]) {
  options = JSON.parse(process.argv[3]);
  // A bare perMessageDeflate object or true/false is accepted as well.
  if (typeof options !== 'object' || options === null || !('perMessageDeflate' in options)) {
    options = { perMessageDeflate: options };
  }
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  maxPayload: 100 * 1024 * 1024,
  ...options
});

wss.on('listening', () => {
  process.stdout.write(wss.address().port + '\n');
});

// The Sec-WebSocket-Extensions header of each 101 response, for the connection event.
const responseExtensions = new WeakMap();
wss.on('headers', (headers, req) => {
  const line = headers.find((h) => /^sec-websocket-extensions:/i.test(h));
  responseExtensions.set(req, line ? line.slice(line.indexOf(':') + 1).trim() : null);
});

wss.on('connection', (ws, req) => {
  const path = req.url;
  emit({ event: 'connection', path, extensions: ws.extensions, protocol: ws.protocol,
    headers: req.headers, extensionParams: extensionParams(ws),
    responseExtensions: responseExtensions.get(req) || null });
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.length >= 7 && data.toString('latin1', 0, 7) === '__cmd__') {
      const cmd = JSON.parse(data.toString('utf8', 7));
      emit({ event: 'command', path, cmd });
      if (cmd.op === 'close') ws.close(cmd.code, cmd.reason);
      else if (cmd.op === 'ping') ws.ping(Buffer.from(cmd.hex || '', 'hex'));
      else if (cmd.op === 'terminate') ws.terminate();
      else if (cmd.op === 'fragments') {
        sendFragments(ws, cmd.parts, Boolean(cmd.binary), cmd.compress);
      } else if (cmd.op === 'send') ws.send(payload(cmd), sendOptions(cmd, isBinarySpec(cmd)));
      return;
    }
    emit({ event: 'message', path, ...describe(data, isBinary) });
    ws.send(data, { binary: isBinary });
  });
  ws.on('ping', (data) => emit({ event: 'ping', path, hex: data.toString('hex') }));
  ws.on('pong', (data) => emit({ event: 'pong', path, hex: data.toString('hex') }));
  ws.on('error', (err) => emit({ event: 'error', path, message: err.message, code: err.code }));
  ws.on('close', (code, reason) => emit({ event: 'close', path, code,
    reason: reason.toString('utf8') }));
});

wss.on('error', (err) => {
  process.stderr.write(`echo_server: ${err.stack}\n`);
  process.exit(1);
});

function stop() {
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

'use strict';
// node ws client for wsfast's interop tests.
//
//   node client.js URL '<script JSON>'
//
// The script: {"options": {...ws client options...}, "timeout": seconds, "steps": [...]}, each
// step one of
//   {"op": "send", "text": "..."} | {"op": "send", "hex": "..."} |
//   {"op": "send", "pattern": "text"|"binary", "length": n}          (a "binary" flag overrides)
//   {"op": "fragments", "parts": [payload, ...], "binary": bool}      (fin false but on the last)
//   ("compress": false on a send or fragments step sends that message uncompressed; "fin": false
//   on a send step sends a fragment, so other steps may come between the fragments)
//   {"op": "ping", "hex": "..."} | {"op": "pong", "hex": "..."}
//   {"op": "wait", "messages": n} | {"op": "wait", "pongs": n} | {"op": "wait", "pings": n}
//   {"op": "close", "code": n, "reason": "..."} | {"op": "terminate"}
// Steps run after 'open'; a wait blocks until that many have been received in all. Everything
// received is printed as JSON lines (open, message, ping, pong, close, error; see common.js for
// messages); open has the negotiated extensions, their params and the response's
// Sec-WebSocket-Extensions header. The process exits once the connection has closed: 0, or 2 on the script's timeout.

const WebSocket = require('ws');
const {
  describe, emit, payload, isBinarySpec, sendFragments, sendOptions, extensionParams
} = require('./common');

const url = process.argv[2];
const script = JSON.parse(process.argv[3] || '{}');
const steps = script.steps || [];
const counts = { messages: 0, pongs: 0, pings: 0 };
let waiting = null;

const timer = setTimeout(() => {
  emit({ event: 'timeout', step: stepIndex, counts });
  process.exit(2);
}, (script.timeout || 30) * 1000);

const ws = new WebSocket(url, script.protocols, {
  maxPayload: 100 * 1024 * 1024,
  ...(script.options || {})
});
let stepIndex = 0;

function wake() {
  if (waiting && Object.keys(waiting).every((k) => counts[k] >= waiting[k])) {
    waiting = null;
    setImmediate(next);
  }
}

function next() {
  while (stepIndex < steps.length) {
    const step = steps[stepIndex++];
    if (step.op === 'send') ws.send(payload(step), sendOptions(step, isBinarySpec(step)));
    else if (step.op === 'fragments') {
      sendFragments(ws, step.parts, Boolean(step.binary), step.compress);
    }
    else if (step.op === 'ping') ws.ping(Buffer.from(step.hex || '', 'hex'));
    else if (step.op === 'pong') ws.pong(Buffer.from(step.hex || '', 'hex'));
    else if (step.op === 'close') ws.close(step.code, step.reason);
    else if (step.op === 'terminate') ws.terminate();
    else if (step.op === 'wait') {
      const { op, ...want } = step;
      waiting = want;
      wake();
      return;
    } else throw new Error(`unknown step ${JSON.stringify(step)}`);
  }
}

let responseExtensions = null;
ws.on('upgrade', (res) => {
  responseExtensions = res.headers['sec-websocket-extensions'] || null;
});

ws.on('open', () => {
  emit({ event: 'open', protocol: ws.protocol, extensions: ws.extensions,
    extensionParams: extensionParams(ws), responseExtensions });
  next();
});
ws.on('message', (data, isBinary) => {
  counts.messages++;
  emit({ event: 'message', ...describe(data, isBinary) });
  wake();
});
ws.on('ping', (data) => {
  counts.pings++;
  emit({ event: 'ping', hex: data.toString('hex') });
  wake();
});
ws.on('pong', (data) => {
  counts.pongs++;
  emit({ event: 'pong', hex: data.toString('hex') });
  wake();
});
ws.on('unexpected-response', (req, res) => {
  emit({ event: 'unexpected-response', status: res.statusCode, headers: res.headers });
  ws.terminate();
});
ws.on('error', (err) => emit({ event: 'error', message: err.message, code: err.code }));
ws.on('close', (code, reason) => {
  emit({ event: 'close', code, reason: reason.toString('utf8') });
  clearTimeout(timer);
  process.stdout.write('', () => process.exit(0));
});

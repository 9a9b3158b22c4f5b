'use strict';
// Shared by echo_server.js and client.js: JSON-line event log and payload patterns.

const crypto = require('crypto');

// What a test can compare: short payloads in full (text as a string, binary as hex),
// every payload by length and SHA-256.
function describe(data, isBinary) {
  const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
  const out = {
    binary: Boolean(isBinary),
    length: buf.length,
    sha256: crypto.createHash('sha256').update(buf).digest('hex')
  };
  if (buf.length <= 256) out.data = isBinary ? buf.toString('hex') : buf.toString('utf8');
  return out;
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// Deterministic payloads of any size, the same as tests/interop/node.py's pattern():
// binary byte i is i % 251; text is 'a'..'z' repeated.
function pattern(kind, length) {
  const buf = Buffer.allocUnsafe(length);
  if (kind === 'binary') {
    for (let i = 0; i < length; i++) buf[i] = i % 251;
    return buf;
  }
  for (let i = 0; i < length; i++) buf[i] = 97 + (i % 26);
  return buf.toString('latin1');
}

// A payload described in JSON: {"text": "..."} | {"hex": "..."} | {"pattern": k, "length": n}.
function payload(spec) {
  if (spec.pattern !== undefined) return pattern(spec.pattern, spec.length);
  if (spec.hex !== undefined) return Buffer.from(spec.hex, 'hex');
  return spec.text !== undefined ? spec.text : '';
}

function isBinarySpec(spec) {
  if (spec.binary !== undefined) return Boolean(spec.binary);
  return spec.hex !== undefined || spec.pattern === 'binary';
}

// Sends one message in fragments: every part but the last with fin false.
function sendFragments(ws, parts, binary) {
  parts.forEach((part, i) => {
    ws.send(payload(part), { binary, fin: i === parts.length - 1 });
  });
}

module.exports = { describe, emit, pattern, payload, isBinarySpec, sendFragments };

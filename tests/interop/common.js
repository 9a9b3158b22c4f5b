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

// Pseudo-random bytes: SHA-256 of the 4-byte big-endian block index, block after block.
function randomBytes(length) {
  const blocks = [];
  for (let i = 0; i * 32 < length; i++) {
    const index = Buffer.alloc(4);
    index.writeUInt32BE(i);
    blocks.push(crypto.createHash('sha256').update(index).digest());
  }
  return Buffer.concat(blocks).subarray(0, length);
}

const WORDS = ['the', 'quick', 'brown', 'fox', 'jumps', 'over', 'lazy', 'dog', '{"id":',
  '"name":', 'null,', 'true}', 'websocket', 'deflate', 'window', 'message'];

// Deterministic payloads of any size, the same as tests/interop/node.py's pattern():
// binary byte i is i % 251; text is 'a'..'z' repeated; "random" is randomBytes() (binary);
// "words" is text: WORDS[b % 16] + ' ' for each byte b of randomBytes(), cut to length.
function pattern(kind, length) {
  if (kind === 'random') return randomBytes(length);
  if (kind === 'words') {
    const out = [];
    let size = 0;
    for (const b of randomBytes(length)) {
      if (size >= length) break;
      const word = WORDS[b % 16] + ' ';
      out.push(word);
      size += word.length;
    }
    return out.join('').slice(0, length);
  }
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
  return spec.hex !== undefined || spec.pattern === 'binary' || spec.pattern === 'random';
}

// Options of ws.send() from a step or command: binary, and compress and fin when given.
function sendOptions(spec, binary) {
  const options = { binary };
  if (spec.compress !== undefined) options.compress = Boolean(spec.compress);
  if (spec.fin !== undefined) options.fin = Boolean(spec.fin);
  return options;
}

// The negotiated parameters of each extension, e.g. {"permessage-deflate": {...params}}.
function extensionParams(ws) {
  const out = {};
  for (const [name, extension] of Object.entries(ws._extensions || {})) {
    out[name] = extension.params;
  }
  return out;
}

// Sends one message in fragments: every part but the last with fin false.
// compress, when given, applies to the message (ws judges it on the first fragment).
function sendFragments(ws, parts, binary, compress) {
  parts.forEach((part, i) => {
    const options = { binary, fin: i === parts.length - 1 };
    if (compress !== undefined) options.compress = Boolean(compress);
    ws.send(payload(part), options);
  });
}

module.exports = {
  describe, emit, pattern, payload, isBinarySpec, sendFragments, sendOptions, extensionParams
};

'use strict';
// Subscribers of bench_fanout.py --table-peers: one process holding many connections (ws
// package, permessage-deflate off) and counting the messages that arrive, for every row, so
// that the cost on the receiving side is the same whichever server is measured.
//
//   node fanout_clients.js ws|socketio COUNT OFFSET URL [URL ...]
//
// Connection i (0 <= i < COUNT) opens URL number (OFFSET + i) % (number of URLs): several
// servers get the subscribers split evenly over all the client processes.
//
// ws: the server's messages are counted as they come (text frames).
// socketio: URL is a socket.io server's /socket.io/?EIO=4&transport=websocket; this speaks
// engine.io v4 / socket.io v5 itself instead of loading socket.io-client: the engine.io open
// packet '0{...}' is answered with '40' (connect to the main namespace), '40{...}' completes
// the connection, pings '2' get pongs '3', and event packets '42[...]' are counted. Counting
// is the same work as for ws: one length check per frame.
//
// Commands, one a line on stdin; answers, one a line on stdout:
//   (at start)         -> 'ready' once every connection is open (and connected, socketio)
//   'arm M LENGTH'     -> 'armed'; a round: each connection is to get M frames of LENGTH bytes;
//                         'done TOTAL' is printed when COUNT * M frames have arrived
//   'check'            -> 'ok', or 'bad CONNECTIONS FRAMES TOTAL': connections that did not
//                         get exactly M frames, frames of another length or type, frames counted
//   'count'            -> 'count TOTAL' (what arrived in this round so far)
//   'quit' or stdin closed: every connection is terminated and the process exits 0.
// Anything unexpected (a failed connection, a close, an unknown packet) is written to stderr
// and the process exits 1, which the benchmark reports.

const readline = require('node:readline');
const WebSocket = require('ws');

const [protocol, countArg, offsetArg, ...urls] = process.argv.slice(2);
const count = Number(countArg);
const offset = Number(offsetArg);
if (!['ws', 'socketio'].includes(protocol) || !(count > 0) || !(offset >= 0) || !urls.length) {
  process.stderr.write('usage: node fanout_clients.js ws|socketio COUNT OFFSET URL [URL ...]\n');
  process.exit(2);
}
const socketio = protocol === 'socketio';
// Opening handshakes in flight at once per process: the servers' listen backlogs stay short.
const OPEN_BATCH = 200;

const sockets = [];
const counts = new Uint32Array(count);
let perConnection = 0;
let expectedLength = -1;
let target = -1;
let total = 0;
let badFrames = 0;
let quitting = false;

function say(line) {
  process.stdout.write(line + '\n');
}

function fail(message) {
  if (quitting) return;
  process.stderr.write(`fanout_clients (${protocol}, pid ${process.pid}): ${message}\n`);
  process.exit(1);
}

function counted(index, length, ok) {
  if (length !== expectedLength || !ok) badFrames++;
  counts[index]++;
  if (++total === target) say('done ' + total);
}

// One connection; resolves once it can receive the benchmark's messages.
function open(index) {
  const url = urls[(offset + index) % urls.length];
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    let ready = false;
    ws.on('error', (err) => (ready ? fail(`connection ${index}: ${err.message}`) : reject(err)));
    ws.on('close', (code) => {
      if (ready) fail(`connection ${index} closed (${code})`);
      else reject(new Error(`connection ${index} closed (${code}) before it was ready`));
    });
    if (!socketio) {
      ws.on('open', () => {
        ready = true;
        resolve(ws);
      });
      ws.on('message', (data, isBinary) => counted(index, data.length, !isBinary));
      return;
    }
    ws.on('message', (data, isBinary) => {
      // '4' (engine.io message) '2' (socket.io EVENT): the counted case first.
      if (data[0] === 0x34 && data[1] === 0x32) {
        counted(index, data.length, !isBinary);
      } else if (data.length === 1 && data[0] === 0x32) {
        ws.send('3');
      } else if (!ready && data[0] === 0x30) {
        ws.send('40');
      } else if (!ready && data[0] === 0x34 && data[1] === 0x30) {
        ready = true;
        resolve(ws);
      } else {
        const text = data.toString('utf8', 0, 80);
        if (ready) fail(`connection ${index}: unexpected packet ${JSON.stringify(text)}`);
        else reject(new Error(`connection ${index}: unexpected packet ${JSON.stringify(text)}`));
      }
    });
  });
}

function check() {
  let wrong = 0;
  for (let i = 0; i < count; i++) {
    if (counts[i] !== perConnection) wrong++;
  }
  return wrong === 0 && badFrames === 0 ? 'ok' : `bad ${wrong} ${badFrames} ${total}`;
}

function quit() {
  quitting = true;
  for (const ws of sockets) ws.terminate();
  process.exit(0);
}

async function main() {
  for (let start = 0; start < count; start += OPEN_BATCH) {
    const batch = [];
    for (let i = start; i < Math.min(count, start + OPEN_BATCH); i++) batch.push(open(i));
    sockets.push(...(await Promise.all(batch)));
  }
  const lines = readline.createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const [command, ...words] = line.trim().split(/\s+/);
    if (command === 'arm') {
      perConnection = Number(words[0]);
      expectedLength = Number(words[1]);
      counts.fill(0);
      total = 0;
      badFrames = 0;
      target = count * perConnection;
      say('armed');
    } else if (command === 'check') {
      say(check());
    } else if (command === 'count') {
      say('count ' + total);
    } else if (command === 'quit') {
      quit();
    } else {
      fail(`unknown command ${JSON.stringify(line)}`);
    }
  });
  lines.on('close', quit);
  say('ready');
}

main().catch((err) => fail(err.message));

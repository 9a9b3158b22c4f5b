'use strict';
// The socket.io side of bench_fanout.py --table-peers: one socket.io 4.x server on 127.0.0.1
// (defaults, permessage-deflate off as by default), every connection joins the room "bench".
//
//   node socketio_server.js [REDIS_URL]        (or BENCH_REDIS_URL in the environment)
//
// With a Redis URL the server uses @socket.io/redis-adapter with the node redis client (a
// publishing and a subscribing connection, as the adapter's documentation sets it up), so
// several such servers share their rooms.
//
// Prints 'listening PORT' once it listens (and the adapter's connections are up), then reads
// commands, one a line on stdin, answering one line on stdout:
//   'count'             -> 'count N': the local connections in the room
//   'publish K S B'     -> K times io.to("bench").emit("msg", <S ASCII characters>), B emits
//                          per event-loop turn (a setImmediate between bursts), then
//                          'published SECONDS' (the time spent emitting)
//   'stats'             -> 'stats {...}' (JSON: connections, room size)
//   'quit' or stdin closed: closes and exits 0.

const http = require('node:http');
const readline = require('node:readline');
const { Server } = require('socket.io');

const ROOM = 'bench';

async function main() {
  const redisUrl = process.argv[2] || process.env.BENCH_REDIS_URL || '';
  const httpServer = http.createServer();
  const io = new Server(httpServer, { serveClient: false });
  const redisClients = [];
  if (redisUrl) {
    const { createClient } = require('redis');
    const { createAdapter } = require('@socket.io/redis-adapter');
    const pubClient = createClient({ url: redisUrl });
    const subClient = pubClient.duplicate();
    for (const client of [pubClient, subClient]) {
      client.on('error', (err) => fail(`redis: ${err.message}`));
    }
    await Promise.all([pubClient.connect(), subClient.connect()]);
    redisClients.push(pubClient, subClient);
    io.adapter(createAdapter(pubClient, subClient));
  }
  io.on('connection', (socket) => socket.join(ROOM));
  await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve));

  const roomSize = () => io.of('/').adapter.rooms.get(ROOM)?.size ?? 0;

  async function publish(messages, size, burst) {
    const text = 'x'.repeat(size);
    const started = process.hrtime.bigint();
    for (let i = 0; i < messages; i++) {
      io.to(ROOM).emit('msg', text);
      if ((i + 1) % burst === 0) await new Promise(setImmediate);
    }
    return Number(process.hrtime.bigint() - started) / 1e9;
  }

  async function quit() {
    io.close();
    await Promise.allSettled(redisClients.map((client) => client.quit()));
    process.exit(0);
  }

  const lines = readline.createInterface({ input: process.stdin });
  lines.on('line', async (line) => {
    const [command, ...words] = line.trim().split(/\s+/);
    if (command === 'count') {
      say('count ' + roomSize());
    } else if (command === 'publish') {
      const [messages, size, burst] = words.map(Number);
      say('published ' + (await publish(messages, size, burst)).toFixed(6));
    } else if (command === 'stats') {
      say('stats ' + JSON.stringify({ connections: io.engine.clientsCount, room: roomSize() }));
    } else if (command === 'quit') {
      await quit();
    } else {
      fail(`unknown command ${JSON.stringify(line)}`);
    }
  });
  lines.on('close', quit);
  say('listening ' + httpServer.address().port);
}

function say(line) {
  process.stdout.write(line + '\n');
}

function fail(message) {
  process.stderr.write(`socketio_server (pid ${process.pid}): ${message}\n`);
  process.exit(1);
}

main().catch((err) => fail(err.stack || err.message));

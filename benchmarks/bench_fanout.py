"""Fan-out: ``publish`` against a send loop in one process, and against socket.io with Redis.

    python benchmarks/bench_fanout.py --table            # 1,000 and 10,000 subscribers
    python benchmarks/bench_fanout.py --subscribers 1000 --size 32 --messages 200
    python benchmarks/bench_fanout.py --table-peers      # wsfast, + Redis, x2; socket.io the same

``--table`` and the runs without it compare the two ways of sending in one process.

The server runs in this process with every connection subscribed to one topic; the subscribers
are wsfast clients spread over a few client processes (``--processes``), each holding many
connections and counting what arrives. One run sends ``--messages`` messages to every
subscriber (binary, deflate off), yielding to the event loop between messages so the kernel
buffers drain, and ends when every client process has counted every message. Two figures per
run:

- deliveries/s end to end: subscribers x messages / (first send -> last message counted);
  on a 2-core machine the client processes share the cores with the server, so this is a
  figure of the whole machine;
- send-side deliveries/s: the same deliveries over the time spent inside ``publish()`` or the
  loop alone (framing and handing bytes to the transports), which is what the two ways differ
  in.

``--table-peers`` compares servers, each in processes of its own, with the same subscribers:
node processes (``node/fanout_clients.js``, the ``ws`` package) that count text frames, or
speak engine.io v4 / socket.io v5 themselves and count event packets. Rows: ``wsfast`` (one
server, ``publish``), ``wsfast-redis`` (the same with ``backplane=`` a redis-server of its
own), ``wsfast-redis-x2`` (two such servers, the subscribers split evenly, the messages
published on the first), and ``socketio``, ``socketio-redis``, ``socketio-redis-x2``: socket.io
4.x servers (``node/socketio_server.js``, ``io.to(room).emit``, ``@socket.io/redis-adapter``).
A row starts when every subscriber is in the topic or room of its server and every server's
subscription is visible in Redis; each size gets a warm-up round, then ``--rounds`` rounds
(median), each counted strictly: every subscriber gets exactly ``--messages`` frames of the
expected length, or the run stops with an error. ``--burst N`` is N publishes per loop turn on
both sides (a ``setImmediate`` between bursts on node). ``npm ci --prefix benchmarks/node``
installs the node side.

The soft ``RLIMIT_NOFILE`` is raised to the hard limit (10,000 subscribers need 10,000 fds in
this process and in the client processes together).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import multiprocessing
import os
import resource
import shutil
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from peers import new_loop  # noqa: E402

import wsfast  # noqa: E402
from wsfast.backplane import RedisBackplane  # noqa: E402


def _raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _client_process(url: str, count: int, expected: int, conn: Any) -> None:
    _raise_fd_limit()
    asyncio.run(_clients(url, count, expected, conn))


async def _clients(url: str, count: int, expected: int, conn: Any) -> None:
    received = 0
    done = asyncio.get_running_loop().create_future()

    def on_message(data: Any, is_binary: bool) -> None:
        nonlocal received
        received += 1
        if received == expected and not done.done():
            done.set_result(None)

    sockets: list[wsfast.WebSocket] = []
    for start in range(0, count, 200):
        batch = [
            wsfast.WebSocket(url, per_message_deflate=False) for _ in range(min(200, count - start))
        ]
        await asyncio.gather(*(ws.wait_open() for ws in batch))
        for ws in batch:
            ws.on("message", on_message)
        sockets.extend(batch)
    conn.send("ready")
    while True:
        command = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        if command == "stop":
            break
        # A new round: ``command`` is the number of messages each connection will get.
        received = 0
        expected = command * count
        done = asyncio.get_running_loop().create_future()
        conn.send("armed")
        await done
        conn.send(received)
    for ws in sockets:
        ws.terminate()


async def _run(
    subscribers: int, sizes: list[int], messages: int, processes: int, burst: int = 1
) -> list[Any]:
    server = wsfast.WebSocketServer(port=0, host="127.0.0.1", max_connections=None)
    await server.wait_listening()
    server.on("connection", lambda ws, request: server.subscribe(ws, "bench"))
    url = f"ws://127.0.0.1:{server.address()[1]}"
    context = multiprocessing.get_context("spawn")
    pipes = []
    procs = []
    share = [subscribers // processes + (i < subscribers % processes) for i in range(processes)]
    for count in share:
        parent, child = context.Pipe()
        proc = context.Process(target=_client_process, args=(url, count, 0, child))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    loop = asyncio.get_running_loop()
    for pipe in pipes:
        assert await loop.run_in_executor(None, pipe.recv) == "ready"
    while len(server.clients) < subscribers:
        await asyncio.sleep(0.01)
    rows = []
    for size in sizes:
        data = os.urandom(size)
        for mode in ("loop", "publish"):
            for pipe in pipes:
                pipe.send(messages)
            for pipe in pipes:
                assert await loop.run_in_executor(None, pipe.recv) == "armed"
            clients = list(server.clients)
            sending = 0.0
            started = time.perf_counter()
            for i in range(messages):
                t0 = time.perf_counter()
                if mode == "publish":
                    server.publish("bench", data)
                else:
                    for ws in clients:
                        ws.send(data)
                sending += time.perf_counter() - t0
                if (i + 1) % burst == 0:
                    t0 = time.perf_counter()
                    await asyncio.sleep(0)  # the loop turn: publish()'s batches are written
                    sending += time.perf_counter() - t0
            for pipe in pipes:
                await loop.run_in_executor(None, pipe.recv)
            elapsed = time.perf_counter() - started
            deliveries = subscribers * messages
            rows.append((subscribers, size, mode, deliveries / elapsed, deliveries / sending))
            print(
                f"{subscribers:>6} subs {size:>5} B {mode:>7}: "
                f"{deliveries / elapsed:>12,.0f} deliveries/s end to end, "
                f"{deliveries / sending:>12,.0f} deliveries/s send side",
                file=sys.stderr,
                flush=True,
            )
    stats = server.fanout_stats
    assert stats.dropped == 0, stats
    for pipe in pipes:
        pipe.send("stop")
    for proc in procs:
        proc.join(30)
    await server.close()
    return rows


class _NullTransport(asyncio.Transport):
    """A transport that drops what is written: the Python-side cost of a delivery alone."""

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def set_protocol(self, protocol: Any) -> None:
        pass

    def is_reading(self) -> bool:
        return True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _python_side(subscribers: int, sizes: list[int], messages: int) -> list[Any]:
    """publish() and the loop over connections whose transports drop the bytes: what framing
    and writing cost in Python, without the kernel's loopback."""
    from wsfast.options import ConnectionOptions
    from wsfast.websocket import accept

    server = wsfast.WebSocketServer(no_server=True)
    options = ConnectionOptions()
    clients = [accept(_NullTransport(), "", {}, None, options) for _ in range(subscribers)]
    for ws in clients:
        server.subscribe(ws, "bench")
    rows = []
    for size in sizes:
        data = os.urandom(size)
        for mode in ("loop", "publish"):
            started = time.perf_counter()
            for _ in range(messages):
                if mode == "publish":
                    server.publish("bench", data)
                else:
                    for ws in clients:
                        ws.send(data)
                await asyncio.sleep(0)  # publish() writes its batches at the loop turn
            elapsed = time.perf_counter() - started
            rows.append((subscribers, size, mode, subscribers * messages / elapsed))
    return rows


# -- --table-peers: wsfast with and without the Redis backplane against socket.io ----------------

_NODE_DIR = Path(__file__).resolve().parent / "node"
_TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"
_NODE_PACKAGES = ("socket.io", "@socket.io/redis-adapter", "redis", "ws")
_TOPIC = "bench"
#: The backplane's channel prefix, given to the servers and read back in ``PUBSUB NUMSUB``.
_CHANNEL_PREFIX = "wsfast:"
#: The socket.io event packet around a message: ``42["msg","<text>"]``.
_SOCKETIO_ENVELOPE = len('42["msg",""]')


@dataclass(frozen=True)
class _Peer:
    """One row of ``--table-peers``: a library, with or without Redis, in one or two servers."""

    name: str
    library: str  # "wsfast" or "socketio"
    redis: bool
    servers: int

    @property
    def baseline(self) -> str:
        """The row this one is compared with: the same setup under socket.io."""
        return self.name.replace("wsfast", "socketio")


_PEERS = (
    _Peer("wsfast", "wsfast", redis=False, servers=1),
    _Peer("wsfast-redis", "wsfast", redis=True, servers=1),
    _Peer("wsfast-redis-x2", "wsfast", redis=True, servers=2),
    _Peer("socketio", "socketio", redis=False, servers=1),
    _Peer("socketio-redis", "socketio", redis=True, servers=1),
    _Peer("socketio-redis-x2", "socketio", redis=True, servers=2),
)


class _Child:
    """A child process spoken to in lines: commands on its stdin, answers on its stdout (its
    stderr is this process's)."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = f"{name} (pid {process.pid})"
        self.process = process

    @classmethod
    async def start(cls, name: str, *argv: str) -> _Child:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        return cls(name, process)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")

    async def read(self, timeout: float) -> list[str]:
        """The next line's words; RuntimeError if the process ended or said nothing in time."""
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            raise RuntimeError(f"{self.name} said nothing for {timeout:.0f} s") from None
        if not line:
            code = await self.process.wait()
            raise RuntimeError(f"{self.name} exited with status {code} (its stderr is above)")
        return line.decode().split()

    async def expect(self, word: str, timeout: float) -> list[str]:
        """The words after ``word`` on the next line; RuntimeError if the line is another."""
        words = await self.read(timeout)
        if not words or words[0] != word:
            raise RuntimeError(f"{self.name}: expected {word!r}, got {' '.join(words)!r}")
        return words[1:]

    async def ask(self, command: str, timeout: float = 30.0) -> list[str]:
        self.send(command)
        return await self.expect(command, timeout)

    async def stop(self) -> None:
        """Asks it to quit (stdin closed), then kills it by its PID after 5 s."""
        process = self.process
        if process.returncode is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except asyncio.TimeoutError:
                os.kill(process.pid, signal.SIGKILL)
                await process.wait()


def _check_peer_prerequisites(peers: list[_Peer]) -> None:
    """SystemExit naming what to install when a row cannot run here."""
    # The subscribers of every row are node processes on ws; socket.io rows need the rest.
    if shutil.which("node") is None:
        raise SystemExit("--table-peers: node is not on PATH (node 18 or later)")
    needed = _NODE_PACKAGES if any(peer.library == "socketio" for peer in peers) else ("ws",)
    missing = [p for p in needed if not (_NODE_DIR / "node_modules" / p).is_dir()]
    if missing:
        raise SystemExit(
            f"--table-peers: {', '.join(missing)} missing from benchmarks/node/node_modules;"
            " install the pinned versions first: npm ci --prefix benchmarks/node"
        )
    if any(peer.redis for peer in peers):
        if shutil.which("redis-server") is None:
            raise SystemExit("--table-peers: redis-server is not on PATH (tests/redis_setup.sh)")
        try:
            import redis  # noqa: F401
        except ImportError:
            raise SystemExit(
                "--table-peers: redis-py is missing: pip install 'wsfast[redis]'"
            ) from None


async def _peer_server(backplane_url: str | None) -> None:
    """A wsfast server process of ``--table-peers`` (the Python twin of socketio_server.js):
    every connection subscribes to the topic; same commands and answers on stdin/stdout."""
    backplane = None
    if backplane_url is not None:
        backplane = RedisBackplane(backplane_url, channel_prefix=_CHANNEL_PREFIX)
    server = wsfast.WebSocketServer(
        port=0, host="127.0.0.1", max_connections=None, backplane=backplane
    )
    await server.wait_listening()
    server.on("connection", lambda ws, request: server.subscribe(ws, _TOPIC))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    say(f"listening {server.address()[1]}")
    async for raw in reader:
        command, *words = raw.decode().split() or [""]
        if command == "count":
            say(f"count {len(server.subscribers(_TOPIC))}")
        elif command == "publish":
            messages, size, burst = map(int, words)
            text = "x" * size
            started = time.perf_counter()
            for i in range(messages):
                server.publish(_TOPIC, text)
                if (i + 1) % burst == 0:
                    await asyncio.sleep(0)  # the loop turn: publish()'s batches are written
            say(f"published {time.perf_counter() - started:.6f}")
        elif command == "stats":
            fanout = server.fanout_stats
            stats: dict[str, Any] = {"clients": len(server.clients), "dropped": fanout.dropped}
            if backplane is not None:
                stats.update(backplane.stats._asdict())
            say("stats " + json.dumps(stats, separators=(",", ":")))
        elif command == "quit":
            break
        else:
            raise SystemExit(f"bench_fanout peer server: unknown command {raw!r}")
    await server.close()


async def _start_server(peer: _Peer, redis_url: str | None, index: int, uvloop: bool) -> _Child:
    if peer.library == "wsfast":
        argv = [sys.executable, __file__, "--peer-server", redis_url or "-"]
        if not uvloop:
            argv.append("--no-uvloop")
    else:
        argv = ["node", str(_NODE_DIR / "socketio_server.js")] + ([redis_url] if redis_url else [])
    return await _Child.start(f"{peer.name} server {index}", *argv)


def _redis_ready(peer: _Peer, redis_url: str) -> int:
    """How many server processes have subscribed in Redis to what the benchmark publishes."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        if peer.library == "wsfast":
            return int(client.pubsub_numsub(_CHANNEL_PREFIX + _TOPIC)[0][1])
        # The adapter's one PSUBSCRIBE ("socket.io#/#*") per server: its subscribing connection.
        return sum(1 for info in client.client_list() if int(info.get("psub", 0)) > 0)
    finally:
        client.close()


async def _wait_ready(
    peer: _Peer, servers: list[_Child], expected: list[int], redis_url: str | None
) -> None:
    """Until every server holds its share of subscribers in the topic or room and, with Redis,
    every server's subscription is visible there; RuntimeError after 60 s."""
    deadline = time.monotonic() + 60
    while True:
        counts = [int((await server.ask("count"))[0]) for server in servers]
        in_redis = _redis_ready(peer, redis_url) if redis_url else peer.servers
        if counts == expected and in_redis == peer.servers:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{peer.name}: not ready after 60 s: subscribers per server {counts} of "
                f"{expected}, servers subscribed in Redis {in_redis} of {peer.servers}"
            )
        await asyncio.sleep(0.05)


async def _peer_round(
    peer: _Peer,
    servers: list[_Child],
    clients: list[_Child],
    subscribers: int,
    messages: int,
    size: int,
    burst: int,
) -> float:
    """One round, strictly counted: every subscriber gets exactly ``messages`` frames of the
    right length, or RuntimeError. Returns deliveries/s end to end."""
    length = size + (_SOCKETIO_ENVELOPE if peer.library == "socketio" else 0)
    for client in clients:
        client.send(f"arm {messages} {length}")
    for client in clients:
        await client.expect("armed", 30)
    deliveries = subscribers * messages
    timeout = 30 + deliveries / 5_000
    started = time.perf_counter()
    servers[0].send(f"publish {messages} {size} {burst}")
    waits = [asyncio.ensure_future(client.expect("done", timeout)) for client in clients]
    done, pending = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_EXCEPTION)
    elapsed = time.perf_counter() - started
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)  # their reads are given up
    for task in done:
        task.result()  # a client process that exited or said something else
    if pending:
        counts = []
        for client in clients:
            client.send("count")
            try:
                counts.append(" ".join(await client.read(5)))
            except RuntimeError as error:
                counts.append(str(error))
        raise RuntimeError(
            f"{peer.name}, {subscribers} subscribers, {size} B: the round did not complete in "
            f"{timeout:.0f} s: {deliveries} deliveries expected ({messages} to each subscriber), "
            f"the client processes counted {counts}"
        )
    await servers[0].expect("published", timeout)
    for client in clients:
        client.send("check")
    for client in clients:
        verdict = await client.read(30)
        if verdict != ["ok"]:
            raise RuntimeError(
                f"{peer.name}: {client.name} counted wrongly: {' '.join(verdict)} (connections "
                f"without exactly {messages} messages, frames not of {length} bytes, total)"
            )
    return deliveries / elapsed


async def _peer_row(
    peer: _Peer,
    subscribers: int,
    sizes: list[int],
    messages: int,
    rounds: int,
    burst: int,
    processes: int,
    uvloop: bool,
) -> dict[int, float]:
    """The median deliveries/s of each size for one row, after a warm-up round of each size.
    Every process it starts is stopped (by PID) when it returns or fails."""
    redis_server: Any = None
    servers: list[_Child] = []
    clients: list[_Child] = []
    try:
        if peer.redis:
            sys.path.insert(0, str(_TESTS_DIR))
            from redis_server import RedisServer

            redis_server = RedisServer(shutil.which("redis-server") or "redis-server")
            redis_server.start()
        redis_url = redis_server.url if redis_server else None
        for index in range(peer.servers):
            servers.append(await _start_server(peer, redis_url, index, uvloop))
        ports = [int((await server.expect("listening", 60))[0]) for server in servers]
        if peer.library == "wsfast":
            urls = [f"ws://127.0.0.1:{port}/" for port in ports]
        else:
            urls = [f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket" for port in ports]
        protocol = "ws" if peer.library == "wsfast" else "socketio"
        offset = 0
        for index in range(processes):
            count = subscribers // processes + (index < subscribers % processes)
            clients.append(
                await _Child.start(
                    f"client process {index}",
                    "node",
                    str(_NODE_DIR / "fanout_clients.js"),
                    protocol,
                    str(count),
                    str(offset),
                    *urls,
                )
            )
            offset += count
        for client in clients:
            await client.expect("ready", 60 + subscribers / 100)
        # Connection i of all goes to server i % servers (fanout_clients.js).
        expected = [len(range(index, subscribers, peer.servers)) for index in range(peer.servers)]
        await _wait_ready(peer, servers, expected, redis_url)
        medians = {}
        for size in sizes:
            await _peer_round(
                peer, servers, clients, subscribers, max(1, messages // 5), size, burst
            )
            rates = []
            for _ in range(rounds):
                rates.append(
                    await _peer_round(peer, servers, clients, subscribers, messages, size, burst)
                )
                print(
                    f"{peer.name:>17} {subscribers:>6} subs {size:>5} B: "
                    f"{rates[-1]:>12,.0f} deliveries/s end to end",
                    file=sys.stderr,
                    flush=True,
                )
            medians[size] = statistics.median(rates)
        if peer.library == "wsfast":
            for server in servers:
                stats = json.loads((await server.ask("stats"))[0])
                if stats["dropped"] or stats.get("lost") or stats.get("gaps"):
                    raise RuntimeError(f"{peer.name}: {server.name} lost messages: {stats}")
        return medians
    finally:
        for child in clients + servers:
            await child.stop()
        if redis_server is not None:
            redis_server.close()


def _peers_table(results: dict[tuple[str, int, int], float]) -> str:
    """The markdown table of ``--table-peers``."""
    lines = [
        "| subscribers | size | server | deliveries/s | wsfast / socket.io | / one process |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for subscribers, size in dict.fromkeys((s, z) for _, s, z in results):
        for peer in _PEERS:
            rate = results.get((peer.name, subscribers, size))
            if rate is None:
                continue
            base = results.get((peer.baseline, subscribers, size))
            versus = f"{rate / base:.2f}x" if peer.library == "wsfast" and base else "-"
            # The same library's row without a backplane (named after the library).
            single = results.get((peer.library, subscribers, size))
            scaling = f"{rate / single:.2f}x" if single and peer.redis else "-"
            lines.append(
                f"| {subscribers:,} | {_size_label(size)} | {peer.name} | {rate:,.0f} "
                f"| {versus} | {scaling} |"
            )
    return "\n".join(lines)


def _size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 and size % 1024 == 0 else f"{size} B"


def _table_peers(
    runs: list[tuple[int, int]],
    sizes: list[int],
    rounds: int,
    burst: int,
    processes: int,
    names: list[str] | None,
    no_uvloop: bool,
) -> None:
    peers = [peer for peer in _PEERS if names is None or peer.name in names]
    unknown = set(names or ()) - {peer.name for peer in _PEERS}
    if unknown:
        raise SystemExit(
            f"--rows: unknown {sorted(unknown)}; the rows are {[p.name for p in _PEERS]}"
        )
    _check_peer_prerequisites(peers)
    uvloop = not no_uvloop and importlib.util.find_spec("uvloop") is not None
    print(
        f"RLIMIT_NOFILE {_raise_fd_limit()}; {os.cpu_count()} CPUs; speedups "
        f"{wsfast.speedups()}; {'uvloop' if uvloop else 'asyncio'} in the wsfast servers; "
        f"text messages; {burst} message(s) per loop turn; medians of {rounds} rounds"
    )
    results: dict[tuple[str, int, int], float] = {}
    for subscribers, messages in runs:
        for peer in peers:
            medians = asyncio.run(
                _peer_row(peer, subscribers, sizes, messages, rounds, burst, processes, uvloop)
            )
            for size, rate in medians.items():
                results[peer.name, subscribers, size] = rate
    print()
    print(_peers_table(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", action="store_true", help="1,000 and 10,000 subscribers")
    parser.add_argument(
        "--table-peers",
        action="store_true",
        help="wsfast, wsfast with Redis in one and two processes, and the same under socket.io",
    )
    parser.add_argument(
        "--subscribers", type=int, help="subscribers (default 1,000; with a --table*: the only run)"
    )
    parser.add_argument("--size", type=int, action="append", help="message size (repeatable)")
    parser.add_argument("--messages", type=int, default=0, help="messages per run")
    parser.add_argument("--processes", type=int, default=3, help="client processes")
    parser.add_argument(
        "--burst", type=int, default=1, help="messages sent per event-loop turn (default 1)"
    )
    parser.add_argument("--python-only", action="store_true", help="only the run without sockets")
    parser.add_argument(
        "--rounds", type=int, default=3, help="--table-peers: rounds per row (median; default 3)"
    )
    parser.add_argument(
        "--rows", help="--table-peers: only these rows (comma-separated, e.g. wsfast,socketio)"
    )
    parser.add_argument(
        "--no-uvloop", action="store_true", help="--table-peers: asyncio's loop in wsfast servers"
    )
    parser.add_argument("--peer-server", metavar="REDIS_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    hard = _raise_fd_limit()
    if args.peer_server is not None:
        loop = new_loop(not args.no_uvloop)
        try:
            url = None if args.peer_server == "-" else args.peer_server
            loop.run_until_complete(_peer_server(url))
        finally:
            loop.close()
        return
    sizes = args.size or [32, 4096]
    runs = [(1000, 200), (10000, 30)] if args.table or args.table_peers else [(1000, 100)]
    if args.subscribers:
        runs = [(args.subscribers, dict(runs).get(args.subscribers, 100))]
    runs = [(subscribers, args.messages or messages) for subscribers, messages in runs]
    if args.table_peers:
        names = args.rows.split(",") if args.rows else None
        _table_peers(runs, sizes, args.rounds, args.burst, args.processes, names, args.no_uvloop)
        return
    if args.python_only:
        rows = []
        for subscribers, messages in runs:
            rows += asyncio.run(_python_side(subscribers, sizes, messages))
        for subscribers, size, mode, rate in rows:
            print(f"{subscribers:>6} subs {size:>5} B {mode:>7}: {rate:>12,.0f} deliveries/s")
        return
    print(
        f"RLIMIT_NOFILE {hard}; {os.cpu_count()} CPUs; speedups {wsfast.speedups()}; "
        f"{args.burst} message(s) per loop turn"
    )
    rows = []
    for subscribers, messages in runs:
        rows += asyncio.run(_run(subscribers, sizes, messages, args.processes, args.burst))
    python_rows = []
    for subscribers, messages in runs:
        python_rows += asyncio.run(_python_side(subscribers, sizes, messages))
    print()
    print("Python side only (transports that drop the bytes):")
    print("| subscribers | size | loop: deliveries/s | publish: deliveries/s | ratio |")
    print("| --- | --- | --- | --- | --- |")
    python_by_key = {(s, z, m): d for s, z, m, d in python_rows}
    for subscribers, size in dict.fromkeys((s, z) for s, z, _, _ in python_rows):
        lp = python_by_key[subscribers, size, "loop"]
        pp = python_by_key[subscribers, size, "publish"]
        print(f"| {subscribers:,} | {size} B | {lp:,.0f} | {pp:,.0f} | {pp / lp:.2f}x |")
    print()
    print("Over loopback sockets, clients in other processes:")
    print(
        "| subscribers | size | loop: deliveries/s | publish: deliveries/s | ratio "
        "| loop: send side | publish: send side | ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    by_key = {(s, z, m): (e, w) for s, z, m, e, w in rows}
    for subscribers, size in dict.fromkeys((s, z) for s, z, _, _, _ in rows):
        le, lw = by_key[subscribers, size, "loop"]
        pe, pw = by_key[subscribers, size, "publish"]
        print(
            f"| {subscribers:,} | {size} B | {le:,.0f} | {pe:,.0f} | {pe / le:.2f}x "
            f"| {lw:,.0f} | {pw:,.0f} | {pw / lw:.2f}x |"
        )


if __name__ == "__main__":
    main()

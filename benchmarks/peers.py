"""Echo servers and echo clients of wsfast and of its Python peers, for the echo benchmarks.

Every server runs in its own process, started through ``taskset -c 0`` next to a client pinned
to the same CPU: on a 2-vCPU guest a wake-up across the two vCPUs costs ~90 us and would
measure the hypervisor, not the library (``../shared/DESIGN.md`` section 6).

Servers (``python benchmarks/peers.py server NAME [--deflate] [--no-uvloop]`` prints
``PORT <n>`` once listening and serves until its standard input closes):

- ``raw``: a TCP echo, the ceiling (no WebSocket at all; only the raw client can drive it).
- ``floor``: a minimal WebSocket echo in Python (``floor_server.py``): one reused buffer, no
  message objects, no checks; driven by the same client as the others.
- ``wsfast``: ws' event API, ``ws.on("message", lambda data, is_binary: ws.send(...))``.
- ``wsfast-serve``: ``wsfast.serve`` with an ``async for message in ws`` handler.
- ``websockets``, ``aiohttp``, ``picows``: the peers' own idiomatic echo servers.
- ``uvicorn-wsfast``, ``uvicorn-websockets-sansio``, ``uvicorn-wsproto``: one ASGI echo
  application under uvicorn with each ``--ws`` engine (``bench_uvicorn.py``).

Clients share one interface, ``await client.echo(payloads, count, window)``: send ``count``
messages cycling through ``payloads`` with at most ``window`` in flight, and return once every
echo came back. ``window=1`` is a round trip per message.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import floor_server

__all__ = [
    "SERVERS",
    "DEFLATE_SERVERS",
    "CLIENTS",
    "UVICORN_ENGINES",
    "asgi_echo",
    "available",
    "describe",
    "new_loop",
    "pin_to_cpu",
    "ServerProcess",
    "close_all",
    "open_client",
    "open_idle",
    "use_deflate",
    "rss_kib",
]

HOST = "127.0.0.1"
# wsfast-fallback: the wsfast server with its native speedups switched off by the variables.
_SPEEDUPS = importlib.util.find_spec("wsfast_bufferutil") is not None
_FALLBACK = ("wsfast-fallback",) if _SPEEDUPS else ()
SERVERS = (
    "raw",
    "floor",
    "wsfast",
    *_FALLBACK,
    "wsfast-serve",
    "websockets",
    "aiohttp",
    "picows",
    "node-ws",
)
# wsfast-level1: compression level 1, the level aiohttp's server uses (Z_BEST_SPEED); wsfast's
# default is ws' (zlib's 6).
DEFLATE_SERVERS = (
    "wsfast",
    "wsfast-level1",
    *_FALLBACK,
    "wsfast-serve",
    "websockets",
    "aiohttp",
    "node-ws",
)
CLIENTS = ("picows", "wsfast", "wsfast-recv", "websockets", "aiohttp")
MAX_SIZE = 64 * 1024 * 1024  # above every benchmarked message, so no peer refuses 1 MiB
CPU = os.environ.get("WSFAST_BENCH_CPU", "0")

# uvicorn's --ws value for each ASGI server.
UVICORN_ENGINES = {
    "uvicorn-wsfast": "wsfast.uvicorn:WebSocketProtocol",
    "uvicorn-websockets-sansio": "websockets-sansio",
    "uvicorn-wsproto": "wsproto",
}

_MODULES = {
    "uvicorn-wsfast": "uvicorn",
    "uvicorn-websockets-sansio": "uvicorn",
    "uvicorn-wsproto": "wsproto",
    "raw": None,
    "floor": None,
    "wsfast": "wsfast",
    "wsfast-fallback": "wsfast",
    "wsfast-level1": "wsfast",
    "wsfast-serve": "wsfast",
    "wsfast-recv": "wsfast",
    "websockets": "websockets",
    "aiohttp": "aiohttp",
    "picows": "picows",
}
# node's ws: a node process running benchmarks/node/echo_server.js (npm ci --prefix
# benchmarks/node installs ws there).
_NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
_NODE_SERVERS = {"node-ws": os.path.join(_NODE_DIR, "echo_server.js")}


def available(name: str) -> bool:
    """Whether the library behind server or client ``name`` is importable (or, for node's ws,
    whether node and ``benchmarks/node/node_modules/ws`` are there)."""
    if name in _NODE_SERVERS:
        return shutil.which("node") is not None and os.path.isdir(
            os.path.join(_NODE_DIR, "node_modules", "ws")
        )
    module = _MODULES[name]
    return module is None or importlib.util.find_spec(module) is not None


def new_loop(use_uvloop: bool = True) -> asyncio.AbstractEventLoop:
    """A fresh event loop: uvloop when asked for and installed, else asyncio's own."""
    if use_uvloop and importlib.util.find_spec("uvloop") is not None:
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def pin_to_cpu(cpu: str = CPU) -> None:
    """Pin this process to ``cpu``, the one the servers are started on."""
    if hasattr(os, "sched_setaffinity") and cpu != "":
        os.sched_setaffinity(0, {int(cpu)})


def describe(rounds: int, use_uvloop: bool) -> str:
    """One comment line naming the conditions of a table: versions, loop, speedups, rounds."""
    from importlib import metadata

    versions = []
    for dist in ("wsfast", "websockets", "aiohttp", "picows", "uvloop"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    if available("node-ws"):
        import json

        with open(os.path.join(_NODE_DIR, "node_modules", "ws", "package.json")) as f:
            versions.append(f"node ws {json.load(f)['version']} (node {_node_version()})")
    import wsfast

    loop = "uvloop" if use_uvloop and importlib.util.find_spec("uvloop") else "asyncio"
    return (
        f"<!-- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; Python "
        f"{sys.version.split()[0]}; {', '.join(versions)}; {loop}; wsfast speedups "
        f"{wsfast.speedups()}; client and servers on CPU {CPU}; medians of {rounds} rounds -->"
    )


def _node_version() -> str:
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out.stdout.strip().lstrip("v") or "?"


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/pid/status")


# -- servers (run inside the server process) -------------------------------------------------


async def _serve_raw(deflate: bool) -> tuple[int, Any]:
    class Echo(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    server = await asyncio.get_running_loop().create_server(Echo, HOST, 0)
    return server.sockets[0].getsockname()[1], server


async def _serve_wsfast(deflate: bool | dict[str, Any]) -> tuple[int, Any]:
    import wsfast

    server = wsfast.WebSocketServer(
        port=0, host=HOST, per_message_deflate=deflate, max_payload=MAX_SIZE
    )

    def connection(ws: Any, request: Any) -> None:
        ws.on("message", lambda data, is_binary: ws.send(data, binary=is_binary))

    server.on("connection", connection)
    await server.wait_listening()
    return server.address()[1], server


async def _serve_wsfast_serve(deflate: bool) -> tuple[int, Any]:
    import wsfast

    async def handler(ws: Any, request: Any) -> None:
        async for message in ws:
            await ws.send(message)

    server = await wsfast.serve(handler, HOST, 0, per_message_deflate=deflate, max_payload=MAX_SIZE)
    return server.address()[1], server


async def _serve_websockets(deflate: bool) -> tuple[int, Any]:
    from websockets.asyncio.server import serve

    async def handler(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    server = await serve(
        handler,
        HOST,
        0,
        compression="deflate" if deflate else None,
        max_size=MAX_SIZE,
        max_queue=None,
        ping_interval=None,
    )
    return server.sockets[0].getsockname()[1], server


async def _serve_aiohttp(deflate: bool) -> tuple[int, Any]:
    from aiohttp import WSMsgType, web

    async def handler(request: Any) -> Any:
        ws = web.WebSocketResponse(compress=deflate, max_msg_size=MAX_SIZE, autoping=True)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    return site._server.sockets[0].getsockname()[1], runner  # type: ignore[union-attr]


async def _serve_picows(deflate: bool) -> tuple[int, Any]:
    if deflate:
        raise SystemExit("picows has no permessage-deflate")
    from picows import WSCloseCode, WSListener, WSMsgType, ws_create_server

    class Echo(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                code = frame.get_close_code()
                if code == WSCloseCode.NO_INFO:  # picows would write it as code 0
                    code = WSCloseCode.OK
                transport.send_close(code, frame.get_close_message())
                transport.disconnect()
                return
            transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)

    server = await ws_create_server(lambda request: Echo(), HOST, 0, max_frame_size=MAX_SIZE)
    return server.sockets[0].getsockname()[1], server


async def asgi_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI echo application every uvicorn engine serves: text as text, binary as binary."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        event = await receive()
        if event["type"] != "websocket.receive":
            return
        if event.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": event["bytes"]})
        else:
            await send({"type": "websocket.send", "text": event["text"]})


async def _serve_uvicorn(engine: str, deflate: bool) -> tuple[int, Any]:
    import uvicorn

    config = uvicorn.Config(
        asgi_echo,
        host=HOST,
        port=0,
        ws=engine,
        ws_max_size=MAX_SIZE,
        ws_per_message_deflate=deflate,
        ws_ping_interval=None,
        lifespan="off",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return server.servers[0].sockets[0].getsockname()[1], (server, task)


_SERVE = {
    "raw": _serve_raw,
    "floor": lambda deflate: floor_server.serve_floor(HOST),
    "wsfast": _serve_wsfast,
    "wsfast-fallback": _serve_wsfast,
    "wsfast-level1": lambda deflate: _serve_wsfast({"level": 1} if deflate else False),
    "wsfast-serve": _serve_wsfast_serve,
    "websockets": _serve_websockets,
    "aiohttp": _serve_aiohttp,
    "picows": _serve_picows,
    **{
        name: (lambda deflate, engine=engine: _serve_uvicorn(engine, deflate))
        for name, engine in UVICORN_ENGINES.items()
    },
}


async def start_server(name: str, deflate: bool = False) -> tuple[int, Any]:
    """Start server ``name`` in this process's running loop; returns (port, server object)."""
    return await _SERVE[name](deflate)


def server_main(argv: Sequence[str]) -> None:
    """``peers.py server NAME [--deflate] [--no-uvloop]``: serve until stdin closes."""
    name = argv[0]
    deflate = "--deflate" in argv
    if name == "wsfast-fallback":
        # No native code of wsfast[speedups]: neither extension, and the standard zlib module.
        for variable in ("WSFAST_NO_BUFFER_UTIL", "WSFAST_NO_UTF_8_VALIDATE", "WSFAST_NO_ZLIB_NG"):
            os.environ[variable] = "1"
    if not os.environ.get("WSFAST_BENCH_VERBOSE"):
        # Idle connections are dropped without a close frame at the end of the memory figure;
        # the servers' reports of that would bury the tables.
        logging.disable(logging.CRITICAL)
    loop = new_loop("--no-uvloop" not in argv)
    asyncio.set_event_loop(loop)

    async def main() -> None:
        port, _server = await start_server(name, deflate)
        print(f"PORT {port}", flush=True)
        done = loop.create_future()
        loop.add_reader(sys.stdin.fileno(), lambda: done.done() or done.set_result(None))
        await done

    profile_path = os.environ.get("WSFAST_BENCH_PROFILE")
    if profile_path:  # cProfile of the whole server, written when its stdin closes
        import cProfile

        profiler = cProfile.Profile()
        profiler.runcall(loop.run_until_complete, main())
        profiler.dump_stats(profile_path)
    else:
        loop.run_until_complete(main())


class ServerProcess:
    """A benchmark server in a subprocess pinned with ``taskset``; ``.port``, ``.pid``."""

    def __init__(
        self,
        name: str,
        deflate: bool = False,
        use_uvloop: bool = True,
        cpu: str = CPU,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        if name in _NODE_SERVERS:
            args = ["node", _NODE_SERVERS[name]]
        else:
            args = [sys.executable, os.path.abspath(__file__), "server", name]
            if not use_uvloop:
                args.append("--no-uvloop")
        if deflate:
            args.append("--deflate")
        if cpu != "":
            args = ["taskset", "-c", cpu, *args]
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=None if env is None else {**os.environ, **env},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.close()
            raise RuntimeError(f"server {name} did not start: {line!r}")
        self.port = int(line.split()[1])
        self.pid = self.process.pid
        self.url = f"ws://{HOST}:{self.port}/"

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


# -- clients -----------------------------------------------------------------------------------


class _Driver:
    """Sliding-window bookkeeping shared by the callback-style clients."""

    def _begin(self, payloads: Sequence[Any], count: int, window: int) -> asyncio.Future[None]:
        self.payloads = payloads
        self.count = count
        self.sent = 0
        self.received = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for _ in range(min(window, count)):
            self._send_next()
        return self.done

    def _send_next(self) -> None:
        payloads = self.payloads
        self._send(payloads[self.sent % len(payloads)])
        self.sent += 1

    def _on_echo(self) -> None:
        self.received += 1
        if self.sent < self.count:
            self._send_next()
        elif self.received == self.count and not self.done.done():
            self.done.set_result(None)

    def _send(self, payload: Any) -> None:
        raise NotImplementedError


class PicowsClient(_Driver):
    name = "picows"

    async def connect(self, url: str, deflate: bool) -> None:
        if deflate:
            raise RuntimeError("picows has no permessage-deflate")
        from picows import WSListener, WSMsgType, ws_connect

        driver = self
        self._binary, self._text = WSMsgType.BINARY, WSMsgType.TEXT

        class Listener(WSListener):  # type: ignore[misc]
            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                if frame.fin and frame.msg_type != WSMsgType.CLOSE:
                    driver._on_echo()

        self.transport, _ = await ws_connect(Listener, url, max_frame_size=MAX_SIZE)

    def _send(self, payload: Any) -> None:
        if isinstance(payload, str):
            self.transport.send(self._text, payload.encode())
        else:
            self.transport.send(self._binary, payload)

    async def echo(self, payloads: Sequence[Any], count: int, window: int) -> None:
        await self._begin(payloads, count, window)

    async def close(self) -> None:
        from picows import WSCloseCode

        self.transport.send_close(WSCloseCode.OK)
        self.transport.disconnect()
        await self.transport.wait_disconnected()


class WsfastClient(_Driver):
    """wsfast's client through ws' event API (a ``'message'`` listener)."""

    name = "wsfast"

    async def connect(self, url: str, deflate: bool) -> None:
        import wsfast

        self.ws = await wsfast.connect(url, per_message_deflate=deflate, max_payload=MAX_SIZE)
        self.ws.on("message", lambda data, is_binary: self._on_echo())

    def _send(self, payload: Any) -> None:
        self.ws.send(payload)

    async def echo(self, payloads: Sequence[Any], count: int, window: int) -> None:
        await self._begin(payloads, count, window)

    async def close(self) -> None:
        await self.ws.close()


class _AwaitClient:
    """Clients with an awaitable send/receive pair."""

    async def echo(self, payloads: Sequence[Any], count: int, window: int) -> None:
        send, recv, n = self._send, self._recv, len(payloads)
        sent = 0
        for _ in range(min(window, count)):
            await send(payloads[sent % n])
            sent += 1
        for _ in range(count):
            await recv()
            if sent < count:
                await send(payloads[sent % n])
                sent += 1

    async def _send(self, payload: Any) -> None:
        raise NotImplementedError

    async def _recv(self) -> Any:
        raise NotImplementedError


class WsfastRecvClient(_AwaitClient):
    """wsfast's client through the asyncio API (``await ws.send`` / ``await ws.recv()``)."""

    name = "wsfast-recv"

    async def connect(self, url: str, deflate: bool) -> None:
        import wsfast

        self.ws = await wsfast.connect(url, per_message_deflate=deflate, max_payload=MAX_SIZE)
        self._send = self.ws.send  # type: ignore[method-assign]
        self._recv = self.ws.recv  # type: ignore[method-assign]

    async def close(self) -> None:
        await self.ws.close()


class WebsocketsClient(_AwaitClient):
    name = "websockets"

    async def connect(self, url: str, deflate: bool) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(
            url,
            compression="deflate" if deflate else None,
            max_size=MAX_SIZE,
            max_queue=None,
            ping_interval=None,
        )
        self._send = self.ws.send  # type: ignore[method-assign]
        self._recv = self.ws.recv  # type: ignore[method-assign]

    async def close(self) -> None:
        await self.ws.close()


class AiohttpClient(_AwaitClient):
    name = "aiohttp"

    async def connect(self, url: str, deflate: bool) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(
            url, compress=15 if deflate else 0, max_msg_size=MAX_SIZE, autoping=True
        )
        self._recv = self.ws.receive  # type: ignore[method-assign]

    async def _send(self, payload: Any) -> None:
        if isinstance(payload, str):
            await self.ws.send_str(payload)
        else:
            await self.ws.send_bytes(payload)

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


class RawClient(_Driver):
    """Length-counting TCP client for the ``raw`` echo server: the ceiling, no framing at all."""

    name = "raw"

    async def connect(self, url: str, deflate: bool) -> None:
        driver = self

        class Proto(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                driver._pending += len(data)
                while driver._pending >= driver._size:
                    driver._pending -= driver._size
                    driver._on_echo()

        port = int(url.rsplit(":", 1)[1].strip("/"))
        self.transport, _ = await asyncio.get_running_loop().create_connection(Proto, HOST, port)
        self._pending = 0
        self._size = 1

    def _send(self, payload: Any) -> None:
        self.transport.write(payload.encode() if isinstance(payload, str) else payload)

    async def echo(self, payloads: Sequence[Any], count: int, window: int) -> None:
        sizes = {len(p) for p in payloads}
        if len(sizes) != 1:
            raise ValueError("the raw client needs payloads of one size")
        self._size = sizes.pop()
        await self._begin(payloads, count, window)

    async def close(self) -> None:
        self.transport.close()


_CLIENTS: dict[str, type] = {
    "picows": PicowsClient,
    "wsfast": WsfastClient,
    "wsfast-recv": WsfastRecvClient,
    "websockets": WebsocketsClient,
    "aiohttp": AiohttpClient,
    "raw": RawClient,
}


async def open_client(name: str, url: str, deflate: bool = False) -> Any:
    """Connect echo client ``name`` to ``url``; call ``await client.echo(...)`` then ``close``."""
    client = _CLIENTS[name]()
    await client.connect(url, deflate)
    return client


def client_for(server: str, preferred: str = "picows") -> str:
    """The client that drives ``server``: ``raw`` for the raw echo, else ``preferred``."""
    return "raw" if server == "raw" else preferred


def close_all(loop: asyncio.AbstractEventLoop, clients: Any, procs: Any) -> None:
    """Close the clients (best effort: a server may be gone already), then stop the servers."""
    for client in clients:
        try:
            loop.run_until_complete(asyncio.wait_for(client.close(), 5))
        except Exception:
            pass
    for proc in procs:
        proc.close()


# -- idle connections for the memory figure ----------------------------------------------------

_REQUEST = (
    "GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
)


def open_idle(
    port: int, count: int, deflate: bool = False, timeout: float = 10.0
) -> tuple[list[socket.socket], int]:
    """Open ``count`` WebSocket connections by hand and leave them idle.

    Returns the sockets (close them to end the connections) and how many responses accepted
    permessage-deflate. The same bytes reach every server, so only the server differs.
    """
    extra = (
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        if deflate
        else ""
    )
    request = _REQUEST.format(host=HOST, port=port, extra=extra).encode()
    sockets: list[socket.socket] = []
    negotiated = 0
    deadline = time.monotonic() + timeout
    for _ in range(count):
        sock = socket.create_connection((HOST, port), timeout=timeout)
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError("server closed during the handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"handshake refused: {head[:80]!r}")
        if b"permessage-deflate" in head.lower():
            negotiated += 1
        sockets.append(sock)
        if time.monotonic() > deadline:
            raise TimeoutError("opening idle connections took too long")
    return sockets, negotiated


def _compressed_text_frame(size: int) -> bytes:
    """One masked text frame with a ``size``-byte message deflated (RFC 7692: RSV1, the sync
    flush's ``00 00 ff ff`` removed), the same bytes for every connection and server."""
    import random
    import zlib

    rng = random.Random(7)
    words = [b"socket", b"frame", b"deflate", b"message", b"window", b"42", b"{}", b"echo"]
    text = b" ".join(rng.choice(words) for _ in range(size))[:size]
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = (deflate.compress(text) + deflate.flush(zlib.Z_SYNC_FLUSH))[:-4]
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    assert len(payload) < 65536
    length = (
        bytes((0x80 | len(payload),))
        if len(payload) < 126
        else b"\xfe" + len(payload).to_bytes(2, "big")
    )
    return b"\xc1" + length + mask + masked


def _read_frame(sock: socket.socket) -> None:
    """Read one whole unmasked frame from ``sock`` (the server's reply)."""
    buffer = b""

    def need(n: int) -> bytes:
        nonlocal buffer
        while len(buffer) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("server closed before its reply")
            buffer += chunk
        out, buffer = buffer[:n], buffer[n:]
        return out

    head = need(2)
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(need(2), "big")
    elif length == 127:
        length = int.from_bytes(need(8), "big")
    need(length)


def use_deflate(sockets: Sequence[socket.socket], size: int = 4096) -> None:
    """Send one compressed ``size``-byte text message on each connection (opened with
    ``open_idle(..., deflate=True)``) and read the echo: each server has then inflated one
    message and compressed one, so its zlib contexts exist and are in use."""
    data = _compressed_text_frame(size)
    for sock in sockets:
        sock.sendall(data)
    for sock in sockets:
        _read_frame(sock)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "server":
        server_main(sys.argv[2:])
    else:
        sys.exit("usage: peers.py server NAME [--deflate] [--no-uvloop]")

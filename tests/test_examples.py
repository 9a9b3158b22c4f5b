"""Every file of ``examples/`` run as a program against real loopback peers, with bounded time.

Servers get a free port through ``PORT`` and announce it with a ``listening on port N`` line;
clients get the URL of a server of this test through ``WS_URL``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from array import array
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import scaled, url_of, wait_for
from test_cli import NEEDS_OPENSSL, self_signed_cert

import wsfast

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# How long one example may run before the test fails (scaled by WSFAST_TEST_TIMEOUT_FACTOR).
RUN_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Example:
    """A running example: its process and everything it printed so far."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.stderr = ""
        self._new = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode().rstrip("\n"))
            self._new.set()
        self._new.set()

    async def line(self, pattern: str, seconds: float = RUN_SECONDS) -> re.Match[str]:
        """The first line printed so far or later that matches ``pattern``."""

        async def look() -> re.Match[str]:
            seen = 0
            while True:
                for text in self.lines[seen:]:
                    match = re.search(pattern, text)
                    if match:
                        return match
                seen = len(self.lines)
                if self._reader.done():
                    raise AssertionError(f"{pattern!r} never printed: {self.lines} {self.stderr}")
                self._new.clear()
                await self._new.wait()

        return await wait_for(look(), seconds)

    async def finish(self, seconds: float = RUN_SECONDS) -> int:
        """Wait for the example to exit by itself; returns its exit status."""
        await wait_for(self.proc.wait(), seconds)
        await self._collect()
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def stop(self) -> None:
        """Interrupt a server example (Ctrl+C) and collect its output."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.proc.wait(), scaled(10))
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await self._collect()

    async def _collect(self) -> None:
        await wait_for(self._reader, 10)
        assert self.proc.stderr is not None
        self.stderr = (await self.proc.stderr.read()).decode()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
async def run_example() -> AsyncIterator[Any]:
    started: list[Example] = []

    async def run(name: str, stdin: bytes | None = None, **env: str) -> Example:
        environ = dict(os.environ)
        environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), environ.get("PYTHONPATH", "")])
        environ["PYTHONUNBUFFERED"] = "1"
        environ.update(env)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLES / name),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environ,
            cwd=EXAMPLES,
        )
        assert proc.stdin is not None
        if stdin is not None:
            proc.stdin.write(stdin)
            await proc.stdin.drain()
            proc.stdin.close()
        example = Example(proc)
        started.append(example)
        return example

    yield run
    for example in started:
        if example.proc.returncode is None:
            example.proc.kill()
            await example.proc.wait()


async def start_server_example(run_example: Any, name: str, **env: str) -> tuple[Example, str]:
    port = free_port()
    example = await run_example(name, PORT=str(port), **env)
    match = await example.line(r"listening on port (\d+)")
    assert int(match.group(1)) == port
    return example, f"ws://127.0.0.1:{port}"


def test_every_example_is_tested() -> None:
    source = Path(__file__).read_text()
    for path in sorted(EXAMPLES.glob("*.py")):
        assert f'"{path.name}"' in source, f"{path.name} is not run by any test"


# -- clients ---------------------------------------------------------------------------------


async def test_text_client(make_server: Any, run_example: Any) -> None:
    server = await make_server()
    received: list[Any] = []

    def connection(ws: wsfast.WebSocket, request: Any) -> None:
        def message(data: Any, is_binary: bool) -> None:
            received.append(data)
            ws.send("hello back")
            ws.close(1000)

        ws.on("message", message)

    server.on("connection", connection)
    example = await run_example("text_client.py", WS_URL=url_of(server, "/path"))
    assert await example.finish() == 0, example.stderr
    assert received == ["something"]
    assert example.lines == ["received: hello back"]


async def test_binary_client(make_server: Any, run_example: Any) -> None:
    server = await make_server()
    received: list[Any] = []

    def connection(ws: wsfast.WebSocket, request: Any) -> None:
        ws.on("message", lambda data, is_binary: (received.append((data, is_binary)), ws.close()))

    server.on("connection", connection)
    example = await run_example("binary_client.py", WS_URL=url_of(server))
    assert await example.finish() == 0, example.stderr
    assert received == [(array("f", [0.0, 0.5, 1.0, 1.5, 2.0]).tobytes(), True)]


async def test_round_trip_time(echo_server: wsfast.WebSocketServer, run_example: Any) -> None:
    example = await run_example("round_trip_time.py", WS_URL=url_of(echo_server))
    await example.line("connected")
    await example.line(r"Round-trip time: \d+\.\d+ ms")
    await wait_for(_until(lambda: sum("Round-trip" in line for line in example.lines) >= 2))
    for ws in list(echo_server.clients):
        ws.close(1001)
    assert await example.finish() == 0, example.stderr
    assert example.lines[-1] == "disconnected"


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


async def test_stream_api(echo_server: wsfast.WebSocketServer, run_example: Any) -> None:
    example = await run_example(
        "stream_api.py", stdin=b"hello\nworld \xc3\xa9\n", WS_URL=url_of(echo_server)
    )
    assert await example.finish() == 0, example.stderr
    assert example.lines == ["hello", "world \u00e9"]
    assert example.stderr == ""


async def test_error_handling(echo_server: wsfast.WebSocketServer, run_example: Any) -> None:
    example = await run_example("error_handling.py", WS_URL=url_of(echo_server))
    assert await example.finish() == 0, example.stderr
    assert sorted(example.lines) == sorted(
        [
            "immediate error: WebSocket is not open: readyState 0 (CONNECTING)",
            "ack: None",
            "closed: 1005",
            "ack: WebSocket is not open: readyState 3 (CLOSED)",
        ]
    )


async def test_heartbeat_client(make_server: Any, run_example: Any) -> None:
    server = await make_server()
    loop = asyncio.get_running_loop()
    opened = loop.time()

    async def pinger(ws: wsfast.WebSocket) -> None:
        for _ in range(4):  # pings every 0.2 s for 0.8 s, then the "cord is pulled"
            await asyncio.sleep(0.2)
            ws.ping()

    server.on("connection", lambda ws, request: asyncio.ensure_future(pinger(ws)))
    example = await run_example(
        "heartbeat_client.py", WS_URL=url_of(server), HEARTBEAT_INTERVAL="0.2"
    )
    await example.line("closed: 1006")
    elapsed = loop.time() - opened
    # Alive while pinged (0.8 s), terminated 1.2 s (interval + 1) after the last ping.
    assert elapsed > 1.5, elapsed
    assert await example.finish() == 0, example.stderr


async def test_compression_client_off(make_server: Any, run_example: Any) -> None:
    server = await make_server(per_message_deflate=True)
    offers: list[str | None] = []
    server.on(
        "connection",
        lambda ws, request: offers.append(request.headers.get("sec-websocket-extensions")),
    )
    example = await run_example("compression_client_off.py", WS_URL=url_of(server))
    assert await example.finish() == 0, example.stderr
    assert example.lines == ["extensions: ''"] and offers == [None]


async def test_asyncio_client(make_server: Any, run_example: Any) -> None:
    server = await make_server()

    async def handler(ws: wsfast.WebSocket) -> None:
        first = await ws.recv()
        await ws.send(first)
        await ws.send("one")
        await ws.send(b"two")
        ws.close(1000)

    server.on("connection", lambda ws, request: asyncio.ensure_future(handler(ws)))
    example = await run_example("asyncio_client.py", WS_URL=url_of(server))
    assert await example.finish() == 0, example.stderr
    assert example.lines == ["first reply: hello", "received: one", "received: b'two'"]


# -- servers ---------------------------------------------------------------------------------


async def test_simple_server(run_example: Any) -> None:
    example, url = await start_server_example(run_example, "simple_server.py")
    async with wsfast.connect(url) as ws:
        assert await wait_for(ws.recv()) == "something"
        await ws.send("hi from the test")
        await example.line("received: hi from the test")
    await example.stop()


async def test_asyncio_server(run_example: Any) -> None:
    example, url = await start_server_example(run_example, "asyncio_server.py")
    async with wsfast.connect(url) as ws:
        await ws.send("echo me")
        assert await wait_for(ws.recv()) == "echo me"
        await ws.send(b"\x00\xff")
        assert await wait_for(ws.recv()) == b"\x00\xff"
    assert ws.close_code == 1000
    await example.stop()


async def test_sync_echo(run_example: Any) -> None:
    example = await run_example("sync_echo.py")
    assert await example.finish() == 0, example.stderr
    assert example.lines[1:] == [
        "received: hello",
        "received: b'\\x00\\x01'",
        "closed with 1000",
    ]
    assert re.match(r"listening on port \d+$", example.lines[0])


async def test_broadcast_all(run_example: Any) -> None:
    example, url = await start_server_example(run_example, "broadcast_all.py")
    async with wsfast.connect(url) as a, wsfast.connect(url) as b, wsfast.connect(url) as c:
        await wait_for(_until(lambda: True))
        await a.send("to all")
        for ws in (a, b, c):
            assert await wait_for(ws.recv()) == "to all"
        await c.send(b"\x01\x02")
        for ws in (a, b, c):
            assert await wait_for(ws.recv()) == b"\x01\x02"
    await example.stop()


async def test_broadcast_others(run_example: Any) -> None:
    example, url = await start_server_example(run_example, "broadcast_others.py")
    async with wsfast.connect(url) as a, wsfast.connect(url) as b, wsfast.connect(url) as c:
        await a.send("from a")
        assert await wait_for(b.recv()) == "from a"
        assert await wait_for(c.recv()) == "from a"
        await b.send(b"from b")
        # a's first message is b's: its own was not sent back to it.
        assert await wait_for(a.recv()) == b"from b"
        assert await wait_for(c.recv()) == b"from b"
    await example.stop()


async def test_client_ip(run_example: Any) -> None:
    example, url = await start_server_example(run_example, "client_ip.py")
    # Without a host the server listens on one dual-stack socket, as Node does, so an IPv4
    # peer shows as an IPv4-mapped IPv6 address there (Node prints the same).
    async with wsfast.connect(url) as ws:
        ip = await wait_for(ws.recv())
    assert ip in ("127.0.0.1", "::ffff:127.0.0.1")
    await example.line(f"remote address: {ip}")
    headers = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1"}
    async with wsfast.connect(url, headers=headers) as ws:
        assert await wait_for(ws.recv()) == "203.0.113.7"
    await example.line("forwarded for: 203.0.113.7")
    await example.stop()


async def test_heartbeat_server(run_example: Any) -> None:
    example, url = await start_server_example(
        run_example, "heartbeat_server.py", HEARTBEAT_INTERVAL="0.2"
    )
    alive = await wait_for(wsfast.connect(url))
    pings: list[bytes] = []
    alive.on("ping", pings.append)
    broken = await wait_for(wsfast.connect(url, auto_pong=False))  # never answers: "cord pulled"
    loop = asyncio.get_running_loop()
    start = loop.time()
    await wait_for(broken.wait_closed())
    assert broken.close_code == 1006  # terminated, no closing handshake
    assert loop.time() - start < scaled(5)
    await example.line("terminating a broken connection")
    await asyncio.sleep(0.5)
    assert alive.ready_state == wsfast.WebSocket.OPEN and len(pings) >= 3
    await alive.close()
    await example.stop()


async def test_compression_server(run_example: Any) -> None:
    example, url = await start_server_example(run_example, "compression_server.py")
    async with wsfast.connect(url) as ws:
        assert ws.extensions == "permessage-deflate"
        params = ws.extension_params["permessage-deflate"]
        assert params.get("server_no_context_takeover") and params.get("client_no_context_takeover")
        assert params.get("server_max_window_bits") == 10
        message = "compress me " * 1000
        await ws.send(message)
        assert await wait_for(ws.recv()) == message
    await example.line("extensions: permessage-deflate")
    await example.stop()


async def test_shared_port(run_example: Any) -> None:
    example, url = await start_server_example(run_example, "shared_port.py")
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await wait_for(asyncio.open_connection("127.0.0.1", port))
    writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    response = await wait_for(reader.read())
    writer.close()
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.endswith(b'\r\n\r\n{"msg": "hello"}')
    async with wsfast.connect(url + "/?access_token=t") as ws:
        assert await wait_for(ws.recv()) == "something"
        await ws.send("over the shared port")
        await example.line("received: over the shared port")
    await example.stop()


async def test_multiple_servers(run_example: Any) -> None:
    example, url = await start_server_example(run_example, "multiple_servers.py")
    async with wsfast.connect(url + "/foo") as ws:
        assert await wait_for(ws.recv()) == "this is /foo"
    async with wsfast.connect(url + "/bar?x=1") as ws:
        assert await wait_for(ws.recv()) == "this is /bar"
    ws = wsfast.WebSocket(url + "/other")
    errors: list[BaseException] = []
    ws.on("error", errors.append)
    await wait_for(ws.wait_closed())
    assert errors and isinstance(errors[0], wsfast.WebSocketError)
    await example.stop()


async def test_client_authentication(run_example: Any) -> None:
    example, url = await start_server_example(run_example, "client_authentication.py")
    async with wsfast.connect(url + "/?token=secret-token") as ws:
        await ws.send("hi")
        await example.line("Received message hi from user alice")
    ws = wsfast.WebSocket(url + "/?token=wrong")
    errors: list[Any] = []
    ws.on("error", errors.append)
    await wait_for(ws.wait_closed())
    assert errors and getattr(errors[0], "http_status", None) == 401, errors
    await example.stop()


@NEEDS_OPENSSL
async def test_external_https_server(run_example: Any, tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    example, url = await start_server_example(
        run_example, "external_https_server.py", CERT_FILE=str(cert), KEY_FILE=str(key)
    )
    context = ssl.create_default_context(cafile=str(cert))
    async with wsfast.connect(url.replace("ws://", "wss://"), ssl=context) as ws:
        assert await wait_for(ws.recv()) == "something"
        await ws.send("secure hi")
        await example.line("received: secure hi")
    await example.stop()


async def test_uvicorn_fastapi(run_example: Any) -> None:
    pytest.importorskip("fastapi")
    example, url = await start_server_example(run_example, "uvicorn_fastapi.py")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(RUN_SECONDS)
    while True:  # the line comes before uvicorn binds: retry until it listens
        try:
            ws = await wsfast.connect(f"{url}/rooms/lobby?token=secret", protocols=["chat"])
            break
        except (OSError, wsfast.WebSocketError):
            assert loop.time() < deadline, "uvicorn did not start"
            await asyncio.sleep(0.05)
    assert ws.protocol == "chat"
    await ws.send("hello")
    assert await wait_for(ws.recv()) == "[lobby] hello"
    with pytest.raises(wsfast.WebSocketError, match="403"):
        await wsfast.connect(f"{url}/rooms/lobby?token=wrong")
    # Ctrl+C: uvicorn shuts down gracefully and the engine closes with 1012 (Service Restart).
    await example.stop()
    await wait_for(ws.wait_closed())
    assert ws.close_code == 1012
    assert example.proc.returncode == 0, example.stderr
    assert "lobby: disconnected with 1012" in example.lines


async def test_chat_workers(run_example: Any) -> None:
    from redis_server import RedisServer, redis_binary

    redis = RedisServer(redis_binary())
    redis.start()
    try:
        example, url = await start_server_example(
            run_example, "chat_workers.py", REDIS_URL=redis.url
        )
        # Connect until both workers have a client (the kernel picks the worker).
        clients: list[wsfast.WebSocket] = []
        workers: set[str] = set()
        while len(workers) < 2:
            assert len(clients) < 40, "every connection went to one worker"
            ws = await wait_for(wsfast.connect(url))
            clients.append(ws)
            workers.add(str(await wait_for(ws.recv())))
        # Redis pub/sub is at most once: a worker hears the others once its SUBSCRIBE is in.
        from redis.asyncio import Redis

        client = Redis.from_url(redis.url)
        try:
            while (await client.pubsub_numsub("wsfast:chat"))[0][1] < 2:
                await asyncio.sleep(0.02)
        finally:
            await client.aclose()
        await clients[0].send("hello from one worker")
        await clients[-1].send(b"\x00binary from the other")
        for ws in clients:
            got = {await wait_for(ws.recv()), await wait_for(ws.recv())}
            assert got == {"hello from one worker", b"\x00binary from the other"}
        await example.stop()
        assert example.proc.returncode == 0, example.stderr
        for ws in clients:
            await wait_for(ws.wait_closed())
            assert ws.close_code == 1001
    finally:
        redis.close()

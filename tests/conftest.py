"""Shared fixtures and helpers of the core's test suite.

Every timing-related wait goes through :func:`scaled` (or :func:`wait_for`, which uses it), so a
slow machine or a coverage run stretches all of them with one variable:
``WSFAST_TEST_TIMEOUT_FACTOR=3 pytest``.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest

import wsfast
from wsfast import handshake
from wsfast.sender import frame

#: The one factor every timeout of the suite is multiplied by.
TIMEOUT_FACTOR = float(os.environ.get("WSFAST_TEST_TIMEOUT_FACTOR", "1") or "1")

#: A fixed masking key, RFC 6455 5.7's.
MASK = b"\x37\xfa\x21\x3d"

T = TypeVar("T")

# The files of this suite: a skip in them is reported as a failure, so a test that cannot run
# never counts as passed.
_NO_SKIP_FILES = {
    "test_receiver.py",
    "test_sender.py",
    "test_frames_roundtrip.py",
    "test_handshake.py",
    "test_validation.py",
    "test_event_emitter.py",
    "test_websocket.py",
    "test_server.py",
    "test_public_api.py",
    "test_protocol.py",
    "test_protocol_stateful.py",
    "test_architecture.py",
    "test_connection_behaviour.py",
    "test_server_handshake.py",
    "test_client_handshake.py",
    "test_url.py",
    "test_core_coverage.py",
}


#: pytest-timeout's limit for one test of this suite, before scaling.
TEST_TIMEOUT = 60.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A hung test of this suite fails after TEST_TIMEOUT * factor seconds (pytest-timeout).
    for item in items:
        if Path(str(item.fspath)).name in _NO_SKIP_FILES and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(scaled(TEST_TIMEOUT)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and Path(str(item.fspath)).name in _NO_SKIP_FILES:
        report.outcome = "failed"
        report.longrepr = f"skipped tests count as failures in this suite: {report.longrepr}"


def scaled(seconds: float) -> float:
    """``seconds`` multiplied by WSFAST_TEST_TIMEOUT_FACTOR."""
    return seconds * TIMEOUT_FACTOR


async def wait_for(awaitable: Awaitable[T], seconds: float = 5.0) -> T:
    """``asyncio.wait_for`` with a scaled timeout."""
    return await asyncio.wait_for(awaitable, scaled(seconds))


async def until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll ``predicate`` until it holds; fails the test after a scaled timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(seconds)
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {scaled(seconds)} s")
        await asyncio.sleep(0.005)


async def settle(seconds: float = 0.05) -> None:
    """Let the loop run a little (used to show that something does *not* happen)."""
    await asyncio.sleep(scaled(seconds))


class Recorder:
    """Collects the events of an emitter as ``(name, *args)`` tuples, with futures to await."""

    def __init__(self, emitter: Any, *names: str) -> None:
        self.events: list[tuple[Any, ...]] = []
        self._waiters: list[tuple[str, int, asyncio.Future[None]]] = []
        for name in names:
            emitter.on(name, self._listener(name))

    def _listener(self, name: str) -> Callable[..., None]:
        def listener(*args: Any) -> None:
            self.events.append((name, *args))
            for waiter in list(self._waiters):
                wname, count, fut = waiter
                if self.count(wname) >= count and not fut.done():
                    fut.set_result(None)

        return listener

    def count(self, name: str) -> int:
        return sum(1 for e in self.events if e[0] == name)

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [e[1:] for e in self.events if e[0] == name]

    def names(self) -> list[str]:
        return [e[0] for e in self.events]

    async def wait(self, name: str, count: int = 1, seconds: float = 5.0) -> list[tuple[Any, ...]]:
        if self.count(name) < count:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (name, count, fut)
            self._waiters.append(entry)
            try:
                await wait_for(fut, seconds)
            finally:
                self._waiters.remove(entry)
        return self.of(name)


MakeServer = Callable[..., Awaitable[wsfast.WebSocketServer]]
MakeClient = Callable[..., Awaitable[wsfast.WebSocket]]


def url_of(server: wsfast.WebSocketServer, path: str = "/") -> str:
    host, port = server.address()
    return f"ws://{host}:{port}{path}"


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Awaitable[wsfast.WebSocketServer]]]:
    """A factory of listening servers on 127.0.0.1 (free port); all are torn down at the end."""
    servers: list[wsfast.WebSocketServer] = []

    async def make(**options: Any) -> wsfast.WebSocketServer:
        options.setdefault("close_timeout", scaled(2.0))
        server = wsfast.WebSocketServer(port=0, host="127.0.0.1", **options)
        servers.append(server)
        await wait_for(server.wait_listening())
        return server

    yield make
    for server in servers:
        for ws in list(server.clients):
            ws.terminate()
        await wait_for(server.close())


@pytest.fixture
async def echo_server(
    make_server: Callable[..., Awaitable[wsfast.WebSocketServer]],
) -> wsfast.WebSocketServer:
    """A server that echoes every message with its type."""
    server = await make_server()

    def on_connection(ws: wsfast.WebSocket, request: Any) -> None:
        ws.on("message", lambda data, is_binary: ws.send(data, binary=is_binary))

    server.on("connection", on_connection)
    return server


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., Awaitable[wsfast.WebSocket]]]:
    """A factory of open clients (per_message_deflate off unless asked); terminated at the end."""
    clients: list[wsfast.WebSocket] = []

    async def make(url: str, *args: Any, **options: Any) -> wsfast.WebSocket:
        options.setdefault("per_message_deflate", False)
        options.setdefault("close_timeout", scaled(2.0))
        ws = wsfast.WebSocket(url, *args, **options)
        clients.append(ws)
        await wait_for(ws.wait_open())
        return ws

    yield make
    for ws in clients:
        ws.terminate()


class RawPeer:
    """A raw TCP peer: writes bytes, reads bytes, and parses the frames it is sent."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def read_head(self) -> tuple[int, handshake.Headers, bytes]:
        """Read an HTTP response head: (status, headers, the raw head)."""
        raw = await wait_for(self.reader.readuntil(b"\r\n\r\n"))
        lines = raw[:-4].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = handshake.Headers(
            (name, value.strip()) for name, _, value in (line.partition(":") for line in lines[1:])
        )
        return status, headers, raw

    async def read_response(self) -> tuple[int, handshake.Headers, bytes]:
        """An HTTP response and its body (Content-Length or up to EOF)."""
        status, headers, _ = await self.read_head()
        length = headers.get("content-length")
        if length is not None:
            body = await wait_for(self.reader.readexactly(int(length)))
        else:
            body = await wait_for(self.reader.read())
        return status, headers, body

    async def read_frame(self) -> tuple[int, int, bytes]:
        """One unmasked frame from a server: (first byte, opcode, payload)."""
        b0, b1 = await wait_for(self.reader.readexactly(2))
        length = b1 & 0x7F
        if length == 126:
            length = int.from_bytes(await wait_for(self.reader.readexactly(2)), "big")
        elif length == 127:
            length = int.from_bytes(await wait_for(self.reader.readexactly(8)), "big")
        assert not b1 & 0x80, "a server must not mask its frames"
        payload = await wait_for(self.reader.readexactly(length)) if length else b""
        return b0, b0 & 0x0F, payload

    async def at_eof(self) -> bool:
        """True once the other side closed the connection (reads and drops what is left)."""
        try:
            await wait_for(self.reader.read())
        except (ConnectionResetError, BrokenPipeError):
            pass
        return True

    def close(self) -> None:
        self.writer.close()


RawConnect = Callable[..., Awaitable[RawPeer]]


def upgrade_request(path: str = "/", version: str = "13", **extra: str) -> bytes:
    """A valid client upgrade request head; keyword arguments add or replace headers."""
    headers = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": version,
    }
    headers.update((name.replace("_", "-"), value) for name, value in extra.items())
    lines = [f"GET {path} HTTP/1.1", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture
async def raw_peer() -> AsyncIterator[Callable[..., Awaitable[RawPeer]]]:
    """A factory of raw TCP connections to a server; closed at the end."""
    peers: list[RawPeer] = []

    async def connect(server: wsfast.WebSocketServer, data: bytes = b"") -> RawPeer:
        host, port = server.address()
        reader, writer = await wait_for(asyncio.open_connection(host, port))
        peer = RawPeer(reader, writer)
        peers.append(peer)
        if data:
            peer.write(data)
        return peer

    yield connect
    for peer in peers:
        peer.close()


async def raw_websocket(
    connect: Callable[..., Awaitable[RawPeer]], server: wsfast.WebSocketServer
) -> RawPeer:
    """A raw peer that completed the opening handshake."""
    peer = await connect(server, upgrade_request())
    status, _, _ = await peer.read_head()
    assert status == 101
    return peer


def client_frame(data: bytes, opcode: int, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A client-to-server frame masked with :data:`MASK`."""
    return bytes(frame(data, opcode, fin=fin, rsv1=rsv1, mask=MASK))


def interop_node() -> ModuleType:
    """``tests/interop/node.py`` (node's ws as a peer), loaded once under one module name.

    It is loaded by path because ``tests/interop`` is no package; every interop test module
    shares the one instance (and so its module-scoped fixtures and process registry).
    """
    name = "wsfast_tests_interop_node"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).parent / "interop" / "node.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module

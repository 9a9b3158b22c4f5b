"""Client transports and handshake options over real sockets (issue 5).

Unix domain sockets (``unix_path=`` / ``ws+unix://``), the ``create_connection`` hook, the
``generate_mask`` hook checked on the wire, the client's ``handshake_timeout``, ``origin`` (and
``Sec-WebSocket-Origin`` with ``protocol_version=8``), extra ``headers``, Basic auth from the URL
and the ``'upgrade'`` event. The helpers at the top are shared by the other transport test files
(``test_tls``, ``test_proxy``, ``test_redirects``, ``test_server_extras``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from conftest import scaled

import wsfast
from wsfast import handshake

T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float = 5.0) -> T:
    """Await with a deadline scaled by the suite's one factor (``WSFAST_TEST_TIMEOUT_FACTOR``)."""
    return await asyncio.wait_for(awaitable, scaled(seconds))


class Events:
    """Records a client's 'open', 'error' and 'close' in order; ``closed`` resolves on 'close'."""

    def __init__(self, ws: wsfast.WebSocket) -> None:
        self.ws = ws
        self.log: list[str] = []
        self.errors: list[BaseException] = []
        self.close_args: tuple[Any, ...] = ()
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ws.on("open", self._open)
        ws.on("error", self._error)
        ws.on("close", self._close)

    def _open(self) -> None:
        self.log.append("open")
        if not self.opened.done():
            self.opened.set_result(None)

    def _error(self, exc: BaseException) -> None:
        self.log.append("error")
        self.errors.append(exc)

    def _close(self, *args: Any) -> None:
        self.log.append("close")
        self.close_args = args
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed before 'open'"))
            self.opened.exception()

    async def failed(self) -> BaseException:
        """Wait for 'close' and return the one error that came before it."""
        await within(self.closed)
        assert self.log == ["error", "close"], self.log
        return self.errors[0]


@contextlib.asynccontextmanager
async def echo_server(**options: Any) -> AsyncIterator[wsfast.WebSocketServer]:
    """A WebSocketServer on 127.0.0.1 (unless ``unix_path``/``sock`` is given) that echoes.

    Every request it upgraded is appended to ``server.requests`` (an attribute set here).
    """
    if not any(k in options for k in ("unix_path", "sock", "port")):
        options.setdefault("host", "127.0.0.1")
        options["port"] = 0
    server = wsfast.WebSocketServer(**options)
    requests: list[handshake.Request] = []
    server.requests = requests  # type: ignore[attr-defined]

    def on_connection(ws: wsfast.WebSocket, request: handshake.Request) -> None:
        requests.append(request)
        ws.on("message", lambda data, is_binary: ws.send(data, binary=is_binary))

    server.on("connection", on_connection)
    await within(server.wait_listening())
    try:
        yield server
    finally:
        for ws in list(server.clients):
            ws.terminate()
        await within(server.close())


def ws_url(server: wsfast.WebSocketServer, path: str = "/", scheme: str = "ws") -> str:
    """``ws://127.0.0.1:<port><path>`` for a server listening on TCP."""
    return f"{scheme}://127.0.0.1:{server.address()[1]}{path}"


async def echo_once(ws: wsfast.WebSocket, message: Any = "hello") -> Any:
    """Send one message on an open (or opening) client and return the echo."""
    await within(ws.wait_open())
    await ws.send(message)
    return await within(ws.recv())


async def round_trip(url: str, message: Any = "x", **options: Any) -> wsfast.WebSocket:
    """Connect to an echo server, check one echo, close cleanly; returns the closed client."""
    async with wsfast.connect(url, **options) as ws:
        await ws.send(message)
        assert await within(ws.recv()) == message
    return ws


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[int]:
    """A plain asyncio TCP server on 127.0.0.1 running ``handler``; yields its port."""
    tasks: set[asyncio.Task[None]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        finally:
            tasks.discard(task)
            writer.close()

    server = await asyncio.start_server(run, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> handshake.Request:
    """Read one request head from a raw stream."""
    head = await reader.readuntil(b"\r\n\r\n")
    parsed = handshake.parse_head(head)
    assert parsed is not None
    start, headers, _ = parsed
    method, target, version = start.split(" ")
    return handshake.Request(method, target, handshake.Headers(headers), version)


def switching_protocols(request: handshake.Request) -> bytes:
    """A 101 answer accepting ``request``'s key, with no extension and no subprotocol."""
    accept = handshake.accept_key(request.headers["sec-websocket-key"])
    return handshake.build_response(
        101, ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {accept}"]
    )


@pytest.fixture
def short_dir() -> Any:
    """A short directory for Unix sockets (their paths are limited to ~107 bytes)."""
    path = tempfile.mkdtemp(prefix="wsf", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- Unix domain sockets ----------------------------------------------------------------------


async def test_unix_socket_request_path_and_query_reach_the_server(short_dir: str) -> None:
    sock = os.path.join(short_dir, "ws.sock")
    async with echo_server(unix_path=sock) as server:
        assert server.address() == sock
        ws = wsfast.WebSocket(f"ws+unix://{sock}:/chat/room?user=ann&x=1")
        assert await echo_once(ws, "over unix") == "over unix"
        request = server.requests[0]  # type: ignore[attr-defined]
        assert request.path == "/chat/room?user=ann&x=1"
        assert request.headers["host"] == "localhost"
        ws.close()
        await within(ws.wait_closed())


async def test_unix_socket_without_request_path_asks_for_slash(short_dir: str) -> None:
    sock = os.path.join(short_dir, "ws.sock")
    async with echo_server(unix_path=sock) as server:
        async with wsfast.connect(f"ws+unix://{sock}") as ws:
            await ws.send(b"\x00\x01")
            assert await within(ws.recv()) == b"\x00\x01"
        assert server.requests[0].path == "/"  # type: ignore[attr-defined]


async def test_unix_socket_file_is_removed_on_close(short_dir: str) -> None:
    sock = os.path.join(short_dir, "ws.sock")
    async with echo_server(unix_path=sock):
        assert os.path.exists(sock)
    assert not os.path.exists(sock)  # as Node's server.close() does


async def test_server_on_a_given_listening_socket() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    async with echo_server(sock=listener) as server:
        assert server.address() == ("127.0.0.1", port)
        await round_trip(f"ws://127.0.0.1:{port}/", "on my socket")


async def test_unix_socket_that_does_not_exist_is_an_error_then_close(short_dir: str) -> None:
    ws = wsfast.WebSocket(f"ws+unix://{short_dir}/missing.sock:/x")
    events = Events(ws)
    error = await events.failed()
    assert isinstance(error, FileNotFoundError)
    assert events.close_args[0] == 1006


# -- create_connection and generate_mask hooks ------------------------------------------------


async def test_create_connection_hook_opens_the_transport() -> None:
    async with echo_server() as server:
        port = server.address()[1]
        calls: list[Any] = []

        async def opener(protocol_factory: Any, url: Any, ssl_context: Any) -> Any:
            # Reaches the real server whatever host the URL names: a custom transport opener.
            calls.append((url.host, url.port, url.target, ssl_context))
            loop = asyncio.get_running_loop()
            return await loop.create_connection(protocol_factory, "127.0.0.1", port)

        ws = wsfast.WebSocket("ws://example.invalid:1234/hooked?q=1", create_connection=opener)
        assert await echo_once(ws, "via hook") == "via hook"
        assert calls == [("example.invalid", 1234, "/hooked?q=1", None)]
        request = server.requests[0]  # type: ignore[attr-defined]
        assert request.headers["host"] == "example.invalid:1234"
        assert request.path == "/hooked?q=1"
        ws.close()
        await within(ws.wait_closed())


async def test_create_connection_hook_failure_is_an_error_then_close() -> None:
    async def opener(protocol_factory: Any, url: Any, ssl_context: Any) -> Any:
        raise ConnectionRefusedError("no route in this test")

    ws = wsfast.WebSocket("ws://127.0.0.1:9/", create_connection=opener)
    events = Events(ws)
    assert isinstance(await events.failed(), ConnectionRefusedError)


@pytest.mark.parametrize(
    ("key", "message", "wire"),
    [
        # FIN + text, MASK bit + length 5, the all-zero key, then the payload unchanged.
        (b"\x00\x00\x00\x00", "hello", b"\x81\x85\x00\x00\x00\x00hello"),
        (b"\x01\x02\x03\x04", b"\x10\x20", b"\x82\x82\x01\x02\x03\x04\x11\x22"),
    ],
    ids=["zero-mask-text", "mask-binary"],
)
async def test_generate_mask_hook_key_is_on_the_wire(key: bytes, message: Any, wire: bytes) -> None:
    frames: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        writer.write(switching_protocols(request))
        frames.set_result(await reader.readexactly(len(wire)))
        await reader.read()

    async with raw_server(handler) as port:
        calls: list[int] = []

        def generate_mask() -> bytes:
            calls.append(1)
            return key

        ws = wsfast.WebSocket(
            f"ws://127.0.0.1:{port}", generate_mask=generate_mask, per_message_deflate=False
        )
        await within(ws.wait_open())
        ws.send(message)
        assert await within(frames) == wire
        assert calls == [1]
        ws.terminate()


# -- handshake_timeout, origin, headers, Basic auth, 'upgrade' --------------------------------


async def test_handshake_timeout_when_the_server_never_answers() -> None:
    accepted = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # reads the request, never answers

    async with raw_server(silent) as port:
        started = time.monotonic()
        ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}", handshake_timeout=0.2)
        events = Events(ws)
        error = await events.failed()
        assert accepted.is_set()
        assert isinstance(error, wsfast.WebSocketError)
        assert error.code == "WS_ERR_HANDSHAKE_TIMEOUT"
        assert str(error) == "Opening handshake has timed out"
        assert events.close_args[0] == 1006
        assert time.monotonic() - started < scaled(2)
        assert ws.ready_state == wsfast.WebSocket.CLOSED


async def test_origin_header_with_protocol_version_13() -> None:
    async with echo_server() as server:
        await round_trip(ws_url(server), origin="https://app.example")
        headers = server.requests[0].headers  # type: ignore[attr-defined]
        assert headers["origin"] == "https://app.example"
        assert "sec-websocket-origin" not in headers
        assert headers["sec-websocket-version"] == "13"


async def test_sec_websocket_origin_with_protocol_version_8() -> None:
    seen: list[Any] = []
    async with echo_server(verify_client=lambda info: seen.append(info.origin) or True) as server:
        await round_trip(ws_url(server), origin="https://old.example", protocol_version=8)
        headers = server.requests[0].headers  # type: ignore[attr-defined]
        assert headers["sec-websocket-origin"] == "https://old.example"
        assert "origin" not in headers
        assert headers["sec-websocket-version"] == "8"
        # The server reads the origin from the header that matches the version (ws does too).
        assert seen == ["https://old.example"]


async def test_extra_headers_are_sent() -> None:
    async with echo_server() as server:
        headers = {"X-Api-Key": "k1", "Cookie": "a=b"}
        await round_trip(ws_url(server), headers=headers)
        seen = server.requests[0].headers  # type: ignore[attr-defined]
        assert seen["x-api-key"] == "k1"
        assert seen["cookie"] == "a=b"


async def test_basic_auth_from_url_userinfo() -> None:
    async with echo_server() as server:
        port = server.address()[1]
        await round_trip(f"ws://alice:s3cret@127.0.0.1:{port}/")
        auth = server.requests[0].headers["authorization"]  # type: ignore[attr-defined]
        assert auth == "Basic " + base64.b64encode(b"alice:s3cret").decode()


async def test_explicit_authorization_header_wins_over_url_userinfo() -> None:
    async with echo_server() as server:
        port = server.address()[1]
        url = f"ws://alice:s3cret@127.0.0.1:{port}/"
        await round_trip(url, headers={"Authorization": "Bearer t"})
        assert server.requests[0].headers.get_all("authorization") == [  # type: ignore[attr-defined]
            "Bearer t"
        ]


async def test_upgrade_event_gets_the_101_response() -> None:
    async with echo_server() as server:
        server.on("headers", lambda lines, request: lines.append("X-Served-By: test"))
        ws = wsfast.WebSocket(ws_url(server))
        responses: list[Any] = []
        ws.on("upgrade", responses.append)
        await within(ws.wait_open())
        (response,) = responses
        assert response.status == 101
        assert response.headers["x-served-by"] == "test"
        assert response.headers["upgrade"].lower() == "websocket"
        ws.close()
        await within(ws.wait_closed())

"""The server when things go wrong, over real 127.0.0.1 sockets: plain and malformed requests,
server code that raises (``handle_protocols``, ``verify_client``, ``'connection'`` listeners,
``handle_upgrade`` callbacks, ``serve`` handlers), peers that vanish, and the end of ``serve``.

Every test checks the log too: a peer must not be able to write ERROR lines, a bug in server
code is one ERROR line with its traceback, and no task exception is ever left unretrieved.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from conftest import (
    MakeServer,
    RawConnect,
    RawPeer,
    raw_websocket,
    scaled,
    settle,
    until,
    upgrade_request,
    url_of,
    wait_for,
)

import wsfast
from wsfast import WebSocket, WebSocketServer
from wsfast.constants import OP_CLOSE
from wsfast.handshake import Request, RequestError


@pytest.fixture(autouse=True)
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What reaches the loop's exception handler ("Task exception was never retrieved", ...);
    must stay empty."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda loop, context: seen.append(context))
    yield seen
    await settle()
    gc.collect()  # an unretrieved task exception is reported when the task is collected
    await settle()
    loop.set_exception_handler(previous)
    assert seen == []


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="wsfast")
    return caplog


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name.startswith("wsfast") and r.levelno >= logging.WARNING
    ]


def echo(ws: WebSocket, request: Any) -> None:
    ws.on("message", lambda data, is_binary: ws.send(data, binary=is_binary))


async def round_trip(server: WebSocketServer) -> None:
    """A client connects, is echoed, and closes: the server carries on."""
    async with wsfast.connect(url_of(server), per_message_deflate=False) as client:
        await client.send("still there")
        assert await wait_for(client.recv()) == "still there"


async def close_code(peer: RawPeer) -> int:
    """The close code of the next frame, which must be a close frame."""
    _, opcode, payload = await peer.read_frame()
    assert opcode == OP_CLOSE
    return int.from_bytes(payload[:2], "big")


# -- plain and malformed requests ------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="plain-get"),
        pytest.param(
            upgrade_request().replace(b"Connection: Upgrade\r\n", b""), id="no-connection-header"
        ),
    ],
)
async def test_plain_request_gets_426_as_ws_internal_server(
    make_server: MakeServer, raw_peer: RawConnect, log: pytest.LogCaptureFixture, data: bytes
) -> None:
    server = await make_server()
    server.on("connection", echo)
    peer = await raw_peer(server, data)
    status, headers, body = await peer.read_response()
    assert (status, body) == (426, b"Upgrade Required")
    assert headers["content-type"] == "text/plain"
    assert headers["connection"] == "close"
    assert await peer.at_eof()
    assert errors(log) == []
    await round_trip(server)


MALFORMED = [
    pytest.param(b"GET / HTTP/1.9\r\nHost: x\r\n\r\n", id="http-1.9"),
    pytest.param(upgrade_request("/a\x00b"), id="nul-in-target"),
    pytest.param(upgrade_request("/a\x01b"), id="control-in-target"),
    pytest.param(upgrade_request("/a b"), id="space-in-target"),
    pytest.param(upgrade_request().replace(b"\r\n", b"\n"), id="lf-only"),
    pytest.param(b"GET / HTTP/1.1\nHost: x\n", id="lf-only-unfinished"),
]


@pytest.mark.parametrize("data", MALFORMED)
async def test_malformed_head_answered_400_at_once_and_closed(
    make_server: MakeServer, raw_peer: RawConnect, log: pytest.LogCaptureFixture, data: bytes
) -> None:
    # handshake_timeout far longer than the test: the answer must not wait for it.
    server = await make_server(handshake_timeout=600.0)
    connections: list[Any] = []
    server.on("connection", lambda ws, req: connections.append(ws))
    peer = await raw_peer(server, data)
    status, headers, _ = await peer.read_response()
    assert status == 400
    assert headers["connection"] == "close"
    assert await peer.at_eof()
    assert connections == []
    assert errors(log) == []


async def test_refusals_are_logged_at_debug_at_most(
    make_server: MakeServer, raw_peer: RawConnect, log: pytest.LogCaptureFixture
) -> None:
    server = await make_server(max_head_size=1024, path="/ws", per_message_deflate=True)
    bad = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01 not http\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: " + b"a" * 2000 + b"\r\n\r\n",
        upgrade_request("/ws", Sec_WebSocket_Version="99"),
        upgrade_request("/ws", Sec_WebSocket_Key="x"),
        upgrade_request("/elsewhere"),
        upgrade_request("/ws", Sec_WebSocket_Protocol="a, a"),
        upgrade_request("/ws", Sec_WebSocket_Extensions="permessage-deflate;;"),
        upgrade_request("/ws").replace(b"GET", b"PUT"),
    ]
    for data in bad:
        peer = await raw_peer(server, data)
        status, _, _ = await peer.read_response()
        assert status >= 400
        assert await peer.at_eof()
    assert errors(log) == []
    assert any(r.levelno == logging.DEBUG and "refused" in r.getMessage() for r in log.records)


async def test_read_request_refuses_bare_lf_at_once() -> None:
    done: asyncio.Future[RequestError] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await WebSocketServer.read_request(reader, writer)
        except RequestError as exc:
            done.set_result(exc)
        writer.close()

    http = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        port = http.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\nHost: x\n")  # never completed with CRLF CRLF
        assert (await wait_for(done)).status == 400
        writer.close()
    finally:
        http.close()
        await http.wait_closed()


async def test_read_request_leaves_the_bytes_after_the_head() -> None:
    seen: asyncio.Future[tuple[Request, bytes]] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await WebSocketServer.read_request(reader, writer)
        seen.set_result((request, await reader.readexactly(5)))
        writer.close()

    http = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        port = http.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(upgrade_request("/p?q=1") + b"after")
        request, rest = await wait_for(seen)
        assert (request.path, request.headers["upgrade"], rest) == ("/p?q=1", "websocket", b"after")
        assert request.remote_address is not None
        writer.close()
    finally:
        http.close()
        await http.wait_closed()


# -- server code that raises before the upgrade -----------------------------------------------


def _accept(info: Any) -> bool:
    return True


async def _accept_async(info: Any) -> bool:
    await asyncio.sleep(0)
    return True


def _accept_callback(info: Any, done: Callable[..., None]) -> None:
    done(True)


@pytest.mark.parametrize(
    "verify",
    [
        pytest.param(None, id="no-verify-client"),
        pytest.param(_accept, id="sync-verify-client"),
        pytest.param(_accept_async, id="async-verify-client"),
        pytest.param(_accept_callback, id="callback-verify-client"),
    ],
)
async def test_handle_protocols_that_raises_answers_500(
    make_server: MakeServer, raw_peer: RawConnect, log: pytest.LogCaptureFixture, verify: Any
) -> None:
    def choose(protocols: list[str], request: Request) -> str:
        raise RuntimeError("chooser broke")

    server = await make_server(handle_protocols=choose, verify_client=verify)
    server.on("connection", echo)
    connections: list[Any] = []
    server.on("connection", lambda ws, req: connections.append(ws))
    peer = await raw_peer(server, upgrade_request(Sec_WebSocket_Protocol="chat"))
    status, headers, body = await peer.read_response()
    assert (status, body) == (500, b"Internal Server Error")
    assert headers["connection"] == "close"
    assert await peer.at_eof()  # the descriptor is released at once
    assert connections == []
    [record] = errors(log)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "chooser broke" in log.text
    # Requests without subprotocols never call it: the server still serves.
    await round_trip(server)


def _raise(info: Any) -> bool:
    raise RuntimeError("verifier broke")


async def _raise_async(info: Any) -> bool:
    await asyncio.sleep(0)
    raise RuntimeError("verifier broke")


def _raise_callback(info: Any, done: Callable[..., None]) -> None:
    raise RuntimeError("verifier broke")


@pytest.mark.parametrize(
    "verify",
    [
        pytest.param(_raise, id="sync"),
        pytest.param(_raise_async, id="async"),
        pytest.param(_raise_callback, id="callback"),
    ],
)
async def test_verify_client_that_raises_answers_500_and_logs_once(
    make_server: MakeServer, raw_peer: RawConnect, log: pytest.LogCaptureFixture, verify: Any
) -> None:
    server = await make_server(verify_client=verify)
    server.on("connection", echo)
    peer = await raw_peer(server, upgrade_request())
    status, _, body = await peer.read_response()
    assert (status, body) == (500, b"Internal Server Error")
    assert await peer.at_eof()
    [record] = errors(log)  # no second "unhandled 'error'" line
    assert record.exc_info is not None and "verifier broke" in log.text
    assert not server.clients


# -- server code that raises after the upgrade -------------------------------------------------


async def test_connection_listener_that_raises_closes_1011(
    make_server: MakeServer, raw_peer: RawConnect, log: pytest.LogCaptureFixture
) -> None:
    server = await make_server()
    later: list[Any] = []

    def broken(ws: WebSocket, request: Any) -> None:
        raise RuntimeError("listener broke")

    server.on("connection", broken)
    server.on("connection", lambda ws, req: later.append(ws))  # the next listener still runs
    peer = await raw_websocket(raw_peer, server)
    assert await close_code(peer) == 1011
    [record] = errors(log)
    assert record.exc_info is not None and "listener broke" in log.text
    assert len(later) == 1
    await wait_for(later[0].wait_closed())


async def test_once_connection_listener_that_raises_runs_once(
    make_server: MakeServer, raw_peer: RawConnect, log: pytest.LogCaptureFixture
) -> None:
    server = await make_server()
    calls: list[Any] = []

    def broken(ws: WebSocket, request: Any) -> None:
        calls.append(ws)
        raise RuntimeError("listener broke")

    server.once("connection", broken)
    first = await raw_websocket(raw_peer, server)
    assert await close_code(first) == 1011
    server.on("connection", echo)
    await round_trip(server)
    assert len(calls) == 1
    assert len(errors(log)) == 1


async def test_async_connection_listener_that_raises_closes_1011(
    make_server: MakeServer, raw_peer: RawConnect, log: pytest.LogCaptureFixture
) -> None:
    server = await make_server()

    async def broken(ws: WebSocket, request: Any) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("async listener broke")

    server.on("connection", broken)
    peer = await raw_websocket(raw_peer, server)
    assert await close_code(peer) == 1011
    [record] = errors(log)
    assert record.exc_info is not None and "async listener broke" in log.text


async def test_handle_upgrade_callback_that_raises_closes_1011(
    log: pytest.LogCaptureFixture,
) -> None:
    wss = WebSocketServer(no_server=True, close_timeout=scaled(2.0))

    def broken(ws: WebSocket, request: Request) -> None:
        raise RuntimeError("callback broke")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await WebSocketServer.read_request(reader, writer)
        wss.handle_upgrade(request, writer, reader, broken)

    http = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        port = http.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        peer = RawPeer(reader, writer)
        peer.write(upgrade_request())
        assert (await peer.read_head())[0] == 101
        assert await close_code(peer) == 1011
        [record] = errors(log)
        assert record.exc_info is not None and "callback broke" in log.text
        peer.close()
    finally:
        http.close()
        await http.wait_closed()
        await wss.close()


# -- serve(): handler tasks --------------------------------------------------------------------


async def test_serve_handler_that_raises_closes_1011_and_logs_once(
    log: pytest.LogCaptureFixture,
) -> None:
    async def handler(ws: WebSocket, request: Request) -> None:
        await ws.recv()
        raise RuntimeError("handler broke")

    async with wsfast.serve(handler, "127.0.0.1", 0, close_timeout=scaled(2.0)) as server:
        async with wsfast.connect(url_of(server), per_message_deflate=False) as client:
            await client.send("x")
            with pytest.raises(wsfast.ConnectionClosed) as info:
                await wait_for(client.recv())
            assert info.value.code == 1011
    [record] = errors(log)
    assert record.exc_info is not None and "handler broke" in log.text


async def test_serve_handler_ended_by_a_vanished_peer_is_a_normal_end(
    raw_peer: RawConnect, log: pytest.LogCaptureFixture
) -> None:
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handler(ws: WebSocket, request: Request) -> None:
        try:
            async for _ in ws:
                pass
        finally:
            ended.set_result(None)

    serving = wsfast.serve(handler, "127.0.0.1", 0, close_timeout=scaled(2.0))
    async with serving as server:
        peer = await raw_websocket(raw_peer, server)
        await until(lambda: len(serving.tasks) == 1)
        peer.writer.transport.abort()  # no close frame: 1006, ConnectionClosed in async for
        await wait_for(ended)
        await until(lambda: not serving.tasks)
    assert errors(log) == []
    assert "Traceback" not in log.text


async def test_serve_exit_closes_clients_1001_then_cancels_handlers(
    log: pytest.LogCaptureFixture,
) -> None:
    cancelled: list[bool] = []

    async def stubborn(ws: WebSocket, request: Request) -> None:
        try:
            await ws.recv()
        except wsfast.ConnectionClosed:
            pass
        try:
            await asyncio.sleep(3600)  # outlives its connection: must be cancelled
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    serving = wsfast.serve(stubborn, "127.0.0.1", 0, close_timeout=scaled(2.0))
    async with serving as server:
        clients = [
            await wsfast.connect(url_of(server), per_message_deflate=False) for _ in range(3)
        ]
        await until(lambda: len(serving.tasks) == 3)
    for client in clients:
        await wait_for(client.wait_closed())
        assert client.close_code == 1001
    assert cancelled == [True, True, True]
    assert not serving.tasks
    assert errors(log) == []


async def test_serve_exit_with_a_handler_waiting_on_recv(log: pytest.LogCaptureFixture) -> None:
    async def handler(ws: WebSocket, request: Request) -> None:
        async for message in ws:
            await ws.send(message)

    serving = wsfast.serve(handler, "127.0.0.1", 0, close_timeout=scaled(2.0))
    async with serving as server:
        client = await wsfast.connect(url_of(server), per_message_deflate=False)
        await client.send("x")
        assert await wait_for(client.recv()) == "x"
    await wait_for(client.wait_closed())
    assert client.close_code == 1001
    assert not serving.tasks
    assert errors(log) == []


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        pytest.param(("127.0.0.1", 0), {}, id="positional"),
        pytest.param(("127.0.0.1",), {"port": 0}, id="port-keyword"),
        pytest.param((), {"host": "127.0.0.1", "port": 0}, id="keywords"),
        pytest.param((), {"host": "127.0.0.1"}, id="port-defaults-to-0"),
    ],
)
async def test_serve_takes_host_and_port_by_position_or_keyword(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    async def handler(ws: WebSocket, request: Request) -> None:
        async for message in ws:
            await ws.send(message)

    async with wsfast.serve(handler, *args, **kwargs) as server:
        assert server.address()[0] == "127.0.0.1"
        await round_trip(server)


async def test_handshake_timeout_covers_a_verify_client_that_never_answers(
    make_server: MakeServer, raw_peer: RawConnect, log: pytest.LogCaptureFixture
) -> None:
    # The timer runs until the 101: a stuck verify_client must not hold the descriptor forever,
    # and is abandoned (cancelled) with its connection.
    cancelled: list[bool] = []

    async def never(info: Any) -> bool:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return True

    server = await make_server(verify_client=never, handshake_timeout=scaled(0.2))
    peer = await raw_peer(server, upgrade_request())
    assert await wait_for(peer.reader.read()) == b""
    await until(lambda: cancelled == [True])
    assert not server.clients
    assert errors(log) == []

"""WebSocketServer over real 127.0.0.1 sockets: options, events, and misbehaving peers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from conftest import (
    MakeClient,
    MakeServer,
    RawConnect,
    Recorder,
    client_frame,
    raw_websocket,
    scaled,
    settle,
    until,
    upgrade_request,
    url_of,
    wait_for,
)

import wsfast
from wsfast import WebSocket, WebSocketServer, handshake
from wsfast.constants import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT


def echo(ws: WebSocket, request: Any) -> None:
    ws.on("message", lambda data, is_binary: ws.send(data, binary=is_binary))


async def client_events(url: str, *args: Any, **options: Any) -> tuple[WebSocket, Recorder]:
    """A client and the record of its lifecycle, waited until open or closed."""
    options.setdefault("per_message_deflate", False)
    ws = WebSocket(url, *args, **options)
    events = Recorder(ws, "open", "upgrade", "unexpected-response", "error", "close")
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    for name in ("open", "close"):
        ws.on(name, lambda *a: done.done() or done.set_result(None))
    await wait_for(done)
    return ws, events


# -- listening and closing ------------------------------------------------------------------------


async def test_listening_address_and_close() -> None:
    server = WebSocketServer(port=0, host="127.0.0.1")
    events = Recorder(server, "listening", "close")
    assert await wait_for(server.wait_listening()) is server
    assert events.names() == ["listening"]
    host, port = server.address()
    assert host == "127.0.0.1" and port > 0
    closed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    await wait_for(server.close(callback=closed.set_result))
    assert await wait_for(closed) is None
    assert events.names() == ["listening", "close"]
    with pytest.raises(OSError):
        await asyncio.open_connection(host, port)


async def test_close_leaves_open_clients_alone(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    server = await make_server()
    server.on("connection", echo)
    client = await make_client(url_of(server))
    await wait_for(server.close())
    await client.send("still open")
    assert await wait_for(client.recv()) == "still open"


async def test_bind_error_is_emitted(make_server: MakeServer) -> None:
    first = await make_server()
    _, port = first.address()
    second = WebSocketServer(port=port, host="127.0.0.1")
    events = Recorder(second, "error", "listening")
    with pytest.raises(OSError):
        await wait_for(second.wait_listening())
    assert events.names() == ["error"]
    await wait_for(second.close())


def test_mode_options_are_exclusive() -> None:
    with pytest.raises(TypeError):
        WebSocketServer()
    with pytest.raises(TypeError):
        WebSocketServer(port=0, no_server=True)


# -- verify_client --------------------------------------------------------------------------------


def _sync_true(info: Any) -> bool:
    return True


def _sync_false(info: Any) -> bool:
    return False


def _tuple(info: Any) -> tuple[bool, int, str, dict[str, str]]:
    return False, 403, "Go away", {"X-Reason": "test"}


async def _async_false(info: Any) -> Any:
    await asyncio.sleep(0)
    return (False, 429, "Slow down")


async def _async_true(info: Any) -> bool:
    await asyncio.sleep(0)
    return True


def _callback_true(info: Any, callback: Callable[..., None]) -> None:
    asyncio.get_running_loop().call_soon(callback, True)


def _callback_false(info: Any, callback: Callable[..., None]) -> None:
    callback(False, 451, "Unavailable", {"X-Callback": "yes"})


def _raises(info: Any) -> bool:
    raise RuntimeError("verify bug")


# (id, verify_client, accepted, status, body, extra header)
VERIFY = [
    ("sync-true", _sync_true, True, 101, b"", None),
    ("sync-false", _sync_false, False, 401, b"Unauthorized", None),
    ("tuple", _tuple, False, 403, b"Go away", ("X-Reason", "test")),
    ("async-true", _async_true, True, 101, b"", None),
    ("async-tuple", _async_false, False, 429, b"Slow down", None),
    ("callback-true", _callback_true, True, 101, b"", None),
    ("callback-false", _callback_false, False, 451, b"Unavailable", ("X-Callback", "yes")),
    ("raises", _raises, False, 500, b"Internal Server Error", None),
]


@pytest.mark.parametrize(
    "verify, accepted, status, body, extra",
    [case[1:] for case in VERIFY],
    ids=[case[0] for case in VERIFY],
)
async def test_verify_client(
    make_server: MakeServer,
    raw_peer: RawConnect,
    verify: Any,
    accepted: bool,
    status: int,
    body: bytes,
    extra: tuple[str, str] | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await make_server(verify_client=verify)
    server.on("error", lambda exc: None)
    connections = Recorder(server, "connection")
    peer = await raw_peer(server, upgrade_request())
    if accepted:
        answer, _, _ = await peer.read_head()
        assert answer == 101
        await connections.wait("connection")
        return
    answer, headers, content = await peer.read_response()
    assert (answer, content) == (status, body)
    if extra is not None:
        assert headers[extra[0]] == extra[1]
    await settle()
    assert connections.events == []


async def test_verify_client_info(make_server: MakeServer, raw_peer: RawConnect) -> None:
    infos: list[Any] = []
    server = await make_server(verify_client=lambda info: infos.append(info) or True)
    peer = await raw_peer(
        server, upgrade_request("/p?q", Origin="http://origin.example", X_Custom="1")
    )
    assert (await peer.read_head())[0] == 101
    [info] = infos
    assert info.origin == "http://origin.example"
    assert info.secure is False
    assert info.request.path == "/p?q"
    assert info.request.headers["x-custom"] == "1"


async def test_verify_client_version_8_origin(
    make_server: MakeServer, raw_peer: RawConnect
) -> None:
    infos: list[Any] = []
    server = await make_server(verify_client=lambda info: infos.append(info) or True)
    peer = await raw_peer(
        server, upgrade_request(version="8", Sec_WebSocket_Origin="http://old.example")
    )
    assert (await peer.read_head())[0] == 101
    assert infos[0].origin == "http://old.example"


# -- subprotocols, path, tracking, headers --------------------------------------------------------


async def test_default_protocol_is_the_first_offered(make_server: MakeServer) -> None:
    server = await make_server()
    ws, events = await client_events(url_of(server), ["chat", "superchat"])
    assert events.names() == ["upgrade", "open"]
    assert ws.protocol == "chat"
    ws.terminate()


async def test_handle_protocols(make_server: MakeServer) -> None:
    seen: list[Any] = []

    def choose(protocols: list[str], request: Any) -> str:
        seen.append((protocols, request.path))
        return protocols[-1]

    server = await make_server(handle_protocols=choose)
    server_side = Recorder(server, "connection")
    ws, _ = await client_events(url_of(server, "/x"), ["a", "b", "c"])
    assert ws.protocol == "c"
    assert seen == [(["a", "b", "c"], "/x")]
    [(server_ws, _)] = await server_side.wait("connection")
    assert server_ws.protocol == "c"
    ws.terminate()


async def test_handle_protocols_declining(make_server: MakeServer) -> None:
    server = await make_server(handle_protocols=lambda protocols, request: False)
    ws, events = await client_events(url_of(server), ["a"])
    assert events.names() == ["error", "close"]
    assert events.of("error")[0][0].code == "WS_ERR_INVALID_PROTOCOL"


async def test_no_subprotocol_offered(make_server: MakeServer) -> None:
    called: list[Any] = []
    server = await make_server(handle_protocols=lambda p, r: called.append(p) or "x")
    ws, events = await client_events(url_of(server))
    assert events.names() == ["upgrade", "open"]
    assert ws.protocol == "" and called == []
    ws.terminate()


async def test_invalid_subprotocol_header_is_400(
    make_server: MakeServer, raw_peer: RawConnect
) -> None:
    server = await make_server()
    peer = await raw_peer(server, upgrade_request(Sec_WebSocket_Protocol="a,,b"))
    assert (await peer.read_response())[0] == 400


@pytest.mark.parametrize(
    "path, accepted",
    [("/ws", True), ("/ws?token=1", True), ("/", False), ("/ws/", False), ("/other", False)],
)
async def test_path_option(make_server: MakeServer, path: str, accepted: bool) -> None:
    server = await make_server(path="/ws")
    ws, events = await client_events(url_of(server, path))
    if accepted:
        assert events.names() == ["upgrade", "open"]
        ws.terminate()
    else:
        assert events.names() == ["unexpected-response", "close"]
        assert events.of("unexpected-response")[0][1].status == 400


@pytest.mark.parametrize("tracking", [True, False])
async def test_client_tracking(
    make_server: MakeServer, make_client: MakeClient, tracking: bool
) -> None:
    server = await make_server(client_tracking=tracking)
    connections = Recorder(server, "connection")
    client = await make_client(url_of(server))
    [(server_ws, _)] = await connections.wait("connection")
    if tracking:
        assert server.clients == {server_ws}
    else:
        assert server.clients == set()
    await wait_for(client.close())
    await until(lambda: not server.clients)


async def test_clients_set_follows_connections(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    server = await make_server()
    clients = [await make_client(url_of(server)) for _ in range(5)]
    await until(lambda: len(server.clients) == 5)
    clients[0].terminate()
    await wait_for(clients[1].close())
    await until(lambda: len(server.clients) == 3)
    assert all(ws.ready_state == WebSocket.OPEN for ws in server.clients)


async def test_headers_event_adds_a_header(make_server: MakeServer) -> None:
    server = await make_server()
    seen: list[Any] = []

    def on_headers(lines: list[str], request: Any) -> None:
        seen.append(request.path)
        lines.append("Set-Cookie: session=abc")

    server.on("headers", on_headers)
    ws, events = await client_events(url_of(server, "/h"))
    [(response,)] = events.of("upgrade")
    assert response.headers["set-cookie"] == "session=abc"
    assert seen == ["/h"]
    ws.terminate()


async def test_ws_client_error_event(make_server: MakeServer, raw_peer: RawConnect) -> None:
    server = await make_server()
    errors = Recorder(server, "wsClientError")
    peer = await raw_peer(server, upgrade_request(Sec_WebSocket_Version="99"))
    [(error, transport, request)] = await errors.wait("wsClientError")
    assert isinstance(error, wsfast.WebSocketError)
    assert error.http_status == 400
    assert request.headers["sec-websocket-version"] == "99"
    # The listener owns the answer: nothing was written for it.
    await settle()
    assert peer.reader._buffer == b""  # type: ignore[attr-defined]
    transport.write(b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n")
    transport.close()
    assert (await peer.read_response())[0] == 418


async def test_frames_sent_with_the_request_are_not_lost(
    make_server: MakeServer, raw_peer: RawConnect
) -> None:
    server = await make_server()
    server.on("connection", echo)
    peer = await raw_peer(server, upgrade_request() + client_frame(b"early", OP_TEXT))
    assert (await peer.read_head())[0] == 101
    assert await peer.read_frame() == (0x81, OP_TEXT, b"early")


# -- misbehaving peers ----------------------------------------------------------------------------

# (id, bytes a raw peer sends after the handshake, server options, close code on the wire)
BAD_FRAMES = [
    ("unmasked", bytes.fromhex("810548656c6c6f"), {}, 1002),
    ("invalid-opcode", client_frame(b"", 0x3), {}, 1002),
    ("rsv2", bytes.fromhex("a180") + b"\x00\x00\x00\x00", {}, 1002),
    ("continuation-without-start", client_frame(b"x", 0x0), {}, 1002),
    ("ping-too-long", bytes.fromhex("89fe007e"), {}, 1002),
    ("invalid-close-code", client_frame(b"\x03\xed", OP_CLOSE), {}, 1002),
    ("invalid-utf8", client_frame(b"\xc3\x28", OP_TEXT), {}, 1007),
    ("max-payload", bytes.fromhex("82fe1000"), {"max_payload": 1000}, 1009),
    ("garbage", b"\xff" * 64, {}, 1002),
]


@pytest.mark.parametrize(
    "data, options, code",
    [case[1:] for case in BAD_FRAMES],
    ids=[case[0] for case in BAD_FRAMES],
)
async def test_protocol_error_sends_close_code_on_the_wire(
    make_server: MakeServer,
    raw_peer: RawConnect,
    data: bytes,
    options: dict[str, Any],
    code: int,
) -> None:
    server = await make_server(**options)
    connections = Recorder(server, "connection")
    peer = await raw_websocket(raw_peer, server)
    [(server_ws, _)] = await connections.wait("connection")
    events = Recorder(server_ws, "error", "close")
    peer.write(data)
    b0, opcode, payload = await peer.read_frame()
    assert (b0, opcode) == (0x88, OP_CLOSE)
    assert int.from_bytes(payload[:2], "big") == code
    assert await peer.at_eof()  # then the server ends the TCP connection
    peer.close()
    await events.wait("close")
    await settle()
    assert events.names() == ["error", "close"]  # exactly one 'close', after the 'error'
    [(error,)] = events.of("error")
    assert error.status_code == code and error.code.startswith("WS_ERR_")
    assert events.of("close")[0][0] == code


async def test_peer_error_without_listener_is_logged_quietly_and_server_survives(
    make_server: MakeServer,
    make_client: MakeClient,
    raw_peer: RawConnect,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await make_server()
    server.on("connection", echo)  # no 'error' listener on the connections
    with caplog.at_level(logging.DEBUG, logger="wsfast"):
        for garbage in (
            b"\xff" * 10,
            bytes.fromhex("8f80") + b"\x00" * 4,
            client_frame(b"\xff", OP_TEXT),
        ):
            peer = await raw_websocket(raw_peer, server)
            peer.write(garbage)
            assert await peer.at_eof()
        await until(lambda: len([r for r in caplog.records if r.levelno == logging.INFO]) >= 3)
    # Peer violations are INFO lines: a peer cannot write ERROR lines into the server's log.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    client = await make_client(url_of(server))
    await client.send("alive")
    assert await wait_for(client.recv()) == "alive"


async def test_peer_vanishing_mid_message(make_server: MakeServer, raw_peer: RawConnect) -> None:
    server = await make_server()
    connections = Recorder(server, "connection")
    peer = await raw_websocket(raw_peer, server)
    [(server_ws, _)] = await connections.wait("connection")
    events = Recorder(server_ws, "message", "error", "close")
    peer.write(client_frame(b"x" * 1000, OP_BINARY)[:500])
    await settle()
    peer.writer.transport.abort()
    await events.wait("close")
    assert events.events == [("close", 1006, "")]
    await until(lambda: not server.clients)


async def test_raw_peer_close_handshake(make_server: MakeServer, raw_peer: RawConnect) -> None:
    server = await make_server()
    connections = Recorder(server, "connection")
    peer = await raw_websocket(raw_peer, server)
    [(server_ws, _)] = await connections.wait("connection")
    events = Recorder(server_ws, "close")
    peer.write(client_frame(b"ping!", OP_PING))
    assert await peer.read_frame() == (0x8A, OP_PONG, b"ping!")
    peer.write(client_frame(b"\x0f\xa0done", OP_CLOSE))
    assert await peer.read_frame() == (0x88, OP_CLOSE, b"\x0f\xa0done")  # echoed
    assert await peer.at_eof()
    peer.close()
    assert await events.wait("close") == [(4000, "done")]


async def test_ping_flood_does_not_grow_memory(
    make_server: MakeServer, raw_peer: RawConnect
) -> None:
    # A peer that sends pings and never reads the pongs: the server stops reading once its
    # write buffer passes the high-water mark instead of buffering pongs without bound.
    server = await make_server()
    connections = Recorder(server, "connection")
    peer = await raw_websocket(raw_peer, server)
    [(server_ws, _)] = await connections.wait("connection")
    ping = client_frame(b"p" * 125, OP_PING)
    for _ in range(40):
        peer.write(ping * 1000)  # 131 KB each, 5 MB in all
        await asyncio.sleep(0)
    await settle(0.3)
    assert server_ws.buffered_amount < 4 * 1024 * 1024
    peer.writer.transport.abort()


# -- serve() --------------------------------------------------------------------------------------


async def test_serve_async_handler_closes_with_1000_when_it_returns() -> None:
    async def handler(ws: WebSocket, request: Any) -> None:
        await ws.send(await ws.recv())

    async with wsfast.serve(handler, "127.0.0.1", 0, close_timeout=scaled(2)) as server:
        ws, events = await client_events(url_of(server))
        ws.send("once")
        assert await wait_for(ws.recv()) == "once"
        await wait_for(ws.wait_closed())
        assert ws.close_code == 1000


async def test_serve_async_handler_that_raises_closes_with_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(ws: WebSocket, request: Any) -> None:
        raise RuntimeError("handler bug")

    with caplog.at_level(logging.ERROR, logger="wsfast"):
        async with wsfast.serve(handler, "127.0.0.1", 0, close_timeout=scaled(2)) as server:
            ws, events = await client_events(url_of(server))
            await wait_for(ws.wait_closed())
            assert ws.close_code == 1011
    assert "handler bug" in caplog.text


async def test_serve_exit_closes_clients_with_1001(make_client: MakeClient) -> None:
    async with wsfast.serve(echo, "127.0.0.1", 0, close_timeout=scaled(2)) as server:
        client = await make_client(url_of(server))
        events = Recorder(client, "close")
    await events.wait("close")
    assert events.of("close") == [(1001, "")]


# -- no_server mode -------------------------------------------------------------------------------


async def test_handle_upgrade_in_no_server_mode(make_client: MakeClient) -> None:
    wss = WebSocketServer(no_server=True)
    events = Recorder(wss, "connection")

    class Front(asyncio.Protocol):
        """A tiny HTTP front server handing upgrade requests to wsfast."""

        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            parsed = handshake.parse_head(self.buffer)
            if parsed is None:
                return
            start, headers, consumed = parsed
            method, target, version = handshake.parse_request_line(start)
            request = handshake.Request(method, target, handshake.Headers(headers))
            self.transport.pause_reading()
            wss.handle_upgrade(request, self.transport, self.buffer[consumed:], on_ws)

    def on_ws(ws: WebSocket, request: Any) -> None:
        echo(ws, request)
        wss.emit("connection", ws, request)

    loop = asyncio.get_running_loop()
    front = await loop.create_server(Front, "127.0.0.1", 0)
    try:
        port = front.sockets[0].getsockname()[1]
        client = await make_client(f"ws://127.0.0.1:{port}/front")
        await client.send("via front")
        assert await wait_for(client.recv()) == "via front"
        [(_, request)] = await events.wait("connection")
        assert request.path == "/front"
        assert wss.address() is None
    finally:
        front.close()


async def test_handshake_timeout_drops_silent_connections(
    make_server: MakeServer, raw_peer: RawConnect
) -> None:
    server = await make_server(handshake_timeout=scaled(0.2))
    peer = await raw_peer(server, b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
    assert await peer.at_eof()
    assert server.clients == set()


async def test_close_twice_and_callback_after_close(make_server: MakeServer) -> None:
    server = await make_server()
    events = Recorder(server, "close")
    first = server.close()
    second = server.close()
    await wait_for(first)
    await wait_for(second)
    assert events.count("close") == 1
    assert server.address() is None
    late: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    server.close(callback=late.set_result)
    assert isinstance(await wait_for(late), Exception)


@pytest.mark.parametrize("header", ["permessage-deflate;;", 'x-unknown; a="unterminated'])
async def test_extensions_header_ignored_without_per_message_deflate(
    make_server: MakeServer, raw_peer: RawConnect, header: str
) -> None:
    # ws parses Sec-WebSocket-Extensions only when per_message_deflate is enabled.
    server = await make_server()
    peer = await raw_peer(server, upgrade_request(Sec_WebSocket_Extensions=header))
    status, headers, _ = await peer.read_head()
    assert status == 101
    assert "sec-websocket-extensions" not in headers


async def test_invalid_extensions_header_with_per_message_deflate(
    make_server: MakeServer, raw_peer: RawConnect
) -> None:
    server = await make_server(per_message_deflate=True)
    peer = await raw_peer(server, upgrade_request(Sec_WebSocket_Extensions="permessage-deflate;;"))
    status, _, body = await peer.read_response()
    assert (status, body) == (400, b"Invalid or unacceptable Sec-WebSocket-Extensions header")


async def test_path_mismatch_is_answered_without_ws_client_error(
    make_server: MakeServer, raw_peer: RawConnect
) -> None:
    # ws: shouldHandle() failing calls abortHandshake(socket, 400) directly, never wsClientError.
    server = await make_server(path="/ws")
    errors = Recorder(server, "wsClientError")
    peer = await raw_peer(server, upgrade_request("/elsewhere"))
    status, _, body = await peer.read_response()
    assert (status, body) == (400, b"Bad Request")
    assert errors.events == []


async def test_server_closed_during_async_verify_answers_503(
    make_server: MakeServer, raw_peer: RawConnect
) -> None:
    started = asyncio.Event()
    proceed = asyncio.Event()

    async def verify(info: Any) -> bool:
        started.set()
        await proceed.wait()
        return True

    server = await make_server(verify_client=verify)
    connections = Recorder(server, "connection")
    peer = await raw_peer(server, upgrade_request())
    await wait_for(started.wait())
    closing = server.close()
    proceed.set()
    status, _, _ = await peer.read_response()
    assert status == 503
    await wait_for(closing)
    assert connections.events == []


async def test_peer_gone_during_async_verify(
    make_server: MakeServer, raw_peer: RawConnect, make_client: MakeClient
) -> None:
    started = asyncio.Event()

    async def verify(info: Any) -> bool:
        started.set()
        await asyncio.sleep(scaled(0.1))
        return True

    server = await make_server(verify_client=verify)
    server.on("connection", echo)
    connections = Recorder(server, "connection", "error")
    peer = await raw_peer(server, upgrade_request())
    await wait_for(started.wait())
    peer.writer.transport.abort()
    # The reset may go unnoticed while reading is paused for verify_client (ws' socket is
    # paused too): a connection that still opens must then close, and nothing may leak.
    await settle(0.2)
    await until(lambda: not server.clients)
    assert connections.of("error") == []
    for ws, _ in connections.of("connection"):
        await wait_for(ws.wait_closed())
        assert ws.close_code == 1006
    client = await make_client(url_of(server))  # the server carries on
    await client.send("ok")
    assert await wait_for(client.recv()) == "ok"


async def test_headers_listener_that_raises_is_logged(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_server()

    def bad(lines: list[str], request: Any) -> None:
        raise RuntimeError("headers bug")

    server.on("headers", bad)
    with caplog.at_level(logging.ERROR, logger="wsfast"):
        ws, events = await client_events(url_of(server))
    assert events.names() == ["upgrade", "open"]
    assert "headers bug" in caplog.text
    ws.terminate()


def _defaulted_second_parameter(info: Any, unused: Any = None) -> bool:
    return True


async def test_verify_client_arity_ignores_defaulted_parameters(
    make_server: MakeServer, raw_peer: RawConnect
) -> None:
    # ws picks the callback form by verifyClient.length, which does not count parameters with
    # defaults: (info, unused=None) is the one-argument form and its return value counts.
    server = await make_server(verify_client=_defaulted_second_parameter)
    connections = Recorder(server, "connection")
    peer = await raw_peer(server, upgrade_request())
    assert (await peer.read_head())[0] == 101
    await connections.wait("connection")


async def test_concurrent_clients(make_server: MakeServer, make_client: MakeClient) -> None:
    server = await make_server()
    server.on("connection", echo)
    requests = Recorder(server, "connection")
    clients = await asyncio.gather(*(make_client(url_of(server, f"/{i}")) for i in range(30)))
    for i, client in enumerate(clients):
        client.send(f"hello {i}")
        client.send(bytes([i]) * 1000)
    for i, client in enumerate(clients):
        assert await wait_for(client.recv()) == f"hello {i}"
        assert await wait_for(client.recv()) == bytes([i]) * 1000
    assert len(server.clients) == 30
    paths = sorted(request.path for _, request in requests.of("connection"))
    assert paths == sorted(f"/{i}" for i in range(30))
    assert all(request.remote_address[0] == "127.0.0.1" for _, request in requests.of("connection"))
    await asyncio.gather(*(client.close() for client in clients))
    await until(lambda: not server.clients)

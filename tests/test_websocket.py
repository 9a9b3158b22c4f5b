"""Client and server WebSocket objects over real 127.0.0.1 sockets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from conftest import (
    MakeClient,
    MakeServer,
    RawPeer,
    Recorder,
    client_frame,
    raw_websocket,
    scaled,
    settle,
    until,
    url_of,
    wait_for,
)

import wsfast
from wsfast import ConnectionClosed, WebSocket, WebSocketError, WebSocketServer, handshake
from wsfast.constants import OP_CLOSE, OP_TEXT


async def open_pair(
    make_server: MakeServer,
    make_client: MakeClient,
    path: str = "/",
    server_options: dict[str, Any] | None = None,
    **client_options: Any,
) -> tuple[WebSocket, WebSocket, WebSocketServer]:
    """(server-side ws, client ws, server) of one open connection."""
    server = await make_server(**(server_options or {}))
    accepted: asyncio.Future[WebSocket] = asyncio.get_running_loop().create_future()
    server.on("connection", lambda ws, request: accepted.set_result(ws))
    client = await make_client(url_of(server, path), **client_options)
    return await wait_for(accepted), client, server


async def accept_upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Play a minimal server: read the upgrade request and answer it with a valid 101."""
    head = await wait_for(reader.readuntil(b"\r\n\r\n"))
    lines = head.decode("latin-1").split("\r\n")[1:-2]
    headers = handshake.Headers((k, v.strip()) for k, _, v in (ln.partition(":") for ln in lines))
    accept = handshake.accept_key(headers["sec-websocket-key"])
    writer.write(
        handshake.build_response(
            101, ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {accept}"]
        )
    )


# -- messages -------------------------------------------------------------------------------------

MESSAGES = [
    ("text", "Hello"),
    ("unicode", "κόσμε 𝄞 €"),
    ("binary", b"\x00\xff\x80\x7f"),
    ("empty-text", ""),
    ("empty-binary", b""),
    ("text-125", "x" * 125),
    ("binary-126", bytes(126)),
    ("binary-65535", bytes(range(256)) * 255 + bytes(range(255))),
    ("binary-65536", bytes(range(256)) * 256),
    ("binary-4MiB", bytes(range(256)) * 16384),
    ("text-1MiB-multibyte", "é" * (512 * 1024)),
]


@pytest.mark.parametrize("message", [m[1] for m in MESSAGES], ids=[m[0] for m in MESSAGES])
async def test_echo(echo_server: WebSocketServer, make_client: MakeClient, message: Any) -> None:
    ws = await make_client(url_of(echo_server))
    await ws.send(message)
    answer = await wait_for(ws.recv())
    assert answer == message
    assert type(answer) is type(message)


async def test_echo_with_event_api(echo_server: WebSocketServer) -> None:
    ws = WebSocket(url_of(echo_server), per_message_deflate=False)
    events = Recorder(ws, "open", "upgrade", "message", "close")
    ws.on("open", lambda: ws.send("hi"))
    ws.on("message", lambda data, is_binary: ws.close(1000, "done"))
    await events.wait("close")
    assert events.names() == ["upgrade", "open", "message", "close"]
    assert events.of("message") == [("hi", False)]
    assert events.of("close") == [(1000, "done")]
    [(response,)] = events.of("upgrade")
    assert response.status == 101


async def test_many_messages_keep_their_order(
    echo_server: WebSocketServer, make_client: MakeClient
) -> None:
    ws = await make_client(url_of(echo_server))
    for i in range(500):
        ws.send(f"m{i}" if i % 2 else f"m{i}".encode())
    for i in range(500):
        assert await wait_for(ws.recv()) == (f"m{i}" if i % 2 else f"m{i}".encode())


async def test_binary_flag_overrides_type(
    echo_server: WebSocketServer, make_client: MakeClient
) -> None:
    ws = await make_client(url_of(echo_server))
    await ws.send("as binary", binary=True)
    assert await wait_for(ws.recv()) == b"as binary"
    await ws.send(b"as text", binary=False)
    assert await wait_for(ws.recv()) == "as text"


async def test_connect_and_serve_asyncio_style() -> None:
    async def handler(ws: WebSocket, request: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with wsfast.serve(handler, "127.0.0.1", 0, close_timeout=scaled(2)) as server:
        assert isinstance(server, WebSocketServer)
        async with wsfast.connect(url_of(server), per_message_deflate=False) as ws:
            await ws.send("one")
            assert await wait_for(ws.recv()) == "one"
        assert ws.ready_state == WebSocket.CLOSED
        assert ws.close_code == 1000
        ws2 = await wsfast.connect(url_of(server), per_message_deflate=False)
        await ws2.send(b"two")
        assert await wait_for(ws2.recv()) == b"two"
        await wait_for(ws2.close())


# -- async for / recv and closing -----------------------------------------------------------------


async def test_async_for_ends_on_normal_close(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    for i in range(3):
        server_ws.send(f"m{i}")
    server_ws.close(1000)
    received = [message async for message in client]
    assert received == ["m0", "m1", "m2"]
    with pytest.raises(ConnectionClosed) as info:
        await wait_for(client.recv())
    assert info.value.code == 1000


@pytest.mark.parametrize("code", [1001, None], ids=["1001", "no-code"])
async def test_async_for_ends_on_other_normal_codes(
    make_server: MakeServer, make_client: MakeClient, code: int | None
) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    server_ws.send("last")
    server_ws.close(code)
    assert [m async for m in client] == ["last"]


async def test_recv_raises_connection_closed_with_code_and_reason(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    waiting = asyncio.ensure_future(client.recv())
    await settle()
    server_ws.close(4000, "custom reason")
    with pytest.raises(ConnectionClosed) as info:
        await wait_for(waiting)
    assert (info.value.code, info.value.reason) == (4000, "custom reason")
    # async for raises too: 4000 is not a normal closure.
    with pytest.raises(ConnectionClosed):
        async for _ in client:
            pass


@pytest.mark.parametrize("closer", ["client", "server"])
@pytest.mark.parametrize(
    "code, reason, expected",
    [
        (1000, "", (1000, "")),
        (4001, "bye κ", (4001, "bye κ")),
        (None, "", (1005, "")),
        (1001, "x" * 123, (1001, "x" * 123)),
    ],
    ids=["1000", "4001-reason", "no-code", "123-byte-reason"],
)
async def test_close_code_and_reason_both_ways(
    make_server: MakeServer,
    make_client: MakeClient,
    closer: str,
    code: int | None,
    reason: str,
    expected: tuple[int, str],
) -> None:
    server_ws, client, server = await open_pair(make_server, make_client)
    server_events = Recorder(server_ws, "close", "error")
    client_events = Recorder(client, "close", "error")
    initiator = client if closer == "client" else server_ws
    await wait_for(initiator.close(code, reason))
    await server_events.wait("close")
    await client_events.wait("close")
    # The peer echoes the code and reason; each side reports what it received.
    assert server_events.events == [("close", *expected)]
    assert client_events.events == [("close", *expected)]
    assert client.ready_state == server_ws.ready_state == WebSocket.CLOSED
    await until(lambda: not server.clients)


async def test_close_is_idempotent_and_awaitable(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    events = Recorder(client, "close")
    first = client.close(1000)
    client.close(4000)
    assert client.ready_state == WebSocket.CLOSING
    await wait_for(first)
    await wait_for(client.close())
    assert events.events == [("close", 1000, "")]


@pytest.mark.parametrize(
    "code, reason, error",
    [(1005, "", TypeError), (999, "", TypeError), (1000, "x" * 124, ValueError)],
    ids=["1005", "999", "long-reason"],
)
async def test_close_refuses_invalid_arguments(
    make_server: MakeServer,
    make_client: MakeClient,
    code: int,
    reason: str,
    error: type[Exception],
) -> None:
    _, client, _ = await open_pair(make_server, make_client)
    with pytest.raises(error):
        client.close(code, reason)
    assert client.ready_state == WebSocket.OPEN


@pytest.mark.parametrize("side", ["client", "server"])
async def test_terminate(make_server: MakeServer, make_client: MakeClient, side: str) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    server_events = Recorder(server_ws, "close", "error")
    client_events = Recorder(client, "close", "error")
    (client if side == "client" else server_ws).terminate()
    await server_events.wait("close")
    await client_events.wait("close")
    assert server_events.events == [("close", 1006, "")]
    assert client_events.events == [("close", 1006, "")]


async def test_close_before_open_aborts_the_handshake(echo_server: WebSocketServer) -> None:
    ws = WebSocket(url_of(echo_server), per_message_deflate=False)
    events = Recorder(ws, "open", "error", "close")
    ws.close()
    await events.wait("close")
    assert events.names() == ["error", "close"]
    assert events.of("close") == [(1006, "")]


async def test_close_timeout_destroys_an_unanswered_close(
    make_server: MakeServer, raw_peer: Callable[..., Awaitable[RawPeer]]
) -> None:
    server = await make_server(close_timeout=scaled(0.2))
    accepted = Recorder(server, "connection")
    peer = await raw_websocket(raw_peer, server)
    [(server_ws, _)] = await accepted.wait("connection")
    events = Recorder(server_ws, "close")
    server_ws.close(1000)
    b0, opcode, payload = await peer.read_frame()
    assert (opcode, payload) == (OP_CLOSE, b"\x03\xe8")
    # The raw peer never answers: the server gives up after close_timeout.
    await events.wait("close", seconds=2)
    assert events.of("close") == [(1006, "")]


# -- ping / pong ----------------------------------------------------------------------------------


async def test_ping_pong_events(make_server: MakeServer, make_client: MakeClient) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    server_events = Recorder(server_ws, "ping", "pong")
    client_events = Recorder(client, "ping", "pong")
    client.ping(b"from client")
    server_ws.ping("from server")
    await client_events.wait("pong")
    await server_events.wait("pong")
    assert sorted(server_events.events) == sorted(
        [("ping", b"from client"), ("pong", b"from server")]
    )
    assert sorted(client_events.events) == sorted(
        [("ping", b"from server"), ("pong", b"from client")]
    )


async def test_ping_payload_limit(make_server: MakeServer, make_client: MakeClient) -> None:
    _, client, _ = await open_pair(make_server, make_client)
    await client.ping(b"x" * 125)
    with pytest.raises(WebSocketError):
        client.ping(b"x" * 126)


async def test_auto_pong_off(make_server: MakeServer, make_client: MakeClient) -> None:
    server_ws, client, _ = await open_pair(
        make_server, make_client, server_options={"auto_pong": False}
    )
    server_events = Recorder(server_ws, "ping")
    client_events = Recorder(client, "pong")
    client.ping(b"1")
    await server_events.wait("ping")
    await settle(0.1)
    assert client_events.events == []
    server_ws.pong(b"manual")
    assert await client_events.wait("pong") == [(b"manual",)]


async def test_client_auto_pong_off(make_server: MakeServer, make_client: MakeClient) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client, auto_pong=False)
    server_events = Recorder(server_ws, "pong")
    client_events = Recorder(client, "ping")
    server_ws.ping(b"2")
    await client_events.wait("ping")
    await settle(0.1)
    assert server_events.events == []


# -- binary_type, fragments, pause/resume ---------------------------------------------------------


@pytest.mark.parametrize(
    "binary_type, expected",
    [
        ("bytes", b"abcdef"),
        ("bytearray", bytearray(b"abcdef")),
        ("fragments", [b"ab", b"cd", b"ef"]),
    ],
)
async def test_binary_type(
    make_server: MakeServer, make_client: MakeClient, binary_type: str, expected: Any
) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    client.binary_type = binary_type
    assert client.binary_type == binary_type
    server_ws.send(b"ab", fin=False)
    server_ws.send(b"cd", fin=False)
    server_ws.send(b"ef", fin=True)
    message = await wait_for(client.recv())
    assert message == expected and type(message) is type(expected)
    server_ws.send(b"one")
    single = await wait_for(client.recv())
    assert single == (expected[:0] + b"one" if binary_type != "fragments" else [b"one"])


async def test_binary_type_invalid(make_server: MakeServer, make_client: MakeClient) -> None:
    _, client, _ = await open_pair(make_server, make_client)
    with pytest.raises(ValueError):
        client.binary_type = "blob"


async def test_fragments_sent_with_fin_false_are_reassembled(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    for part in ("κό", "σμ", ""):
        client.send(part, fin=False)
    client.send("ε", fin=True)
    client.send(b"\x01", fin=False)
    client.send(b"\x02")
    assert await wait_for(server_ws.recv()) == "κόσμε"
    assert await wait_for(server_ws.recv()) == b"\x01\x02"


async def test_pause_and_resume(make_server: MakeServer, make_client: MakeClient) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    events = Recorder(client, "message")
    client.pause()
    assert client.is_paused
    for i in range(5):
        server_ws.send(f"m{i}")
    await settle(0.1)
    assert events.events == []
    client.resume()
    assert not client.is_paused
    await events.wait("message", 5)
    assert events.of("message") == [(f"m{i}", False) for i in range(5)]


async def test_pause_from_a_message_listener(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    events = Recorder(client, "message")
    client.on("message", lambda data, is_binary: client.pause())
    # Five messages in one write: they reach the client in one read.
    server_ws.transport.write(
        b"".join(
            bytes.fromhex("8102") + f"m{i}".encode()  # type: ignore[union-attr]
            for i in range(5)
        )
    )
    await events.wait("message", 1)
    await settle(0.1)
    assert events.of("message") == [("m0", False)]
    for i in range(1, 5):
        client.resume()
        await events.wait("message", i + 1)
        await settle(0.02)
        assert len(events.events) == i + 1
    assert events.of("message") == [(f"m{i}", False) for i in range(5)]


# -- send: callbacks, buffered amount, states -----------------------------------------------------


async def test_send_callback_is_called(make_server: MakeServer, make_client: MakeClient) -> None:
    _, client, _ = await open_pair(make_server, make_client)
    results: asyncio.Queue[Any] = asyncio.Queue()
    client.send("x", callback=results.put_nowait)
    client.ping(b"", callback=results.put_nowait)
    client.pong(b"", callback=results.put_nowait)
    for _ in range(3):
        assert await wait_for(results.get()) is None


async def test_buffered_amount(make_server: MakeServer, make_client: MakeClient) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    assert client.buffered_amount == 0
    server_ws.pause()  # the server stops reading: the client's writes pile up
    big = bytes(32 * 1024 * 1024)  # more than loopback socket buffers take
    sent = client.send(big)
    assert client.buffered_amount > 0
    server_ws.resume()
    await wait_for(sent)  # resolves once under the high-water mark again
    assert await wait_for(server_ws.recv()) == big
    await until(lambda: client.buffered_amount == 0)


async def test_send_while_connecting_raises(echo_server: WebSocketServer) -> None:
    ws = WebSocket(url_of(echo_server), per_message_deflate=False)
    assert ws.ready_state == WebSocket.CONNECTING
    with pytest.raises(WebSocketError):
        ws.send("too early")
    with pytest.raises(WebSocketError):
        ws.ping()
    await wait_for(ws.wait_open())
    ws.terminate()


async def test_send_after_close(make_server: MakeServer, make_client: MakeClient) -> None:
    _, client, _ = await open_pair(make_server, make_client)
    await wait_for(client.close(1000, "gone"))
    results: asyncio.Queue[Any] = asyncio.Queue()
    pending = client.send("late", callback=results.put_nowait)
    error = await wait_for(results.get())
    assert isinstance(error, Exception)
    with pytest.raises(ConnectionClosed) as info:
        await pending
    assert info.value.code == 1000
    with pytest.raises(ConnectionClosed):
        await client.ping()
    client.send("not awaited: no error anywhere")


async def test_send_while_closing(make_server: MakeServer, make_client: MakeClient) -> None:
    _, client, _ = await open_pair(make_server, make_client)
    client.close()
    assert client.ready_state == WebSocket.CLOSING
    with pytest.raises(ConnectionClosed):
        await client.send("x")


async def test_attributes(make_server: MakeServer, make_client: MakeClient) -> None:
    server_ws, client, server = await open_pair(make_server, make_client, "/a/b?c=d")
    assert client.url == url_of(server, "/a/b?c=d")
    assert client.ready_state == WebSocket.OPEN == wsfast.OPEN == 1
    assert (WebSocket.CONNECTING, WebSocket.CLOSING, WebSocket.CLOSED) == (0, 2, 3)
    assert client.protocol == "" and client.extensions == ""
    assert not client.is_server and server_ws.is_server
    assert server_ws.url is None


async def test_protocol_version_8(make_server: MakeServer, make_client: MakeClient) -> None:
    server = await make_server()
    seen: list[Any] = []
    server.on(
        "connection",
        lambda ws, request: (
            seen.append(request.headers["sec-websocket-version"]),
            ws.on("message", lambda data, is_binary: ws.send(data)),
        ),
    )
    client = await make_client(url_of(server), protocol_version=8)
    await client.send("v8")
    assert await wait_for(client.recv()) == "v8"
    assert seen == ["8"]


async def test_invalid_protocol_version_refused() -> None:
    with pytest.raises(ValueError):
        WebSocket("ws://127.0.0.1:1/", protocol_version=7)


async def test_invalid_url_refused() -> None:
    for url in ("http//nope", "ftp://host/", "ws://host/#fragment"):
        with pytest.raises(wsfast.InvalidURL):
            WebSocket(url)


async def test_handshake_timeout(
    make_server: MakeServer,
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    tcp = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    try:
        ws = WebSocket(
            f"ws://127.0.0.1:{port}/", handshake_timeout=scaled(0.2), per_message_deflate=False
        )
        events = Recorder(ws, "error", "close")
        await events.wait("close")
        [(error,)] = events.of("error")
        assert error.code == "WS_ERR_HANDSHAKE_TIMEOUT"
    finally:
        tcp.close()


async def test_connection_refused_emits_error_then_close() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    ws = WebSocket(f"ws://127.0.0.1:{port}/", per_message_deflate=False)
    events = Recorder(ws, "open", "error", "close")
    await events.wait("close")
    assert events.names() == ["error", "close"]
    assert isinstance(events.of("error")[0][0], OSError)
    with pytest.raises(OSError):
        await wait_for(ws.wait_open())


# -- recv queue and backpressure ------------------------------------------------------------------


async def test_listener_added_later_gets_queued_messages_first(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    for i in range(3):
        server_ws.send(f"m{i}")
    await until(lambda: len(client._queue or ()) == 3)
    events = Recorder(client, "message")
    assert events.of("message") == [(f"m{i}", False) for i in range(3)]
    server_ws.send("m3")
    await events.wait("message", 4)
    assert events.of("message")[-1] == ("m3", False)


@pytest.mark.parametrize("size", [16, 32 * 1024], ids=["16B", "32KiB"])
async def test_recv_backpressure_bounds_the_queue_and_loses_nothing(
    make_server: MakeServer, make_client: MakeClient, size: int
) -> None:
    max_queue = 16
    server_ws, client, _ = await open_pair(
        make_server, make_client, server_options={"max_queue": max_queue}
    )
    count = 1000
    for i in range(count):
        client.send(f"{i:06d}".encode() + bytes(size - 6))
    # Nobody reads on the server: it stops reading the socket once its queue is full, so the
    # 32 MB pile up in the kernel and in the client's own write buffer, not in the server.
    await until(lambda: len(server_ws._queue or ()) >= max_queue)
    await settle(0.3)
    queued = len(server_ws._queue or ())
    held = queued * size + server_ws._proto.receiver.buffered  # type: ignore[union-attr]
    assert queued <= max_queue, f"{queued} messages queued"
    assert held <= max_queue * size + 512 * 1024
    if size * count > 16 * 1024 * 1024:  # more than loopback socket buffers take
        assert client.buffered_amount > 0
    for i in range(count):
        message = await wait_for(server_ws.recv())
        assert message[:6] == f"{i:06d}".encode()
        assert len(message) == size
        assert len(server_ws._queue or ()) <= max_queue
    await until(lambda: client.buffered_amount == 0)


async def test_recv_only_one_waiter(make_server: MakeServer, make_client: MakeClient) -> None:
    _, client, _ = await open_pair(make_server, make_client)
    first = asyncio.ensure_future(client.recv())
    await settle(0.01)
    with pytest.raises(RuntimeError):
        await client.recv()
    first.cancel()


# -- errors ---------------------------------------------------------------------------------------


async def test_client_protocol_error_emits_error_then_one_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that sends a masked frame: the client fails with 1002, one 'close'."""
    frames_seen: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_upgrade(reader, writer)
        writer.write(client_frame(b"masked!", OP_TEXT))  # a server must not mask
        frames_seen.put_nowait(await reader.read(1024))
        writer.close()

    tcp = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    try:
        ws = WebSocket(f"ws://127.0.0.1:{port}/", per_message_deflate=False)
        events = Recorder(ws, "message", "error", "close")
        await events.wait("close")
        await settle(0.05)
        assert events.names() == ["error", "close"]
        [(error,)] = events.of("error")
        assert (error.code, error.status_code) == ("WS_ERR_UNEXPECTED_MASK", 1002)
        assert events.of("close") == [(1002, "")]
        data = await wait_for(frames_seen.get())
        assert data[0] == 0x88 and data[1] == 0x82  # masked close frame with 2 bytes...
        code = bytes(b ^ data[2 + (i & 3)] for i, b in enumerate(data[6:8]))
        assert code == b"\x03\xea"  # ...1002
    finally:
        tcp.close()


async def test_peer_error_without_listener_is_logged_at_info_not_error(
    caplog: pytest.LogCaptureFixture, make_server: MakeServer, make_client: MakeClient
) -> None:
    # A remote peer must not be able to write ERROR lines into the log (issue 8).
    server_ws, client, _ = await open_pair(make_server, make_client)
    closes = Recorder(client, "close")
    with caplog.at_level(logging.DEBUG, logger="wsfast"):
        server_ws.transport.write(bytes.fromhex("8f00"))  # type: ignore[union-attr]
        await closes.wait("close")
    lines = [r for r in caplog.records if "invalid opcode" in r.getMessage()]
    assert lines and all(r.levelno == logging.INFO for r in lines)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert closes.events == [("close", 1002, "")]


async def test_listener_exception_does_not_break_the_connection(
    caplog: pytest.LogCaptureFixture, echo_server: WebSocketServer, make_client: MakeClient
) -> None:
    ws = await make_client(url_of(echo_server))
    received: list[Any] = []

    def bad(data: Any, is_binary: bool) -> None:
        received.append(data)
        raise RuntimeError("listener bug")

    ws.on("message", bad)
    with caplog.at_level(logging.ERROR, logger="wsfast"):
        ws.send("a")
        ws.send("b")
        await until(lambda: len(received) == 2)
    assert received == ["a", "b"]
    assert ws.ready_state == WebSocket.OPEN
    assert "listener bug" in caplog.text


async def test_recv_cancelled_as_a_message_arrives_loses_nothing(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    # A caller's timeout can fire in the same loop iteration as the message that completes its
    # recv(): the message must stay for the next recv(), not vanish with the cancelled call.
    _, client, _ = await open_pair(make_server, make_client)
    task = asyncio.ensure_future(client.recv())
    await settle(0.01)
    client.data_received(bytes.fromhex("8102") + b"m1")  # as if read from the socket
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_for(client.recv()) == "m1"


async def test_recv_timeout_then_message(make_server: MakeServer, make_client: MakeClient) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(client.recv(), scaled(0.05))
    server_ws.send("after the timeout")
    assert await wait_for(client.recv()) == "after the timeout"


@pytest.mark.parametrize("ticks", [0, 1, 2, 3, 5, 8, 13])
@pytest.mark.parametrize("how", ["close", "terminate"])
async def test_closing_while_connecting_never_opens(
    echo_server: WebSocketServer, ticks: int, how: str
) -> None:
    ws = WebSocket(url_of(echo_server), per_message_deflate=False)
    events = Recorder(ws, "open", "upgrade", "error", "close")
    for _ in range(ticks):
        await asyncio.sleep(0)
    was_connecting = ws.ready_state == WebSocket.CONNECTING
    getattr(ws, how)()
    await events.wait("close")
    await settle(0.1)
    assert events.count("close") == 1
    if was_connecting:
        assert events.names() == ["error", "close"]
    else:
        assert events.names() == ["upgrade", "open", "close"]
    assert ws.ready_state == WebSocket.CLOSED
    await until(lambda: not echo_server.clients)


# -- limits and options end to end ---------------------------------------------------------------


async def test_client_max_payload(make_server: MakeServer, make_client: MakeClient) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client, max_payload=100)
    server_events = Recorder(server_ws, "close")
    client_events = Recorder(client, "message", "error", "close")
    server_ws.send(bytes(100))
    server_ws.send(bytes(101))
    await client_events.wait("close")
    assert client_events.names() == ["message", "error", "close"]
    [(error,)] = client_events.of("error")
    assert (error.code, error.status_code) == ("WS_ERR_UNSUPPORTED_MESSAGE_LENGTH", 1009)
    assert client_events.of("close") == [(1009, "")]
    assert await server_events.wait("close") == [(1009, "")]


async def test_server_max_payload(make_server: MakeServer, make_client: MakeClient) -> None:
    server_ws, client, _ = await open_pair(
        make_server, make_client, server_options={"max_payload": 10}
    )
    server_events = Recorder(server_ws, "error", "close")
    client_events = Recorder(client, "close")
    client.send("0123456789")
    client.send("0123456789A")
    assert await wait_for(server_ws.recv()) == "0123456789"
    # The message before the oversized one was taken: the error waits for the application to
    # ask for the next one (or for HELD_ERROR_TIMEOUT), then fails the connection with 1009.
    with pytest.raises(ConnectionClosed) as info:
        await wait_for(server_ws.recv())
    assert info.value.code == 1009
    assert await client_events.wait("close") == [(1009, "")]
    await server_events.wait("close")
    assert server_events.names() == ["error", "close"]


async def test_skip_utf8_validation(make_server: MakeServer, make_client: MakeClient) -> None:
    server_ws, client, _ = await open_pair(
        make_server, make_client, server_options={"skip_utf8_validation": True}
    )
    client.transport.write(client_frame(b"ok\xff", OP_TEXT))  # type: ignore[union-attr]
    assert await wait_for(server_ws.recv()) == "ok\ufffd"
    assert server_ws.ready_state == WebSocket.OPEN


async def test_invalid_utf8_from_client_closes_with_1007(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    events = Recorder(client, "close")
    client.transport.write(client_frame(b"ok\xff", OP_TEXT))  # type: ignore[union-attr]
    assert await events.wait("close") == [(1007, "")]


async def test_per_message_deflate_is_not_negotiated_by_default_server(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    _, client, _ = await open_pair(make_server, make_client, per_message_deflate=True)
    assert client.extensions == ""


async def test_close_with_bytes_reason(make_server: MakeServer, make_client: MakeClient) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    events = Recorder(server_ws, "close")
    client.close(4002, "réason".encode())
    assert await events.wait("close") == [(4002, "réason")]


async def test_send_buffers(make_server: MakeServer, make_client: MakeClient) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    for data in (bytearray(b"ba"), memoryview(b"mv")):
        client.send(data)
        assert await wait_for(server_ws.recv()) == bytes(data)
    client.ping("text ping")
    [(payload,)] = await Recorder(server_ws, "ping").wait("ping")
    assert payload == b"text ping"


async def test_async_message_listener(make_server: MakeServer, make_client: MakeClient) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    received: asyncio.Queue[Any] = asyncio.Queue()

    async def on_message(data: Any, is_binary: bool) -> None:
        await asyncio.sleep(0)
        await received.put(data)

    client.on("message", on_message)
    server_ws.send("async")
    assert await wait_for(received.get()) == "async"


async def test_peer_half_close_without_close_frame(
    make_server: MakeServer, raw_peer: Callable[..., Awaitable[RawPeer]]
) -> None:
    server = await make_server()
    connections = Recorder(server, "connection")
    peer = await raw_websocket(raw_peer, server)
    [(server_ws, _)] = await connections.wait("connection")
    events = Recorder(server_ws, "error", "close")
    peer.writer.write_eof()
    assert await events.wait("close") == [(1006, "")]
    assert events.names() == ["close"]


async def test_messages_sent_with_the_101_reach_open_listeners(make_server: MakeServer) -> None:
    server = await make_server()

    def on_connection(ws: WebSocket, request: Any) -> None:
        ws.send("first")
        ws.send(b"second")
        ws.close(4000, "bye")

    server.on("connection", on_connection)
    client = WebSocket(url_of(server), per_message_deflate=False)
    events = Recorder(client, "open", "error", "close")
    received: list[Any] = []
    client.on("open", lambda: client.on("message", lambda *args: received.append(args)))
    await events.wait("close")
    assert events.events == [("open",), ("close", 4000, "bye")]
    assert received == [("first", False), (b"second", True)]


async def test_queued_messages_outlive_the_close(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    closed = Recorder(client, "close")
    for i in range(10):  # fewer than max_queue: the close frame is read at once
        server_ws.send(f"m{i}")
    server_ws.close(1000)
    await closed.wait("close")
    assert client.ready_state == WebSocket.CLOSED
    # Everything that arrived before the close frame is still there, in order.
    assert [await wait_for(client.recv()) for _ in range(10)] == [f"m{i}" for i in range(10)]
    with pytest.raises(ConnectionClosed):
        await wait_for(client.recv())


async def test_close_behind_a_full_queue_is_read_after_the_messages(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    server_ws, client, _ = await open_pair(make_server, make_client)
    for i in range(300):
        server_ws.send(f"m{i}")
    server_ws.close(1000, "end")
    # The full queue stopped the reading: the close frame waits behind the messages.
    assert [await wait_for(client.recv()) for _ in range(300)] == [f"m{i}" for i in range(300)]
    with pytest.raises(ConnectionClosed) as info:
        await wait_for(client.recv())
    assert (info.value.code, info.value.reason) == (1000, "end")


async def test_client_close_timeout_when_the_server_never_answers() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_upgrade(reader, writer)
        await reader.read()  # reads everything, answers nothing, never closes first
        writer.close()

    tcp = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    try:
        ws = WebSocket(
            f"ws://127.0.0.1:{port}/", per_message_deflate=False, close_timeout=scaled(0.2)
        )
        await wait_for(ws.wait_open())
        events = Recorder(ws, "error", "close")
        ws.close(1000)
        assert await events.wait("close", seconds=2) == [(1006, "")]
        assert events.names() == ["close"]
    finally:
        tcp.close()

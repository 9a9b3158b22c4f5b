"""create_websocket_stream (ws' ``createWebSocketStream``) over real loopback sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from conftest import scaled, until, url_of, wait_for

import wsfast
from wsfast.stream import WebSocketStreamWriter

MakeServer = Callable[..., Awaitable[wsfast.WebSocketServer]]


async def _client(server: wsfast.WebSocketServer, **options: Any) -> wsfast.WebSocket:
    options.setdefault("per_message_deflate", False)
    options.setdefault("close_timeout", scaled(2.0))
    return wsfast.WebSocket(url_of(server), **options)


async def test_echo_read_apis(echo_server: wsfast.WebSocketServer) -> None:
    ws = await _client(echo_server)
    reader, writer = wsfast.create_websocket_stream(ws)
    assert isinstance(reader, asyncio.StreamReader)
    assert isinstance(writer, WebSocketStreamWriter) and writer.websocket is ws
    # Written while connecting: sent once open, in order (ws queues them the same way).
    writer.write(b"hello ")
    writer.write(bytearray(b"world\n"))
    writer.writelines([b"ab", memoryview(b"cd"), "text\u00e9\n"])
    await wait_for(writer.drain())
    assert await wait_for(reader.readline()) == b"hello world\n"
    assert await wait_for(reader.readexactly(4)) == b"abcd"
    assert await wait_for(reader.readuntil(b"\n")) == "text\u00e9\n".encode()
    host, port = writer.get_extra_info("peername")[:2]
    assert (host, port) == echo_server.address()
    assert writer.get_extra_info("nope", 42) == 42
    assert writer.transport is ws.transport and writer.can_write_eof()
    assert not writer.is_closing()
    writer.close()
    assert writer.is_closing()
    writer.write(b"ignored after close")
    assert await wait_for(reader.read()) == b""  # EOF once the WebSocket closed
    assert reader.at_eof()
    await wait_for(writer.wait_closed())
    assert ws.ready_state == wsfast.WebSocket.CLOSED
    with pytest.raises(ConnectionResetError):
        await writer.drain()


async def test_server_side_stream_and_eof(make_server: MakeServer) -> None:
    server = await make_server()
    received: asyncio.Future[tuple[bytes, int]] = asyncio.get_running_loop().create_future()

    async def handle(ws: wsfast.WebSocket, request: Any) -> None:
        reader, writer = wsfast.create_websocket_stream(ws)
        data = await reader.read()  # until the client's close frame
        await ws.wait_closed()
        received.set_result((data, ws.close_code))

    server.on("connection", lambda ws, req: asyncio.ensure_future(handle(ws, req)))
    ws = await _client(server)
    await wait_for(ws.wait_open())
    for i in range(10):
        ws.send(f"{i},")
    ws.send(b"end")
    ws.close(1000)
    data, code = await wait_for(received)
    assert data == b"0,1,2,3,4,5,6,7,8,9,end" and code == 1000


async def test_reading_backpressure_pauses_the_websocket(make_server: MakeServer) -> None:
    server = await make_server()
    chunk = bytes(range(256)) * 256  # 64 KiB
    count = 64
    server.on(
        "connection",
        lambda ws, req: [ws.send(chunk) for _ in range(count)] and ws.close(1000),
    )
    ws = await _client(server)
    limit = 16 * 1024
    reader, writer = wsfast.create_websocket_stream(ws, limit=limit)
    await until(lambda: ws.is_paused)
    await asyncio.sleep(scaled(0.1))
    buffered = len(reader._buffer)  # type: ignore[attr-defined]
    # Pausing happens once the buffer is past 2 * limit: at most one message more than that.
    assert buffered <= 2 * limit + len(chunk)
    assert ws.ready_state == wsfast.WebSocket.OPEN
    total = 0
    while True:
        data = await wait_for(reader.read(10_000))
        if not data:
            break
        total += len(data)
    assert total == count * len(chunk)
    await wait_for(ws.wait_closed())
    assert ws.close_code == 1000


async def test_writing_backpressure_drain_waits(make_server: MakeServer) -> None:
    server = await make_server()
    server_ws: asyncio.Future[wsfast.WebSocket] = asyncio.get_running_loop().create_future()
    got = 0

    def on_connection(ws: wsfast.WebSocket, request: Any) -> None:
        def on_message(data: Any, is_binary: bool) -> None:
            nonlocal got
            got += len(data)

        ws.on("message", on_message)
        ws.pause()  # the server stops reading: the client's writes pile up
        server_ws.set_result(ws)

    server.on("connection", on_connection)
    ws = await _client(server)
    reader, writer = wsfast.create_websocket_stream(ws)
    await wait_for(ws.wait_open())
    peer = await wait_for(server_ws)
    chunk = b"x" * (1024 * 1024)
    blocked = False
    sent = 0
    for _ in range(256):  # at most 256 MiB: socket buffers hold a few MiB at the most
        writer.write(chunk)
        sent += len(chunk)
        try:
            await asyncio.wait_for(writer.drain(), scaled(0.3))
        except asyncio.TimeoutError:
            blocked = True
            break
    assert blocked, "drain() never waited although the peer stopped reading"
    assert ws.buffered_amount > 0
    peer.resume()
    await wait_for(writer.drain(), 30)
    await until(lambda: got == sent, 30)
    writer.close()
    await wait_for(writer.wait_closed())


async def test_error_reaches_reader_and_drain(make_server: MakeServer) -> None:
    server = await make_server()
    server.on("connection", lambda ws, req: ws.send(b"x" * 2000))
    ws = await _client(server, max_payload=1000)
    ws.on("error", lambda exc: None)
    reader, writer = wsfast.create_websocket_stream(ws)
    with pytest.raises(wsfast.WebSocketError) as info:
        await wait_for(reader.read())
    assert info.value.code == "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH"
    with pytest.raises(wsfast.WebSocketError):
        await writer.drain()
    await wait_for(ws.wait_closed())


async def test_handshake_failure_reaches_reader() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/")
    ws.on("error", lambda exc: None)
    reader, writer = wsfast.create_websocket_stream(ws)
    writer.write(b"never sent")
    with pytest.raises(OSError):
        await wait_for(reader.read())
    with pytest.raises(OSError):
        await wait_for(writer.drain())


async def test_close_while_connecting_sends_pending_then_closes(make_server: MakeServer) -> None:
    server = await make_server()
    done: asyncio.Future[tuple[list[Any], int]] = asyncio.get_running_loop().create_future()

    def on_connection(ws: wsfast.WebSocket, request: Any) -> None:
        messages: list[Any] = []
        ws.on("message", lambda data, is_binary: messages.append(data))
        ws.on("close", lambda code, reason: done.set_result((messages, code)))

    server.on("connection", on_connection)
    ws = await _client(server)
    reader, writer = wsfast.create_websocket_stream(ws, binary=False)
    writer.write(b"as text")
    writer.close()
    writer.close()  # idempotent
    messages, code = await wait_for(done)
    assert messages == ["as text"] and code == 1005  # ws' duplex.end(): ws.close() with no code


async def test_close_while_connecting_without_writes(make_server: MakeServer) -> None:
    server = await make_server()
    ws = await _client(server)
    reader, writer = wsfast.create_websocket_stream(ws)
    writer.write_eof()
    assert await wait_for(reader.read()) == b""
    await wait_for(writer.wait_closed())


async def test_stream_over_closed_websocket_is_at_eof(echo_server: wsfast.WebSocketServer) -> None:
    ws = await _client(echo_server)
    await wait_for(ws.wait_open())
    ws.close()
    await wait_for(ws.wait_closed())
    reader, writer = wsfast.create_websocket_stream(ws)
    assert await wait_for(reader.read()) == b""
    assert writer.is_closing()
    assert "WebSocketStreamWriter" in repr(writer)


async def test_fragments_binary_type(echo_server: wsfast.WebSocketServer) -> None:
    ws = await _client(echo_server, binary_type="fragments")
    reader, writer = wsfast.create_websocket_stream(ws)
    writer.write(b"abc")
    await wait_for(writer.drain())
    assert await wait_for(reader.readexactly(3)) == b"abc"
    writer.close()
    await wait_for(writer.wait_closed())


async def test_stream_protocol_over_websocket(echo_server: wsfast.WebSocketServer) -> None:
    """A line protocol written for TCP streams runs unchanged over the WebSocket stream."""

    async def line_client(reader: Any, writer: Any) -> list[bytes]:
        replies = []
        for word in (b"alpha", b"beta", b"gamma"):
            writer.write(word + b"\n")
            await writer.drain()
            replies.append((await reader.readline()).rstrip(b"\n"))
        writer.close()
        await writer.wait_closed()
        return replies

    ws = await _client(echo_server)
    assert await wait_for(line_client(*wsfast.create_websocket_stream(ws))) == [
        b"alpha",
        b"beta",
        b"gamma",
    ]

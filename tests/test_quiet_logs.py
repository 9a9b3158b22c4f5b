"""Quiet logs under a reset storm (issue 11 section 3).

A peer that vanishes is a normal end of a connection: at most one INFO line for it, nothing at
WARNING or above, no traceback and no "Task exception was never retrieved". Only a bug in
server code (here: the handler) is an ERROR with its traceback.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import struct
from collections import Counter
from collections.abc import Iterator

import pytest
from conftest import MASK, client_frame, scaled, until, upgrade_request, wait_for

import wsfast
from wsfast.constants import OP_BINARY, OP_CLOSE, OP_TEXT
from wsfast.handshake import Request
from wsfast.sender import frame

#: Connections reset per way of resetting them.
PER_KIND = 25

#: Incompressible, so that its echo fills the transport with permessage-deflate on too.
BIG = os.urandom(4 << 20)


class Capture(logging.Handler):
    """Every record of every logger (asyncio's included), formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.text: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.text.append(self.format(record))

    def at(self, level: int) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno == level]


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


#: How many echoes found the transport's buffer non-empty (the handler then awaits the send).
BACKLOGGED: list[int] = []


async def echo(ws: wsfast.WebSocket, request: Request) -> None:
    async for message in ws:
        sending = ws.send(message)
        if ws.buffered_amount:
            BACKLOGGED.append(ws.buffered_amount)
        await sending


async def open_raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await wait_for(asyncio.open_connection("127.0.0.1", port))


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the kernel sends RST, not FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


#: The upgrade request of the raw peers (asks for permessage-deflate in the deflate run).
REQUEST: dict[str, str] = {}


async def handshake(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await open_raw(port)
    writer.write(upgrade_request(**REQUEST))
    head = await wait_for(reader.readuntil(b"\r\n\r\n"))
    assert head.startswith(b"HTTP/1.1 101 ")
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    b0, b1 = await wait_for(reader.readexactly(2))
    length = b1 & 0x7F
    if length == 126:
        length = int.from_bytes(await wait_for(reader.readexactly(2)), "big")
    elif length == 127:
        length = int.from_bytes(await wait_for(reader.readexactly(8)), "big")
    return await wait_for(reader.readexactly(length))


# Each way of resetting returns whether the connection got open (101 written).


async def before_any_byte(port: int) -> bool:
    _, writer = await open_raw(port)
    reset(writer)
    return False


async def mid_handshake(port: int) -> bool:
    _, writer = await open_raw(port)
    writer.write(upgrade_request()[:40])
    await asyncio.sleep(0)
    reset(writer)
    return False


async def just_opened(port: int) -> bool:
    _, writer = await handshake(port)
    reset(writer)
    return True


async def mid_frame(port: int) -> bool:
    _, writer = await handshake(port)
    whole = client_frame(b"x" * 1000, OP_BINARY)
    writer.write(whole[:300])
    await writer.drain()
    await asyncio.sleep(0.001)
    reset(writer)
    return True


async def while_the_handler_awaits_recv(port: int) -> bool:
    reader, writer = await handshake(port)
    writer.write(client_frame(b"ping me", OP_TEXT))
    assert await read_frame(reader)  # the echo (compressed in the deflate run)
    reset(writer)
    return True


async def while_the_handler_awaits_send(port: int) -> bool:
    # 4 MiB echoed to a peer that does not read: the handler's await ws.send() waits for the
    # transport to drain when the peer vanishes.
    _, writer = await handshake(port)
    writer.write(client_frame(BIG, OP_BINARY))
    await writer.drain()
    await asyncio.sleep(scaled(0.02))
    reset(writer)
    return True


async def mid_close(port: int) -> bool:
    _, writer = await handshake(port)
    writer.write(client_frame(b"\x03\xe8", OP_CLOSE))
    reset(writer)
    return True


async def mid_fragmented_message(port: int) -> bool:
    _, writer = await handshake(port)
    writer.write(client_frame(b"part one", OP_TEXT, fin=False))
    await writer.drain()
    await asyncio.sleep(0.001)
    reset(writer)
    return True


KINDS = [
    before_any_byte,
    mid_handshake,
    just_opened,
    mid_frame,
    while_the_handler_awaits_recv,
    while_the_handler_awaits_send,
    mid_close,
    mid_fragmented_message,
]


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
async def test_a_reset_storm_leaves_quiet_logs(
    capture: Capture, deflate: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert MASK  # client_frame masks with it
    if deflate:
        monkeypatch.setitem(REQUEST, "Sec_WebSocket_Extensions", "permessage-deflate")
    BACKLOGGED.clear()
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, object]] = []
    loop.set_exception_handler(lambda loop, context: unhandled.append(context))
    serving = wsfast.serve(
        echo, "127.0.0.1", 0, handshake_timeout=scaled(5.0), per_message_deflate=deflate
    )
    async with serving as server:
        resets, opened = await storm(server)
        await until(lambda: not serving.tasks)
    await check_quiet(capture, unhandled, resets, opened)
    assert len(BACKLOGGED) >= PER_KIND // 2  # the 4 MiB echoes did wait on the transport


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
async def test_a_reset_storm_on_the_event_api_leaves_quiet_logs(
    capture: Capture, deflate: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ws style: a 'message' listener echoing with sends nobody awaits.
    if deflate:
        monkeypatch.setitem(REQUEST, "Sec_WebSocket_Extensions", "permessage-deflate")
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, object]] = []
    loop.set_exception_handler(lambda loop, context: unhandled.append(context))
    server = wsfast.WebSocketServer(
        port=0, host="127.0.0.1", handshake_timeout=scaled(5.0), per_message_deflate=deflate
    )

    def on_connection(ws: wsfast.WebSocket, request: Request) -> None:
        ws.on("message", lambda data, is_binary: ws.send(data, binary=is_binary))

    server.on("connection", on_connection)
    await wait_for(server.wait_listening())
    try:
        resets, opened = await storm(server)
    finally:
        await wait_for(server.close())
    await check_quiet(capture, unhandled, resets, opened)


async def storm(server: wsfast.WebSocketServer) -> tuple[int, int]:
    """Reset PER_KIND connections each way, interleaved; (resets, connections opened)."""
    _, port = server.address()
    opened = 0
    for _ in range(PER_KIND):
        # A few at a time, as a storm would come.
        results = await asyncio.gather(*(kind(port) for kind in KINDS))
        opened += sum(results)
    await until(lambda: server.stats.connections == 0, seconds=20)
    await until(lambda: server.stats.handshakes_in_flight == 0)
    assert server.stats.opened == opened
    return PER_KIND * len(KINDS), opened


async def check_quiet(
    capture: Capture, unhandled: list[dict[str, object]], resets: int, opened: int
) -> None:
    gc.collect()  # a task whose exception nobody retrieved reports when collected
    await asyncio.sleep(0)
    asyncio.get_running_loop().set_exception_handler(None)
    levels = Counter(logging.getLevelName(r.levelno) for r in capture.records)
    infos = Counter(r.msg for r in capture.at(logging.INFO))
    print(f"\n{resets} resets, {opened} opened: {dict(levels)}; INFO lines: {dict(infos)}")
    assert unhandled == []
    assert [r for r in capture.records if r.levelno >= logging.WARNING] == []
    # Per connection, one INFO line as it opens and one as it ends (naming the protocol error,
    # if any): nothing else, whatever the peer did.
    assert set(infos) <= {"connection open: %s %s", "connection closed: %s%s%s"}, infos
    assert infos["connection open: %s %s"] <= opened
    assert infos["connection closed: %s%s%s"] <= opened
    text = "\n".join(capture.text)
    assert "Task exception was never retrieved" not in text
    assert "Traceback" not in text
    assert not [r for r in capture.records if r.exc_info]


async def test_a_bug_in_the_handler_is_one_error_with_its_traceback(capture: Capture) -> None:
    async def buggy(ws: wsfast.WebSocket, request: Request) -> None:
        async for message in ws:
            raise ZeroDivisionError(f"bug on {message!r}")

    async with wsfast.serve(buggy, "127.0.0.1", 0) as server:
        host, port = server.address()
        client = wsfast.WebSocket(f"ws://{host}:{port}/", per_message_deflate=False)
        await wait_for(client.wait_open())
        client.send("boom")
        await wait_for(client.wait_closed())
        assert client.close_code == 1011
        await until(lambda: server.stats.connections == 0)
    errors = [r for r in capture.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1
    (error,) = errors
    assert error.levelno == logging.ERROR
    assert error.exc_info is not None and error.exc_info[0] is ZeroDivisionError
    assert "Traceback" in capture.text[capture.records.index(error)]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(bytes(frame(b"x", OP_TEXT)), id="unmasked"),
        pytest.param(client_frame(b"\xff\xfe", OP_TEXT), id="invalid-utf8"),
        pytest.param(client_frame(b"x", 0), id="unexpected-continuation"),
        pytest.param(client_frame(b"x" * 200, OP_CLOSE), id="control-too-long"),
    ],
)
async def test_a_misbehaving_peer_is_one_info_line(capture: Capture, bad: bytes) -> None:
    async with wsfast.serve(echo, "127.0.0.1", 0) as server:
        _, port = server.address()
        for count in range(1, 4):
            reader, writer = await handshake(port)
            writer.write(bad)
            await wait_for(reader.read())  # the server closes (its close frame, then EOF)
            writer.close()
            await until(lambda: server.stats.connections == 0)
            await asyncio.sleep(0)
            # The connection's open line and its closed line, which names the error.
            infos = capture.at(logging.INFO)
            assert len(infos) == 2 * count
            closed = infos[-1].getMessage()
            assert closed.startswith("connection closed: 100") and "(" in closed, closed
    assert [r for r in capture.records if r.levelno >= logging.WARNING] == []
    assert not [r for r in capture.records if r.exc_info]

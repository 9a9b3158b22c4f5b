"""A protocol error behind messages the application has not answered yet (issue 13).

When a valid message and an invalid frame arrive together, the application that reads through
``recv()`` / ``async for`` must still be able to answer the message before the connection fails:
the protocol holds the error (``Protocol.backlog``, ``held``, ``release()``), reading stops, and
the connection fails once the application asks for a message beyond those that arrived, on
``close()``, or after ``HELD_ERROR_TIMEOUT``. Nothing after the invalid frame is delivered; the
close code and the error stay what they are without the hold.

First the sans-I/O protocol with byte literals, then end to end over sockets in both roles with a
raw peer that writes the message and the invalid frame in one ``write``.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import client_frame, raw_websocket, scaled, wait_for

import wsfast
import wsfast.protocol
from wsfast.constants import HELD_ERROR_TIMEOUT
from wsfast.handshake import accept_key
from wsfast.options import ConnectionOptions
from wsfast.protocol import CLOSING, OPEN, Protocol
from wsfast.sender import frame

ZERO = b"\x00\x00\x00\x00"
# A text frame with RSV1 set and no extension negotiated: a protocol error (1002).
BAD_TO_SERVER = client_frame(b"", 0x1, rsv1=True)
BAD_TO_CLIENT = bytes(frame(b"", 0x1, rsv1=True))


def to_server(text: str) -> bytes:
    return client_frame(text.encode(), 0x1)


def to_client(text: str) -> bytes:
    return bytes(frame(text.encode(), 0x1))


class Held:
    """A Protocol with a backlog predicate under the test's control, and an event list."""

    def __init__(self, is_server: bool, backlog: bool) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.has_backlog = backlog
        self.proto = Protocol(
            is_server=is_server,
            options=ConnectionOptions(generate_mask=lambda: ZERO),
            on_message=lambda data, binary: self.events.append(("message", data)),
            on_error=lambda exc: self.events.append(("error", exc.status_code)),
        )
        self.proto.backlog = lambda: self.has_backlog

    def written(self) -> bytes:
        return b"".join(bytes(chunk) for chunk in self.proto.data_to_send())


def close_code_of(written: bytes, is_server: bool) -> int:
    """The code of the close frame that ends ``written`` (what a side wrote)."""
    assert written[-8 if not is_server else -4] == 0x88, written.hex()
    payload = written[-2:]
    if not is_server:  # the zero mask leaves the payload as is
        assert written[-8:-6] == b"\x88\x82"
    return int(struct.unpack("!H", payload)[0])


ROLES = pytest.mark.parametrize("is_server", [True, False], ids=["server", "client"])


def message_then_bad(is_server: bool, after: bytes = b"") -> bytes:
    if is_server:
        return to_server("hello") + BAD_TO_SERVER + after
    return to_client("hello") + BAD_TO_CLIENT + after


@ROLES
def test_error_behind_a_backlog_is_held(is_server: bool) -> None:
    c = Held(is_server, backlog=True)
    after = to_server("later") if is_server else to_client("later")
    c.proto.receive_data(message_then_bad(is_server, after))
    proto = c.proto
    # The message came out; what followed the invalid frame did not.
    assert c.events == [("message", "hello")]
    assert proto.held is not None and proto.held.status_code == 1002
    assert proto.state is OPEN and proto.error is None and not proto.close_sent
    assert c.written() == b""
    assert proto.timer == HELD_ERROR_TIMEOUT and proto.pending
    assert not proto.eof_due and not proto.abort_due
    # More input is not parsed while the error is held.
    proto.receive_data(after)
    assert c.events == [("message", "hello")]
    # The application answers: allowed, written at once.
    proto.send("re: hello")
    assert b"re: hello" in c.written()
    proto.release()
    assert proto.held is None and proto.error is not None
    assert c.events[-1] == ("error", 1002)
    assert proto.state is CLOSING and proto.close_code == 1002
    assert close_code_of(c.written(), is_server) == 1002
    assert proto.eof_due  # failing half-closes, both roles (RFC 6455 7.1.7)
    proto.release()  # a second call does nothing
    assert c.written() == b"" and c.events[-1] == ("error", 1002) and len(c.events) == 2


@ROLES
def test_error_without_backlog_fails_at_once(is_server: bool) -> None:
    c = Held(is_server, backlog=False)
    c.proto.receive_data(message_then_bad(is_server))
    assert c.proto.held is None
    assert c.events == [("message", "hello"), ("error", 1002)]
    assert close_code_of(c.written(), is_server) == 1002


def test_no_backlog_predicate_fails_at_once() -> None:
    """Without an adapter's predicate (the event API's case) nothing changes."""
    c = Held(True, backlog=True)
    c.proto.backlog = None
    c.proto.receive_data(message_then_bad(True))
    assert c.proto.held is None and c.events[-1] == ("error", 1002)


@ROLES
def test_the_timer_releases_a_stuck_application(is_server: bool) -> None:
    c = Held(is_server, backlog=True)
    c.proto.receive_data(message_then_bad(is_server))
    c.proto.timer = None
    c.proto.expire()  # HELD_ERROR_TIMEOUT ran out
    assert c.proto.held is None and c.events[-1] == ("error", 1002)
    assert close_code_of(c.written(), is_server) == 1002
    # Failing armed the close timer: the next expiry drops the connection as usual.
    assert c.proto.timer is not None and not c.proto.abort_due
    c.proto.expire()
    assert c.proto.abort_due


@ROLES
def test_close_while_held_sends_the_errors_code(is_server: bool) -> None:
    c = Held(is_server, backlog=True)
    c.proto.receive_data(message_then_bad(is_server))
    with pytest.raises(TypeError):
        c.proto.close(999)  # a bad code is still refused first
    assert c.proto.held is not None
    c.proto.close(1000, "bye")
    assert c.proto.close_code == 1002 and c.events[-1] == ("error", 1002)
    assert close_code_of(c.written(), is_server) == 1002


@ROLES
def test_connection_lost_while_held_reports_the_error(is_server: bool) -> None:
    c = Held(is_server, backlog=True)
    c.proto.receive_data(message_then_bad(is_server))
    c.proto.connection_lost()
    assert c.proto.held is None
    assert c.proto.error is not None and c.proto.error.status_code == 1002
    assert c.proto.close_code == 1006  # no close frame went out
    assert c.events[-1] == ("error", 1002)
    assert c.written() == b""


@ROLES
def test_eof_while_held_keeps_the_connection_open_for_answers(is_server: bool) -> None:
    c = Held(is_server, backlog=True)
    c.proto.receive_data(message_then_bad(is_server))
    c.proto.receive_eof()
    assert c.proto.state is OPEN
    c.proto.send("re: hello")
    c.proto.release()
    assert c.proto.state is CLOSING and c.events[-1] == ("error", 1002)


def test_terminate_while_held_drops_and_reports_once() -> None:
    c = Held(True, backlog=True)
    c.proto.receive_data(message_then_bad(True))
    c.proto.terminate()
    assert c.proto.abort_due
    c.proto.expire()  # a timer firing after terminate(): nothing more is written
    assert c.written() == b""
    c.proto.connection_lost()
    assert [e for e in c.events if e[0] == "error"] == [("error", 1002)]


# -- end to end ----------------------------------------------------------------------------------


async def read_client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One masked frame from a client: (opcode, unmasked payload)."""
    b0, b1 = await wait_for(reader.readexactly(2))
    assert b1 & 0x80, "a client masks its frames"
    length = b1 & 0x7F
    if length == 126:
        length = int.from_bytes(await wait_for(reader.readexactly(2)), "big")
    key = await wait_for(reader.readexactly(4))
    data = await wait_for(reader.readexactly(length))
    return b0 & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(data))


@pytest.fixture
async def raw_server() -> AsyncIterator[Any]:
    """A raw WebSocket server: accepts one upgrade, then writes and reads frames by hand."""
    peers: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        key = next(
            line.split(":", 1)[1].strip()
            for line in head.split("\r\n")
            if line.lower().startswith("sec-websocket-key:")
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept_key(key).encode()
            + b"\r\n\r\n"
        )
        await peers.put((reader, writer))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server, peers
    server.close()


async def answering_handler(ws: wsfast.WebSocket, answered: list[str]) -> None:
    async for message in ws:
        await asyncio.sleep(0.05)  # the answer takes a moment: the error is already parsed
        await ws.send(f"re: {message}")
        answered.append(str(message))


async def test_server_answers_the_message_before_the_invalid_frame(raw_peer: Any) -> None:
    answered: list[str] = []
    ended: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def handler(ws: wsfast.WebSocket, request: Any) -> None:
        try:
            await answering_handler(ws, answered)
        except wsfast.ConnectionClosed as exc:
            ended.set_result(exc)
            raise
        ended.set_result(None)

    async with wsfast.serve(handler, "127.0.0.1", 0, close_timeout=scaled(1.0)) as server:
        peer = await raw_websocket(raw_peer, server)
        peer.write(to_server("one") + to_server("two") + BAD_TO_SERVER + to_server("after"))
        assert (await peer.read_frame())[1:] == (0x1, b"re: one")
        assert (await peer.read_frame())[1:] == (0x1, b"re: two")
        assert (await peer.read_frame())[1:] == (0x8, struct.pack("!H", 1002))
        assert await peer.at_eof()
        exc = await wait_for(ended)
        assert isinstance(exc, wsfast.ConnectionClosed) and exc.code == 1002
        assert isinstance(exc.__cause__, wsfast.WebSocketError)
        assert exc.__cause__.status_code == 1002
        assert answered == ["one", "two"]  # "after" was never delivered
        peer.close()


async def test_client_answers_the_message_before_the_invalid_frame(raw_server: Any) -> None:
    server, peers = raw_server
    port = server.sockets[0].getsockname()[1]
    answered: list[str] = []

    async def client() -> BaseException | None:
        async with wsfast.connect(f"ws://127.0.0.1:{port}", per_message_deflate=False) as ws:
            try:
                await answering_handler(ws, answered)
            except wsfast.ConnectionClosed as exc:
                return exc
        return None

    task = asyncio.ensure_future(client())
    reader, writer = await wait_for(peers.get())
    writer.write(to_client("one") + BAD_TO_CLIENT + to_client("after"))
    assert await read_client_frame(reader) == (0x1, b"re: one")
    assert await read_client_frame(reader) == (0x8, struct.pack("!H", 1002))
    writer.close()
    exc = await wait_for(task)
    assert isinstance(exc, wsfast.ConnectionClosed) and exc.code == 1002
    assert answered == ["one"]


async def test_a_stuck_handler_does_not_hold_the_error_forever(
    raw_peer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wsfast.protocol, "HELD_ERROR_TIMEOUT", scaled(0.3))
    took = asyncio.Event()

    async def handler(ws: wsfast.WebSocket, request: Any) -> None:
        await ws.recv()
        took.set()
        await asyncio.sleep(60)  # never asks again, never answers

    loop = asyncio.get_running_loop()
    async with wsfast.serve(handler, "127.0.0.1", 0, close_timeout=scaled(1.0)) as server:
        peer = await raw_websocket(raw_peer, server)
        peer.write(to_server("one") + BAD_TO_SERVER)
        await wait_for(took.wait())
        started = loop.time()
        assert (await peer.read_frame())[1:] == (0x8, struct.pack("!H", 1002))
        assert loop.time() - started >= 0.2
        peer.close()


async def test_error_with_nothing_to_answer_fails_at_once(raw_peer: Any) -> None:
    """A handler already waiting for the next message (nothing taken): no hold."""
    waiting = asyncio.Event()

    async def handler(ws: wsfast.WebSocket, request: Any) -> None:
        waiting.set()
        async for _ in ws:
            pass

    async with wsfast.serve(handler, "127.0.0.1", 0, close_timeout=scaled(1.0)) as server:
        peer = await raw_websocket(raw_peer, server)
        await wait_for(waiting.wait())
        await asyncio.sleep(0.02)
        peer.write(BAD_TO_SERVER)
        assert (await peer.read_frame())[1:] == (0x8, struct.pack("!H", 1002))
        peer.close()


async def test_event_api_is_unchanged(raw_peer: Any, echo_server: wsfast.WebSocketServer) -> None:
    """A 'message' listener answers synchronously: the error fails the connection at once."""
    peer = await raw_websocket(raw_peer, echo_server)
    peer.write(to_server("one") + BAD_TO_SERVER + to_server("after"))
    assert (await peer.read_frame())[1:] == (0x1, b"one")
    assert (await peer.read_frame())[1:] == (0x8, struct.pack("!H", 1002))
    assert await peer.at_eof()

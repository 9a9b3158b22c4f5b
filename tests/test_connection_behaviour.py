"""Issue 8's connection behaviours, end to end over 127.0.0.1 sockets.

Each peer that misbehaves is a raw socket driven byte by byte: a raw server that completes the
opening handshake by hand for the client role (the client's frames are unmasked to read them),
a raw client (:func:`conftest.raw_websocket`) for the server role. What is checked is what
reaches the wire (the close frame's code, the half-close, or nothing at all when the
connection is terminated) and what the application sees (``'error'``, ``'close'``,
``close_code``, ``ConnectionClosed``). The comparisons with node's ws 8.23 are in
``test_interop_connection.py``, which reuses the raw peers defined here.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import os
import socket
import struct
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    MASK,
    MakeClient,
    MakeServer,
    RawPeer,
    Recorder,
    client_frame,
    raw_websocket,
    scaled,
    until,
    url_of,
    wait_for,
)

import wsfast
from wsfast import ConnectionClosed, WebSocket, WebSocketError, WebSocketServer, handshake
from wsfast.sender import frame

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA

#: A kernel receive buffer small enough that a flooding peer's window closes after a few KiB
#: (Linux doubles it and keeps a floor of about 2 KiB).
SMALL_RCVBUF = 4096


# -- frames on the wire ---------------------------------------------------------------------------


def server_frame(data: bytes, opcode: int, *, fin: bool = True, masked: bool = False) -> bytes:
    """A server-to-client frame (unmasked, unless ``masked`` breaks the rule on purpose)."""
    return bytes(frame(data, opcode, fin=fin, mask=MASK if masked else None))


def parse_frames(data: bytes) -> tuple[list[tuple[int, bool, bytes]], bytes]:
    """Every complete frame in ``data`` as (opcode, was masked, unmasked payload), and the
    incomplete rest."""
    frames: list[tuple[int, bool, bytes]] = []
    pos = 0
    while len(data) - pos >= 2:
        b0, b1 = data[pos], data[pos + 1]
        length, head = b1 & 0x7F, 2
        if length == 126:
            if len(data) - pos < 4:
                break
            length, head = struct.unpack_from("!H", data, pos + 2)[0], 4
        elif length == 127:
            if len(data) - pos < 10:
                break
            length, head = struct.unpack_from("!Q", data, pos + 2)[0], 10
        masked = bool(b1 & 0x80)
        key = data[pos + head : pos + head + 4] if masked else b""
        start = pos + head + len(key)
        if len(data) < start + length:
            break
        payload = data[start : start + length]
        if masked:
            payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
        frames.append((b0 & 0x0F, masked, payload))
        pos = start + length
    return frames, data[pos:]


def close_code_of(payload: bytes) -> int | None:
    """The status code of a close frame's payload (None when it has none)."""
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def fragmented(
    count: int, size: int, opcode: int = OP_BINARY, *, masked: bool = True
) -> tuple[bytes, bytes]:
    """One message in ``count`` data frames of ``size`` bytes: (the frames, the message)."""
    message = bytes(i % 251 for i in range(size)) * count
    chunk = message[:size]
    make = client_frame if masked else server_frame
    parts = [make(chunk, opcode if i == 0 else 0, fin=i == count - 1) for i in range(count)]
    return b"".join(parts), message


# -- a raw server for the client role ----------------------------------------------------------


def switching_protocols(head: bytes) -> bytes:
    """The 101 answer to a raw request head (no subprotocol, no extension)."""
    key = ""
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {handshake.accept_key(key)}\r\n\r\n"
    ).encode()


@dataclass
class RawSession:
    """What one client did on a :func:`raw_server` connection."""

    request: bytes = b""
    received: bytearray = field(default_factory=bytearray)
    #: The client half-closed (EOF) after its close frame, before the server closed.
    eof: bool = False
    #: The connection was reset (or aborted) rather than closed with FIN.
    reset: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def frames(self) -> list[tuple[int, bool, bytes]]:
        return parse_frames(bytes(self.received))[0]

    def close_frames(self) -> list[tuple[int, bool, bytes]]:
        return [f for f in self.frames() if f[0] == OP_CLOSE]


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, RawSession], Awaitable[None]]


def sends(data: bytes, linger: float = 2.0) -> Script:
    """A script: write ``data`` after the 101, then record what the client sends until its
    close frame, then wait up to ``linger`` s for its EOF before closing."""

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: RawSession
    ) -> None:
        writer.write(data)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + scaled(10.0)
        closed_at: float | None = None
        while True:
            timeout = deadline - loop.time()
            if closed_at is not None:
                timeout = min(timeout, closed_at + scaled(linger) - loop.time())
            if timeout <= 0:
                return
            try:
                chunk = await asyncio.wait_for(reader.read(65536), timeout)
            except asyncio.TimeoutError:
                return
            if not chunk:
                session.eof = True
                return
            session.received += chunk
            if closed_at is None and session.close_frames():
                closed_at = loop.time()

    return script


@asynccontextmanager
async def raw_server(
    script: Script, *, rcvbuf: int | None = None
) -> AsyncIterator[tuple[str, list[RawSession]]]:
    """A raw WebSocket server on 127.0.0.1: completes each handshake by hand, then runs
    ``script``; yields (its URL, the sessions so far)."""
    sessions: list[RawSession] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = RawSession()
        sessions.append(session)
        try:
            session.request = await wait_for(reader.readuntil(b"\r\n\r\n"))
            writer.write(switching_protocols(session.request))
            await script(reader, writer, session)
        except (ConnectionError, asyncio.IncompleteReadError):
            session.reset = True
        finally:
            session.done.set()
            writer.close()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf is not None:
        # Set on the listening socket so accepted sockets inherit it before the window is
        # advertised (tcp(7)).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind(("127.0.0.1", 0))
    server = await asyncio.start_server(handler, sock=sock)
    port = sock.getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/", sessions
    finally:
        server.close()
        await server.wait_closed()


async def one_session(sessions: list[RawSession]) -> RawSession:
    await until(lambda: bool(sessions))
    session = sessions[0]
    await wait_for(session.done.wait(), 15.0)
    return session


# -- a raw client with a small receive buffer ---------------------------------------------------


async def small_window_websocket(
    address: tuple[str, int], path: str = "/", rcvbuf: int | None = SMALL_RCVBUF
) -> RawPeer:
    """A raw client (whose receive buffer is tiny unless ``rcvbuf`` is None), after a
    completed opening handshake with the server at ``address``."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await wait_for(loop.sock_connect(sock, address))
    reader, writer = await asyncio.open_connection(sock=sock)
    peer = RawPeer(reader, writer)
    key = base64.b64encode(os.urandom(16)).decode()
    peer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    status, _, _ = await peer.read_head()
    assert status == 101
    return peer


#: 200 pings of 125 bytes in one write: far over the cap of 60 pending automatic pongs.
PING = client_frame(b"p" * 125, OP_PING)


async def flood(
    writer: asyncio.StreamWriter,
    ping: bytes,
    stop: Callable[[], bool],
    limit: int = 400_000,
    batch: int = 200,
    pause: float = 0.0,
) -> int:
    """Write pings, ``batch`` per write (``pause`` s apart), until ``stop()``, the peer is
    gone, or ``limit`` pings were written; returns how many were written."""
    data = ping * batch
    sent = 0
    while sent < limit and not stop():
        try:
            writer.write(data)
            await asyncio.wait_for(writer.drain(), scaled(0.5))
        except asyncio.TimeoutError:
            # The peer stopped reading; this batch waits in our buffer and will arrive.
            return sent + batch
        except ConnectionError:
            break  # the peer dropped us
        sent += batch
        if pause:
            await asyncio.sleep(pause)
    return sent


async def read_all(reader: asyncio.StreamReader, seconds: float = 5.0) -> tuple[bytes, bool]:
    """Read until EOF or reset: (what was read, whether it ended with a reset)."""
    out = bytearray()
    try:
        while True:
            chunk = await wait_for(reader.read(1 << 20), seconds)
            if not chunk:
                return bytes(out), False
            out += chunk
    except (ConnectionError, OSError):
        return bytes(out), True


async def accept_one(server: WebSocketServer) -> asyncio.Future[WebSocket]:
    """The first connection ``server`` accepts from now on."""
    accepted: asyncio.Future[WebSocket] = asyncio.get_running_loop().create_future()

    def on_connection(ws: WebSocket, request: wsfast.Request) -> None:
        if not accepted.done():
            accepted.set_result(ws)

    server.on("connection", on_connection)
    return accepted


# == 1. the client fails the connection on a server's protocol error ==========================

CLIENT_ERRORS = [
    pytest.param(server_frame(b"", 0x3), {}, 1002, "WS_ERR_INVALID_OPCODE", id="bad-opcode-1002"),
    pytest.param(
        server_frame(b"hi", OP_TEXT, masked=True),
        {},
        1002,
        "WS_ERR_UNEXPECTED_MASK",
        id="masked-server-frame-1002",
    ),
    pytest.param(
        server_frame(b"x" * 17, OP_BINARY),
        {"max_payload": 16},
        1009,
        "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH",
        id="over-max-payload-1009",
    ),
]


@pytest.mark.parametrize(("bad", "options", "code", "error"), CLIENT_ERRORS)
async def test_client_fails_on_server_protocol_error(
    bad: bytes, options: dict[str, Any], code: int, error: str
) -> None:
    async with raw_server(sends(bad)) as (url, sessions):
        ws = WebSocket(url, per_message_deflate=False, close_timeout=scaled(5.0), **options)
        events = Recorder(ws, "error", "close")
        await wait_for(ws.wait_open())
        session = await one_session(sessions)
        await events.wait("close")
    closes = session.close_frames()
    assert len(closes) == 1, session.frames()
    assert closes[0][1], "a client's close frame is masked"
    assert close_code_of(closes[0][2]) == code
    assert session.frames()[-1][0] == OP_CLOSE, "nothing after the close frame"
    assert session.eof, "the client half-closes after its close frame"
    assert events.names() == ["error", "close"]
    (exc,) = events.of("error")[0]
    assert isinstance(exc, WebSocketError)
    assert (exc.code, exc.status_code) == (error, code)
    # wsfast reports the code it sent; node's ws reports 1006 here (test_interop_connection).
    assert events.of("close") == [(code, "")]
    assert ws.close_code == code
    assert not ws.was_clean


# == 2. the server fails the connection on a client's protocol error ==========================

SERVER_ERRORS = [
    pytest.param(
        bytes(frame(b"hi", OP_TEXT)), {}, 1002, "WS_ERR_EXPECTED_MASK", id="unmasked-1002"
    ),
    pytest.param(
        client_frame(b"x" * 17, OP_BINARY),
        {"max_payload": 16},
        1009,
        "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH",
        id="over-max-payload-1009",
    ),
    pytest.param(
        client_frame(b"ok \xff", OP_TEXT), {}, 1007, "WS_ERR_INVALID_UTF8", id="bad-utf8-1007"
    ),
]


@pytest.mark.parametrize(("bad", "options", "code", "error"), SERVER_ERRORS)
async def test_server_fails_on_client_protocol_error(
    make_server: MakeServer,
    raw_peer: Callable[..., Awaitable[RawPeer]],
    bad: bytes,
    options: dict[str, Any],
    code: int,
    error: str,
) -> None:
    server = await make_server(**options)
    accepted = await accept_one(server)
    peer = await raw_websocket(raw_peer, server)
    ws = await wait_for(accepted)
    events = Recorder(ws, "error", "close")
    peer.write(bad)
    b0, opcode, payload = await peer.read_frame()
    assert (b0, opcode) == (0x88, OP_CLOSE)
    assert close_code_of(payload) == code
    data, reset = await read_all(peer.reader)
    assert (data, reset) == (b"", False), "the server half-closes after its close frame"
    peer.close()
    await events.wait("close")
    assert events.names() == ["error", "close"]
    (exc,) = events.of("error")[0]
    assert (exc.code, exc.status_code) == (error, code)
    assert events.of("close") == [(code, "")]
    assert ws.close_code == code


# == 3. max_fragments ============================================================================


async def test_server_max_fragments_exceeded_1008(
    make_server: MakeServer, raw_peer: Callable[..., Awaitable[RawPeer]]
) -> None:
    server = await make_server(max_fragments=4)
    accepted = await accept_one(server)
    peer = await raw_websocket(raw_peer, server)
    ws = await wait_for(accepted)
    events = Recorder(ws, "message", "error", "close")
    four, message = fragmented(4, 8)
    peer.write(four)  # exactly the limit: accepted (ws counts every data frame, the last too)
    await events.wait("message")
    assert events.of("message") == [(message, True)]
    peer.write(fragmented(5, 8)[0])
    b0, opcode, payload = await peer.read_frame()
    assert opcode == OP_CLOSE and close_code_of(payload) == 1008
    await peer.at_eof()
    peer.close()
    await events.wait("close")
    (exc,) = events.of("error")[0]
    assert (exc.code, exc.status_code) == ("WS_ERR_TOO_MANY_BUFFERED_PARTS", 1008)
    assert events.of("close") == [(1008, "")]


async def test_client_max_fragments_exceeded_1008() -> None:
    four, message = fragmented(4, 8, masked=False)
    five = fragmented(5, 8, masked=False)[0]
    async with raw_server(sends(four + five)) as (url, sessions):
        ws = WebSocket(url, per_message_deflate=False, max_fragments=4)
        events = Recorder(ws, "message", "error", "close")
        session = await one_session(sessions)
        await events.wait("close")
    assert events.of("message") == [(message, True)]
    (close,) = session.close_frames()
    assert close_code_of(close[2]) == 1008
    (exc,) = events.of("error")[0]
    assert (exc.code, exc.status_code) == ("WS_ERR_TOO_MANY_BUFFERED_PARTS", 1008)
    assert events.of("close") == [(1008, "")]
    assert ws.close_code == 1008


async def test_default_has_no_fragment_limit(
    make_server: MakeServer, raw_peer: Callable[..., Awaitable[RawPeer]]
) -> None:
    # Autobahn 9.3.x/9.4.x: 4 MiB in 65536 fragments of 64 bytes is a legitimate message.
    # (node's ws refuses it by default: maxFragments=16384, see test_interop_connection.py)
    server = await make_server()
    assert server.options.max_fragments == 0
    accepted = await accept_one(server)
    peer = await raw_websocket(raw_peer, server)
    ws = await wait_for(accepted)
    frames, message = fragmented(65536, 64)
    assert len(message) == 4 * 1024 * 1024
    peer.write(frames)
    got = await wait_for(ws.recv(), 30.0)
    assert got == message
    assert ws.ready_state == WebSocket.OPEN


async def test_client_default_has_no_fragment_limit() -> None:
    frames, message = fragmented(65536, 64, masked=False)
    async with raw_server(sends(frames)) as (url, sessions):
        ws = await wait_for(wsfast.connect(url, per_message_deflate=False))
        assert ws.options.max_fragments == 0
        try:
            assert await wait_for(ws.recv(), 30.0) == message
            assert ws.ready_state == WebSocket.OPEN
        finally:
            ws.terminate()


# == 4. max_pending_auto_pongs ====================================================================


#: How a flooder writes its pings: 200 in one write (over the cap within one read, as in ws,
#: whose pong callbacks run only after the read is parsed), or 20 per write, which stays under
#: the cap until the pongs stop being written (the kernel buffers are full).
FLOODS = [
    pytest.param(200, 0.0, id="burst"),
    pytest.param(20, 0.001, id="trickle-until-buffers-fill"),
]


@pytest.mark.parametrize(("batch", "pause"), FLOODS)
async def test_server_terminates_ping_flooder(
    make_server: MakeServer, batch: int, pause: float
) -> None:
    server = await make_server()
    assert server.options.max_pending_auto_pongs == 60
    accepted = await accept_one(server)
    peer = await small_window_websocket(server.address())
    ws = await wait_for(accepted)
    events = Recorder(ws, "error", "close")
    pings = Recorder(ws, "ping")
    sent = await wait_for(
        flood(peer.writer, PING, lambda: ws.ready_state == WebSocket.CLOSED, 400_000, batch, pause),
        60.0,
    )
    if batch < 60:
        # Several reads went by before the cap was hit: the pongs had piled up unwritten.
        assert pings.count("ping") > 3 * batch, (sent, pings.count("ping"))
    await events.wait("close", seconds=10.0)
    assert events.names() == ["close"], "terminated: no 'error'"
    assert events.of("close") == [(1006, "")]
    assert ws.close_code == 1006
    data, _ = await read_all(peer.reader)
    frames, _ = parse_frames(data)
    assert OP_CLOSE not in {f[0] for f in frames}, "terminated without a close frame"
    assert {f[0] for f in frames} <= {OP_PONG}
    assert pings.count("ping") <= sent
    peer.close()


@pytest.mark.parametrize(("batch", "pause"), FLOODS)
async def test_client_terminates_ping_flooder(batch: int, pause: float) -> None:
    ping = server_frame(b"p" * 125, OP_PING)

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: RawSession
    ) -> None:
        await flood(writer, ping, lambda: False, 200_000, batch, pause)
        data, session.reset = await read_all(reader)
        session.received += data

    async with raw_server(script, rcvbuf=SMALL_RCVBUF) as (url, sessions):
        ws = WebSocket(url, per_message_deflate=False)
        events = Recorder(ws, "error", "close")
        await events.wait("close", seconds=30.0)
        session = await one_session(sessions)
    assert events.names() == ["close"]
    assert events.of("close") == [(1006, "")]
    assert ws.close_code == 1006
    kinds = {f[0] for f in session.frames()}
    assert OP_CLOSE not in kinds and kinds <= {OP_PONG}


async def test_auto_pong_off_never_terminates(
    make_server: MakeServer, raw_peer: Callable[..., Awaitable[RawPeer]]
) -> None:
    # ws counts only automatic pongs: without them a ping burst is just 'ping' events.
    server = await make_server(auto_pong=False)
    accepted = await accept_one(server)
    peer = await raw_websocket(raw_peer, server)
    ws = await wait_for(accepted)
    pings = Recorder(ws, "ping")
    peer.write(PING * 500)
    await pings.wait("ping", 500)
    assert ws.ready_state == WebSocket.OPEN
    peer.write(client_frame(b"after", OP_TEXT))
    assert await wait_for(ws.recv()) == "after"
    ws.send("done")
    _, opcode, payload = await peer.read_frame()  # no pong came before this
    assert (opcode, payload) == (OP_TEXT, b"done")
    peer.close()


async def test_reading_peer_pinging_in_small_batches_is_not_terminated(
    make_server: MakeServer, raw_peer: Callable[..., Awaitable[RawPeer]]
) -> None:
    server = await make_server()
    accepted = await accept_one(server)
    peer = await raw_websocket(raw_peer, server)
    ws = await wait_for(accepted)
    for _ in range(30):  # 600 pings, 20 at a time, each batch's pongs read before the next
        peer.write(PING * 20)
        for _ in range(20):
            _, opcode, payload = await peer.read_frame()
            assert (opcode, payload) == (OP_PONG, b"p" * 125)
    assert ws.ready_state == WebSocket.OPEN
    peer.close()


async def test_max_pending_auto_pongs_zero_pauses_reading_instead(
    make_server: MakeServer,
) -> None:
    server = await make_server(max_pending_auto_pongs=0)
    accepted = await accept_one(server)
    peer = await small_window_websocket(server.address())
    ws = await wait_for(accepted)
    pings = Recorder(ws, "ping")
    highest = 0

    def watch() -> bool:
        nonlocal highest
        highest = max(highest, ws.buffered_amount)
        return False

    # Flood until the server stops reading (our writes stall): a few MiB on loopback.
    sent = await wait_for(flood(peer.writer, PING, watch, limit=100_000), 60.0)
    assert sent < 100_000, "the server never stopped reading"
    await asyncio.sleep(scaled(0.2))
    watch()
    assert ws.ready_state == WebSocket.OPEN
    assert ws.transport is not None and not ws.transport.is_reading()
    # Bounded: at most one read's worth of pongs (a read of 256 KiB holds ~2000 pings) over
    # the transport's high-water mark.
    assert highest < 1024 * 1024, highest
    # Reading the pongs lets the server resume; every ping gets its pong.
    received = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(30.0)
    rest = b""
    while received < sent:
        assert loop.time() < deadline, (sent, pings.count("ping"), received)
        rest += await wait_for(peer.reader.read(1 << 20))
        frames, rest = parse_frames(rest)
        received += sum(1 for f in frames if f[0] == OP_PONG)
        watch()
    assert received == sent
    assert ws.ready_state == WebSocket.OPEN
    assert highest < 1024 * 1024, highest
    peer.close()


async def test_client_max_pending_auto_pongs_zero_pauses_reading_instead() -> None:
    ping = server_frame(b"p" * 125, OP_PING)
    box: dict[str, int] = {}
    highest = 0

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: RawSession
    ) -> None:
        # Flood until the client stops reading, then read every pong.
        sent = box["sent"] = await flood(writer, ping, lambda: False, 100_000)
        await until(lambda: "paused" in box, 10.0)
        received = 0
        rest = b""
        while received < sent:
            rest += await wait_for(reader.read(1 << 20))
            frames, rest = parse_frames(rest)
            received += sum(1 for f in frames if f[0] == OP_PONG and f[1])
        box["received"] = received
        while not any(f[0] == OP_CLOSE for f in frames):  # the client's close: echo it
            rest += await wait_for(reader.read(1 << 20))
            frames, rest = parse_frames(rest)
        writer.write(server_frame(struct.pack("!H", 1000), OP_CLOSE))

    async with raw_server(script, rcvbuf=SMALL_RCVBUF) as (url, sessions):
        ws = WebSocket(url, per_message_deflate=False, max_pending_auto_pongs=0)
        await wait_for(ws.wait_open())
        await until(lambda: "sent" in box, 60.0)
        assert box["sent"] < 100_000, "the client never stopped reading"
        await asyncio.sleep(scaled(0.2))
        assert ws.ready_state == WebSocket.OPEN
        assert ws.transport is not None and not ws.transport.is_reading()
        highest = ws.buffered_amount
        box["paused"] = 1

        def watch() -> bool:
            nonlocal highest
            highest = max(highest, ws.buffered_amount)
            return "received" in box

        await until(watch, 30.0)
        assert box["received"] == box["sent"]
        assert ws.ready_state == WebSocket.OPEN
        assert highest < 1024 * 1024, highest
        await wait_for(ws.close(1000))
    assert ws.close_code == 1000


# == 5. options are validated when built ==========================================================


async def test_binary_type_nonsense_refused_everywhere(
    make_server: MakeServer, make_client: MakeClient, echo_server: WebSocketServer
) -> None:
    url = url_of(echo_server)
    with pytest.raises(ValueError, match="binary_type"):
        WebSocket(url, binary_type="nonsense")
    with pytest.raises(ValueError, match="binary_type"):
        await wait_for(wsfast.connect(url, binary_type="nonsense"))
    with pytest.raises(ValueError, match="binary_type"):
        WebSocketServer(port=0, host="127.0.0.1", binary_type="nonsense")
    with pytest.raises(ValueError, match="binary_type"):
        async with wsfast.serve(None, "127.0.0.1", 0, binary_type="nonsense"):
            pass  # pragma: no cover
    ws = await make_client(url)
    with pytest.raises(ValueError, match="binary_type"):
        ws.binary_type = "nonsense"
    assert ws.binary_type == "bytes"
    ws.binary_type = "bytearray"
    ws.send(b"\x01\x02")
    assert await wait_for(ws.recv()) == bytearray(b"\x01\x02")


def test_connect_and_serve_calls_refuse_bad_options_at_once() -> None:
    with pytest.raises(ValueError):
        wsfast.connect("ws://127.0.0.1:9/", binary_type="nonsense")
    with pytest.raises(ValueError):
        wsfast.serve(None, "127.0.0.1", 0, binary_type="nonsense")


@pytest.mark.parametrize(
    ("options", "exc"),
    [
        pytest.param({"max_payload": "x"}, TypeError, id="max_payload-str"),
        pytest.param({"max_payload": -1}, ValueError, id="max_payload-negative"),
        pytest.param({"close_timeout": -1}, ValueError, id="close_timeout-negative"),
        pytest.param({"close_timeout": "1"}, TypeError, id="close_timeout-str"),
        pytest.param({"max_fragments": 1.5}, TypeError, id="max_fragments-float"),
        pytest.param({"max_pending_auto_pongs": -1}, ValueError, id="max_pending-negative"),
        pytest.param({"per_message_deflate": "yes"}, TypeError, id="deflate-str"),
    ],
)
async def test_wrong_option_types_refused(options: dict[str, Any], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        WebSocket("ws://127.0.0.1:9/", **options)
    with pytest.raises(exc):
        await wait_for(wsfast.connect("ws://127.0.0.1:9/", **options))
    with pytest.raises(exc):
        WebSocketServer(port=0, host="127.0.0.1", **options)
    with pytest.raises(exc):
        async with wsfast.serve(None, "127.0.0.1", 0, **options):
            pass  # pragma: no cover


@pytest.mark.parametrize(
    "protocols",
    [pytest.param(["chat", "chat"], id="duplicate"), pytest.param(["a b"], id="not-a-token")],
)
async def test_bad_protocols_refused(protocols: list[str]) -> None:
    with pytest.raises(ValueError, match="subprotocol"):
        WebSocket("ws://127.0.0.1:9/", protocols)
    with pytest.raises(ValueError, match="subprotocol"):
        await wait_for(wsfast.connect("ws://127.0.0.1:9/", protocols=protocols))


async def test_mapping_proxy_deflate_options_on_both_sides(make_server: MakeServer) -> None:
    server = await make_server(
        per_message_deflate=types.MappingProxyType({"server_no_context_takeover": True})
    )
    accepted = await accept_one(server)
    heads: list[list[str]] = []
    server.on("headers", lambda headers, request: heads.append(list(headers)))
    ws = wsfast.WebSocket(
        url_of(server),
        per_message_deflate=types.MappingProxyType({"client_max_window_bits": 10}),
    )
    try:
        await wait_for(ws.wait_open())
        other = await wait_for(accepted)
        answer = [h for h in heads[0] if h.lower().startswith("sec-websocket-extensions")]
        assert len(answer) == 1
        assert "server_no_context_takeover" in answer[0]
        assert "client_max_window_bits=10" in answer[0]
        params = ws.extension_params["permessage-deflate"]
        assert params.get("server_no_context_takeover") is True
        assert params.get("client_max_window_bits") == 10
        assert other.extension_params["permessage-deflate"] == params
        ws.send("x" * 5000)
        assert await wait_for(other.recv()) == "x" * 5000
    finally:
        ws.terminate()


# == 6. typed signatures ==========================================================================

_MYPY_BAD = """
import wsfast

async def main(url: str) -> None:
    await wsfast.connect(url, max_paylod=1)
    await wsfast.connect(url, max_payload="x")
    async def handler(ws: wsfast.WebSocket, request: wsfast.Request) -> None: ...
    async with wsfast.serve(handler, "127.0.0.1", 0, backlg=1):
        pass
"""

_MYPY_GOOD = """
import wsfast

async def main(url: str) -> None:
    async with wsfast.connect(url, max_payload=1024, protocols=["chat"]) as ws:
        await ws.send("x")
        msg: str | bytes = await ws.recv()
        async for message in ws:
            print(message, msg)
        ws.on("message", lambda data, is_binary: None)
    async def handler(ws: wsfast.WebSocket, request: wsfast.Request) -> None:
        await ws.send(await ws.recv())
    async with wsfast.serve(handler, "127.0.0.1", 0, backlog=1, max_payload=1) as server:
        await server.serve_forever()
"""


def test_signatures_are_checked_by_mypy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mypy import api

    # mypy ignores PYTHONPATH: point it at the wsfast under test, not an installed one.
    monkeypatch.setenv("MYPYPATH", str(Path(wsfast.__file__).resolve().parents[1]))

    (tmp_path / "bad").mkdir()
    (tmp_path / "good").mkdir()
    (tmp_path / "bad" / "user_bad.py").write_text(_MYPY_BAD)
    (tmp_path / "good" / "user_good.py").write_text(_MYPY_GOOD)
    common = ["--strict", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary"]
    out, err, status = api.run([*common, str(tmp_path / "bad")])
    assert status == 1, (out, err)
    lines = out.splitlines()
    assert any('"max_paylod"' in line and ":5:" in line for line in lines), out
    assert any("max_payload" in line and ":6:" in line for line in lines), out
    assert any('"backlg"' in line and ":8:" in line for line in lines), out
    assert len([line for line in lines if ": error:" in line]) == 3, out
    out, err, status = api.run([*common, str(tmp_path / "good")])
    assert status == 0, (out, err)


# == 7. the asyncio API ===========================================================================


async def test_recv_and_async_for_refused_with_message_listener(
    make_client: MakeClient, echo_server: WebSocketServer
) -> None:
    ws = await make_client(url_of(echo_server))
    ws.on("message", lambda data, is_binary: None)
    with pytest.raises(RuntimeError, match="listener"):
        await wait_for(ws.recv(), 1.0)
    with pytest.raises(RuntimeError, match="listener"):
        async for _ in ws:
            pass  # pragma: no cover


async def test_pending_recv_fails_when_message_listener_attached(
    make_client: MakeClient, echo_server: WebSocketServer
) -> None:
    ws = await make_client(url_of(echo_server))
    pending = asyncio.ensure_future(ws.recv())
    await asyncio.sleep(scaled(0.02))
    got: list[Any] = []
    ws.on("message", lambda data, is_binary: got.append(data))
    ws.send("hello")
    await until(lambda: got == ["hello"])
    try:
        with pytest.raises(RuntimeError, match="listener"):
            await wait_for(pending, 1.0)
    finally:
        pending.cancel()


async def test_protocol_error_surfaces_as_connection_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with raw_server(sends(server_frame(b"", 0x3))) as (url, sessions):
        ws = await wait_for(wsfast.connect(url, per_message_deflate=False))
        assert ws.close_code is None  # OPEN
        with pytest.raises(ConnectionClosed) as info:
            await wait_for(ws.recv())
        await wait_for(ws.wait_closed())
    assert info.value.code == 1002
    cause = info.value.__cause__
    assert isinstance(cause, WebSocketError)
    assert (cause.code, cause.status_code) == ("WS_ERR_INVALID_OPCODE", 1002)
    assert ws.close_code == 1002
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == [], [r.getMessage() for r in loud]
    with pytest.raises(ConnectionClosed) as again:
        await ws.send("x")
    assert again.value.__cause__ is cause


async def test_serve_handler_sees_protocol_error_quietly(
    caplog: pytest.LogCaptureFixture, raw_peer: Callable[..., Awaitable[RawPeer]]
) -> None:
    caplog.set_level(logging.DEBUG)
    outcome: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def handler(ws: WebSocket, request: wsfast.Request) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed as exc:
            outcome.set_result(exc)
            raise

    async with wsfast.serve(handler, "127.0.0.1", 0, close_timeout=scaled(2.0)) as server:
        peer = await raw_websocket(raw_peer, server)
        peer.write(client_frame(b"\xff", OP_TEXT))
        _, opcode, payload = await peer.read_frame()
        assert (opcode, close_code_of(payload)) == (OP_CLOSE, 1007)
        exc = await wait_for(outcome)
        peer.close()
    assert isinstance(exc, ConnectionClosed) and exc.code == 1007
    cause = exc.__cause__
    assert isinstance(cause, WebSocketError) and cause.code == "WS_ERR_INVALID_UTF8"
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == [], [r.getMessage() for r in loud]


async def test_close_code_none_until_closed(
    make_client: MakeClient, make_server: MakeServer
) -> None:
    server = await make_server()
    accepted = await accept_one(server)
    ws = await make_client(url_of(server))
    other = await wait_for(accepted)
    assert ws.ready_state == WebSocket.OPEN and ws.close_code is None
    other.pause()  # the server does not answer the close frame yet
    ws.close(4000, "bye")
    assert ws.ready_state == WebSocket.CLOSING and ws.close_code is None
    await asyncio.sleep(scaled(0.05))
    assert ws.ready_state == WebSocket.CLOSING and ws.close_code is None
    other.resume()
    await wait_for(ws.wait_closed())
    assert ws.close_code == 4000
    # The server's side ends when the client's FIN arrives, after the client's 'close'.
    await wait_for(other.wait_closed())
    assert other.close_code == 4000


@pytest.mark.parametrize(
    "sending", [False, True], ids=["in-async-for", "sending-under-backpressure"]
)
async def test_serve_async_handler_quiet_when_clients_vanish(
    caplog: pytest.LogCaptureFixture, sending: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda loop, context: unhandled.append(context))
    entered = 0
    finished = 0
    try:

        async def handler(ws: WebSocket, request: wsfast.Request) -> None:
            nonlocal entered, finished
            entered += 1
            try:
                async for message in ws:
                    await ws.send(message)
                    while sending:  # until the peer is gone: ConnectionClosed
                        await ws.send(b"x" * 1_000_000)
            finally:
                finished += 1

        async with wsfast.serve(handler, "127.0.0.1", 0, close_timeout=scaled(2.0)) as server:
            for _ in range(5):
                ws = await wait_for(wsfast.connect(url_of(server), per_message_deflate=False))
                await ws.send("hello")
                assert await wait_for(ws.recv()) == "hello"
                if sending:
                    ws.pause()  # the server's writes back up
                    await asyncio.sleep(scaled(0.1))
                transport = ws.transport
                assert transport is not None
                sock = transport.get_extra_info("socket")
                # An abrupt reset (RST), as when a client's host vanishes.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            await until(lambda: finished == 5)
            assert entered == 5
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert unhandled == []
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert loud == [], [r.getMessage() for r in loud]

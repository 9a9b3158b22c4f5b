"""Large messages, without a fresh buffer per read or per send.

Receiving: a payload of ``IN_PLACE_MIN`` bytes or more is read straight into one buffer of its
size (``Receiver.payload_buffer``, ``payload_written``, ``on_in_place``; the asyncio front end
switches its transport to a ``BufferedProtocol``) instead of being collected from the socket's
reads and joined. Sending: a client builds each large masked frame in the buffer of the one
before once the transport has written it (``Sender.reuse``). The bytes on the wire and the
messages delivered must be exactly those of the usual path, on the default loop, on uvloop and
over TLS.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from certs import client_context, make_certs, server_context
from conftest import MASK
from test_receiver import Events
from test_transports import echo_server, raw_server, within, ws_url

import wsfast
from wsfast import WebSocketError
from wsfast import websocket as websocket_module
from wsfast.constants import OP_BINARY, OP_CONTINUATION, OP_TEXT
from wsfast.handshake import accept_key
from wsfast.read_in_place import PayloadReader
from wsfast.receiver import GET_DATA, GET_DATA_IN_PLACE, GET_INFO, IN_PLACE_MIN
from wsfast.sender import SPARE_MAX, SPLIT_SIZE, MaskedFrame, Sender, frame

SIZE = IN_PLACE_MIN * 3 + 5  # odd: the key's phase must carry over between the reads


def payload(size: int = SIZE, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def in_place_events(**options: Any) -> tuple[Events, list[int]]:
    """A receiver wired to events, with ``on_in_place`` counting its calls."""
    events = Events(**options)
    starts: list[int] = []
    events.receiver.on_in_place = lambda: starts.append(events.receiver.state)
    return events, starts


def read_in_place(events: Events, wire: bytes, first: int, step: int) -> None:
    """What a front end with ``recv_into`` does: ``first`` bytes through ``feed``, then the rest
    written into ``payload_buffer()`` at most ``step`` at a time, then ``feed`` again."""
    receiver = events.receiver
    receiver.feed(wire[:first])
    pos = first
    while True:
        view = receiver.payload_buffer()
        if view is None:
            break
        count = min(step, len(view), len(wire) - pos)
        view[:count] = wire[pos : pos + count]
        pos += count
        receiver.payload_written(count)
    receiver.feed(wire[pos:])


@pytest.mark.parametrize("is_server", [True, False], ids=["masked", "unmasked"])
@pytest.mark.parametrize("step", [1 << 20, 65536, 4097])
def test_a_large_payload_is_written_in_place(is_server: bool, step: int) -> None:
    data = payload()
    mask = MASK if is_server else None
    wire = bytes(frame(data, OP_BINARY, mask=mask)) + bytes(frame(b"after", OP_BINARY, mask=mask))
    events, starts = in_place_events(is_server=is_server)
    read_in_place(events, wire, 10_000, step)
    assert starts == [GET_DATA_IN_PLACE]
    assert events.events == [("message", data, True), ("message", b"after", True)]
    assert type(events.events[0][1]) is bytes
    assert events.receiver.state == GET_INFO


@pytest.mark.parametrize("piece", [3, 65536, 300_001])
def test_bytes_fed_during_a_payload_read_in_place_are_copied_in(piece: int) -> None:
    # A front end may go on feeding (a read under way when it switched, a TLS transport): the
    # receiver copies those bytes into the payload buffer, and what follows the frame is parsed.
    data = payload()
    wire = bytes(frame(data, OP_BINARY, mask=MASK)) + bytes(frame(b"x", OP_TEXT, mask=MASK))
    events, starts = in_place_events(is_server=True)
    events.feed(wire[:10_000], *(wire[i : i + piece] for i in range(10_000, len(wire), piece)))
    assert starts == [GET_DATA_IN_PLACE]
    assert events.events == [("message", data, True), ("message", "x", False)]


def test_without_on_in_place_a_payload_is_collected_as_before() -> None:
    data = payload()
    wire = bytes(frame(data, OP_BINARY, mask=MASK))
    events = Events(is_server=True)
    events.feed(wire[:10_000])
    assert events.receiver.state == GET_DATA
    assert events.receiver.payload_buffer() is None
    events.feed(wire[10_000:])
    assert events.events == [("message", data, True)]


def test_a_payload_below_the_threshold_is_collected_from_the_reads() -> None:
    data = payload(IN_PLACE_MIN - 1)
    wire = bytes(frame(data, OP_BINARY, mask=MASK))
    events, starts = in_place_events(is_server=True)
    events.feed(wire[:1000], wire[1000:])
    assert starts == []
    assert events.events == [("message", data, True)]


@pytest.mark.parametrize("is_server", [True, False], ids=["masked", "unmasked"])
def test_text_read_in_place_is_decoded(is_server: bool) -> None:
    text = "κόσμε 𝄞 € " * (SIZE // 20)
    mask = MASK if is_server else None
    wire = bytes(frame(text.encode(), OP_TEXT, mask=mask))
    events, starts = in_place_events(is_server=is_server)
    # 4097-byte steps cut the multi-byte characters everywhere.
    read_in_place(events, wire, 5000, 4097)
    assert starts == [GET_DATA_IN_PLACE]
    assert events.events == [("message", text, False)]


def test_invalid_utf8_read_in_place_fails_before_the_frame_ends() -> None:
    raw = bytearray(b"a" * SIZE)
    raw[IN_PLACE_MIN] = 0xFF
    wire = bytes(frame(bytes(raw), OP_TEXT, mask=MASK))
    events, _ = in_place_events(is_server=True)
    receiver = events.receiver
    receiver.feed(wire[:1000])
    written = 1000 - 14  # the header of a 64-bit length with its key
    with pytest.raises(WebSocketError) as caught:
        while True:
            view = receiver.payload_buffer()
            assert view is not None, "the invalid byte went through"
            count = min(65536, len(view))
            view[:count] = wire[14 + written : 14 + written + count]
            written += count
            receiver.payload_written(count)
    assert caught.value.status_code == 1007
    assert written < SIZE  # fail-fast: the rest of the frame was never needed
    assert receiver.payload_buffer() is None
    assert events.events == []


def test_a_fragmented_text_message_read_in_place() -> None:
    text = "ü" * (IN_PLACE_MIN * 5 // 8)
    raw = text.encode()
    cut = IN_PLACE_MIN + 1  # a character cut between the frames
    wire = (
        bytes(frame(raw[:cut], OP_TEXT, fin=False, mask=MASK))
        + bytes(frame(raw[cut:], OP_CONTINUATION, mask=MASK))
        + bytes(frame(b"next", OP_BINARY, mask=MASK))
    )
    events, starts = in_place_events(is_server=True)
    events.feed(*(wire[i : i + 100_000] for i in range(0, len(wire), 100_000)))
    assert len(starts) == 1  # the second frame (< IN_PLACE_MIN) is collected
    assert events.events == [("message", text, False), ("message", b"next", True)]


def test_a_pause_holds_a_payload_completed_in_place() -> None:
    data = payload()
    wire = bytes(frame(data, OP_BINARY, mask=MASK))
    events, _ = in_place_events(is_server=True)
    receiver = events.receiver
    receiver.feed(wire[:1000])
    receiver.paused = True
    pos = 1000
    while (view := receiver.payload_buffer()) is not None:
        count = len(view)
        view[:] = wire[pos : pos + count]
        pos += count
        receiver.payload_written(count)
    assert pos == len(wire)
    assert events.events == []
    assert receiver.buffered == SIZE
    receiver.paused = False
    receiver.feed(b"")
    assert events.events == [("message", data, True)]
    assert receiver.buffered == 0 and receiver.state == GET_INFO


def test_max_payload_refuses_a_large_frame_from_its_header() -> None:
    wire = bytes(frame(payload(), OP_BINARY, mask=MASK))
    events, starts = in_place_events(is_server=True, max_payload=IN_PLACE_MIN)
    with pytest.raises(WebSocketError) as caught:
        events.feed(wire[:1000])
    assert caught.value.status_code == 1009
    assert starts == []


# -- the asyncio front end: the transport switches to a BufferedProtocol and back ------------------


def counted_reuses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records the length of every frame handed back to a sender for reuse."""
    reuses: list[int] = []
    original = Sender.reuse

    def reuse(self: Sender, frame: MaskedFrame) -> None:
        reuses.append(len(frame))
        original(self, frame)

    monkeypatch.setattr(Sender, "reuse", reuse)
    return reuses


def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records the size of every read that went into a payload buffer."""
    reads: list[int] = []
    original = websocket_module.WebSocket._payload_read

    def _payload_read(self: wsfast.WebSocket, count: int) -> None:
        reads.append(count)
        original(self, count)

    monkeypatch.setattr(websocket_module.WebSocket, "_payload_read", _payload_read)
    return reads


MESSAGES: list[Any] = [
    payload(),
    b"small",
    "κόσμε" * (IN_PLACE_MIN // 4),
    payload(4 << 20, seed=2),
    "small",
]


async def echo_all(url: str, **options: Any) -> list[Any]:
    async with wsfast.connect(url, per_message_deflate=False, **options) as ws:
        for message in MESSAGES:
            await ws.send(message)
        return [await within(ws.recv(), 20) for _ in MESSAGES]


def run(loop_factory: Any, main: Any) -> Any:
    """``main()`` on a new loop from ``loop_factory`` (asyncio's default when None), closed
    after; what asyncio.Runner does, which Python 3.10 lacks."""
    loop = (loop_factory or asyncio.new_event_loop)()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main())
    finally:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()


LOOPS = [pytest.param(None, id="asyncio")]
try:
    import uvloop

    LOOPS.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
except ImportError:  # pragma: no cover - uvloop is a test dependency
    pass


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_large_messages_are_read_in_place_both_ways(
    loop_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = counted_reads(monkeypatch)
    reuses = counted_reuses(monkeypatch)

    async def main() -> list[Any]:
        async with echo_server() as server:
            return await echo_all(ws_url(server))

    assert run(loop_factory, main) == MESSAGES
    # Server and client each read the three large payloads at least partly in place.
    assert sum(reads) >= 2 * 3 * IN_PLACE_MIN
    # The client's large frames after the first were masked in a reused buffer.
    assert reuses


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_large_messages_over_tls_are_read_in_place(
    loop_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    certs = make_certs(tmp_path)
    reads = counted_reads(monkeypatch)

    async def main() -> list[Any]:
        async with echo_server(ssl=server_context(certs)) as server:
            return await echo_all(ws_url(server, scheme="wss"), ssl=client_context(certs))

    assert run(loop_factory, main) == MESSAGES
    assert reads


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_a_large_compressed_message_is_read_in_place(
    loop_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = counted_reads(monkeypatch)
    data = payload(2 << 20, seed=3)  # random: compresses to about its own size

    async def main() -> Any:
        async with echo_server(per_message_deflate=True) as server:
            async with wsfast.connect(ws_url(server)) as ws:
                assert "permessage-deflate" in ws.extensions
                await ws.send(data)
                return await within(ws.recv(), 20)

    assert run(loop_factory, main) == data
    assert sum(reads) >= IN_PLACE_MIN


def test_a_client_that_breaks_utf8_mid_payload_gets_1007(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = counted_reads(monkeypatch)
    raw = bytearray(b"a" * SIZE)
    raw[IN_PLACE_MIN + 1000] = 0xC0

    async def main() -> tuple[int, bytes]:
        async with echo_server() as server:
            port = server.address()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            await within(reader.readuntil(b"\r\n\r\n"))
            writer.write(bytes(frame(bytes(raw), OP_TEXT, mask=MASK)))
            head = await within(reader.readexactly(4))
            writer.close()
            return int.from_bytes(head[2:4], "big"), head

    code, head = run(None, main)
    assert head[0] == 0x88  # a close frame
    assert code == 1007
    assert reads


async def upgrade_a_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The server's half of the opening handshake, by hand."""
    head = await within(reader.readuntil(b"\r\n\r\n"))
    key = next(
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
    )


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_a_server_that_breaks_utf8_mid_payload_gets_1007(
    loop_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = counted_reads(monkeypatch)
    raw = bytearray(b"a" * SIZE)
    raw[IN_PLACE_MIN + 1000] = 0xC0
    codes: list[int] = []

    async def serve_it(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upgrade_a_client(reader, writer)
        writer.write(bytes(frame(bytes(raw), OP_TEXT)))
        head = await within(reader.readexactly(8))  # the client's masked close frame
        assert head[:2] == b"\x88\x82"
        key = head[2:6]
        codes.append(int.from_bytes(bytes(b ^ key[i] for i, b in enumerate(head[6:8])), "big"))

    async def main() -> int:
        async with raw_server(serve_it) as port:
            ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/", per_message_deflate=False)
            closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            ws.on("close", lambda code, reason: closed.done() or closed.set_result(code))
            ws.on("error", lambda error: None)
            return await within(closed)

    run(loop_factory, main)
    assert codes == [1007]
    assert reads  # the invalid byte was met in a read made in place


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_a_server_gone_mid_payload_closes_the_client_with_1006(
    loop_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = counted_reads(monkeypatch)

    async def serve_it(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upgrade_a_client(reader, writer)
        writer.write(bytes(frame(payload(), OP_BINARY))[: 2 * IN_PLACE_MIN])
        await writer.drain()
        await asyncio.sleep(0.05)

    async def main() -> tuple[int, list[Any]]:
        async with raw_server(serve_it) as port:
            ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/", per_message_deflate=False)
            closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            errors: list[Any] = []
            ws.on("close", lambda code, reason: closed.set_result(code))
            ws.on("error", errors.append)
            return await within(closed), errors

    code, errors = run(loop_factory, main)
    assert code == 1006
    assert errors == []
    assert reads  # it went while the payload was being read in place


def test_the_payload_reader_takes_the_usual_way_when_nothing_is_left_in_place() -> None:
    # A read that was requested after the payload ended (it was completed by bytes fed the
    # usual way) goes to data_received, not lost.
    usual: list[bytes] = []
    reads: list[int] = []
    target = bytearray(8)
    views = [memoryview(target), None]
    reader = PayloadReader(
        None,  # type: ignore[arg-type]
        lambda: views.pop(0),
        reads.append,
        usual.append,
    )
    view = reader.get_buffer(-1)
    view[:3] = b"abc"
    reader.buffer_updated(3)
    assert (reads, usual, bytes(target[:3])) == ([3], [], b"abc")
    view = reader.get_buffer(-1)
    view[:4] = b"next"
    reader.buffer_updated(4)
    assert (reads, usual) == ([3], [b"next"])


# -- the sender: large masked frames built in the buffer of the one before -------------------------


def unmask_frame(wire: Any) -> tuple[int, bytes]:
    """(first byte, payload) of one masked frame with a 64-bit length, unmasked here."""
    data = bytes(wire)
    assert data[1] == 0xFF  # masked, 64-bit length
    length = int.from_bytes(data[2:10], "big")
    key, body = data[10:14], data[14:]
    assert len(body) == length
    key_run = (key * (length // 4 + 1))[:length]
    plain = int.from_bytes(body, "big") ^ int.from_bytes(key_run, "big")
    return data[0], plain.to_bytes(length, "big")


def test_a_reused_frame_carries_the_next_message() -> None:
    sender = Sender(is_client=True)
    first = sender.message(payload(SPLIT_SIZE + 100, seed=4), True)
    assert type(first) is MaskedFrame
    sender.reuse(first)
    second_data = payload(SPLIT_SIZE + 10, seed=5)  # smaller: built in the same buffer
    second = sender.message(second_data, False)
    assert second is first
    assert unmask_frame(second) == (0x81, second_data)
    sender.reuse(second)
    third_data = payload(SPLIT_SIZE * 2, seed=6)  # larger: a new buffer
    third = sender.message(third_data, True)
    assert third is not first
    assert unmask_frame(third) == (0x82, third_data)


def test_a_frame_is_not_reused_unless_handed_back_or_above_the_cap() -> None:
    sender = Sender(is_client=True)
    first = sender.message(payload(SPLIT_SIZE), True)
    assert sender.message(payload(SPLIT_SIZE), True) is not first
    big = sender.message(payload(SPARE_MAX + 1), True)
    sender.reuse(big)
    assert sender.message(payload(SPARE_MAX + 1), True) is not big
    # A server's frames are not masked: written as header and payload, never a MaskedFrame.
    server = Sender(is_client=False)
    assert type(server.message(payload(SPLIT_SIZE), True, split=True)) is tuple


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_large_frames_sent_faster_than_written_stay_intact(
    loop_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sent in one go, most frames wait in the transport's buffer: none of those may be reused
    # (each would be overwritten by the next message before it went out).
    # Equal sizes and then shrinking ones: each could be built in the buffer before it.
    messages = [payload(SPLIT_SIZE + 300_000, seed=i) for i in range(12)]
    messages += [payload(SPLIT_SIZE + (12 - i) * 4099, seed=i) for i in range(12)]

    async def main() -> list[Any]:
        async with echo_server() as server:
            async with wsfast.connect(ws_url(server), per_message_deflate=False) as ws:
                for message in messages:
                    ws.send(message)  # not awaited
                return [await within(ws.recv(), 30) for _ in messages]

    assert run(loop_factory, main) == messages


def test_the_sync_client_masks_large_frames_in_a_reused_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from test_sync import echo, running, url_of

    from wsfast.sync import connect, serve

    reuses = counted_reuses(monkeypatch)
    messages = [payload(SPLIT_SIZE + 300_000, seed=i) for i in range(4)]
    messages += [payload(SPLIT_SIZE + (4 - i) * 4099, seed=i) for i in range(4)]
    with running(serve(echo, "127.0.0.1", 0)) as server:
        with connect(url_of(server)) as ws:
            for message in messages:
                ws.send(message)
            echoed = [ws.recv(timeout=20) for _ in messages]
    assert echoed == messages
    assert reuses  # sendall returned: each frame was handed back

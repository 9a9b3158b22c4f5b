"""Memory and count limits: fragments, 1-byte fragment floods, the any-address listener."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from conftest import MASK, url_of, wait_for

import wsfast
from wsfast.constants import OP_BINARY, OP_CONTINUATION, OP_TEXT
from wsfast.exceptions import WebSocketError
from wsfast.receiver import Receiver
from wsfast.sender import frame


def fragmented(count: int, piece: bytes, opcode: int = OP_BINARY) -> bytes:
    """One message of ``count`` masked fragments of ``piece`` each."""
    frames = [frame(piece, opcode, fin=count == 1, mask=MASK)]
    for i in range(1, count):
        frames.append(frame(piece, OP_CONTINUATION, fin=i == count - 1, mask=MASK))
    return b"".join(frames)


def collect(**options: Any) -> tuple[Receiver, list[tuple[Any, bool]]]:
    messages: list[tuple[Any, bool]] = []
    receiver = Receiver(
        is_server=True, on_message=lambda data, binary: messages.append((data, binary)), **options
    )
    return receiver, messages


def test_4_mib_in_64_byte_fragments_is_one_message_by_default() -> None:
    # Autobahn 9.3.1: a legitimate message that a fragment-count limit would refuse.
    receiver, messages = collect()
    receiver.feed(fragmented(65536, b"\xab" * 64))
    assert len(messages) == 1
    data, binary = messages[0]
    assert binary and type(data) is bytes and data == b"\xab" * (4 << 20)


@pytest.mark.parametrize("opcode", [OP_BINARY, OP_TEXT], ids=["binary", "text"])
def test_max_fragments_refuses_one_more_fragment(opcode: int) -> None:
    receiver, messages = collect(max_fragments=10)
    receiver.feed(fragmented(10, b"a", opcode))
    assert len(messages) == 1
    with pytest.raises(WebSocketError) as info:
        receiver.feed(fragmented(11, b"a", opcode))
    assert info.value.code == "WS_ERR_TOO_MANY_BUFFERED_PARTS"
    assert info.value.status_code == 1008
    assert len(messages) == 1


def test_one_byte_fragments_cost_about_their_size() -> None:
    # 20,000 one-byte fragments: kept as a list of bytes objects they would take ~40x their
    # size (about 800 KB); the receiver must hold them in about their own size.
    count = 20_000
    wire = fragmented(count, b"z")
    receiver, messages = collect()
    body = wire[: len(wire) - 7]  # everything but the final fragment: the message stays open
    tracemalloc.start()
    try:
        receiver.feed(body)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not messages
    assert held < 4 * count, f"{held} bytes held for {count} bytes of fragments"
    receiver.feed(wire[len(wire) - 7 :])
    assert messages == [(b"z" * count, True)]


def test_max_payload_counts_every_fragment() -> None:
    receiver, messages = collect(max_payload=1000)
    with pytest.raises(WebSocketError) as info:
        receiver.feed(fragmented(1001, b"a"))
    assert (info.value.code, info.value.status_code) == ("WS_ERR_UNSUPPORTED_MESSAGE_LENGTH", 1009)
    assert not messages


def test_fragments_binary_type_keeps_each_piece() -> None:
    receiver, messages = collect(binary_type="fragments")
    receiver.feed(fragmented(3, b"abc"))
    assert messages == [([b"abc", b"abc", b"abc"], True)]


async def test_server_without_host_listens_on_one_port_for_both_families() -> None:
    server = wsfast.WebSocketServer(port=0)
    server.on("connection", lambda ws, request: ws.on("message", lambda d, b: ws.send(d)))
    try:
        await wait_for(server.wait_listening())
        port = server.address()[1]
        assert len(server.sockets) == 1
        for host in ("127.0.0.1", "localhost"):
            async with wsfast.connect(f"ws://{host}:{port}", per_message_deflate=False) as ws:
                await ws.send(host)
                assert await wait_for(ws.recv()) == host
    finally:
        for ws in list(server.clients):
            ws.terminate()
        await wait_for(server.close())


async def test_max_fragments_option_reaches_the_wire(make_server: Any, make_client: Any) -> None:
    server = await make_server(max_fragments=4)
    closes: list[tuple[int, str]] = []
    server.on("connection", lambda ws, request: ws.on("close", lambda c, r: closes.append((c, r))))
    ws = await make_client(url_of(server))
    for _ in range(5):
        ws.send(b"x", fin=False)
    ws.send(b"x")
    await wait_for(ws.wait_closed())
    assert ws.close_code == 1008

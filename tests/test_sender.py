"""Framing as a pure function, the Sender's per-connection rules, masks and close payloads."""

from __future__ import annotations

import array
import itertools
import os
import struct
import sys
import threading
import time
from typing import Any

import pytest
from conftest import MASK

from wsfast import WebSocketError, generate_mask, sender
from wsfast.constants import OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT
from wsfast.receiver import Receiver
from wsfast.sender import Sender, close_payload, coalesce, frame, frame_header

# (id, payload, opcode, fin, mask, wire bytes)
FRAMES = [
    ("text-unmasked", b"Hello", OP_TEXT, True, None, "810548656c6c6f"),
    ("text-masked", b"Hello", OP_TEXT, True, MASK, "818537fa213d7f9f4d5158"),
    ("first-fragment", b"Hel", OP_TEXT, False, None, "010348656c"),
    ("last-fragment", b"lo", OP_CONTINUATION, True, None, "80026c6f"),
    ("ping", b"Hello", OP_PING, True, None, "890548656c6c6f"),
    ("pong-masked", b"Hello", OP_PONG, True, MASK, "8a8537fa213d7f9f4d5158"),
    ("empty-close", b"", OP_CLOSE, True, None, "8800"),
    ("empty-masked-binary", b"", OP_BINARY, True, MASK, "828037fa213d"),
    ("binary-256", bytes(256), OP_BINARY, True, None, "827e0100" + "00" * 256),
    ("binary-64KiB", bytes(65536), OP_BINARY, True, None, "827f0000000000010000" + "00" * 65536),
]


@pytest.mark.parametrize(
    "payload, opcode, fin, mask, wire",
    [case[1:] for case in FRAMES],
    ids=[case[0] for case in FRAMES],
)
def test_frame(payload: bytes, opcode: int, fin: bool, mask: bytes | None, wire: str) -> None:
    assert bytes(frame(payload, opcode, fin=fin, mask=mask)) == bytes.fromhex(wire)


@pytest.mark.parametrize(
    "length, header",
    [
        (0, "8200"),
        (125, "827d"),
        (126, "827e007e"),
        (65535, "827effff"),
        (65536, "827f0000000000010000"),
        (2**32, "827f0000000100000000"),
    ],
)
def test_frame_header_lengths(length: int, header: str) -> None:
    assert frame_header(length, OP_BINARY, True, False, False) == bytes.fromhex(header)


def test_frame_header_flags() -> None:
    assert frame_header(3, OP_TEXT, False, True, True) == bytes.fromhex("4183")


def test_frame_accepts_buffers() -> None:
    expected = bytes.fromhex("818537fa213d7f9f4d5158")
    for data in (b"Hello", bytearray(b"Hello"), memoryview(b"Hello")):
        assert bytes(frame(data, OP_TEXT, mask=MASK)) == expected


def test_frame_does_not_modify_its_input() -> None:
    data = bytearray(b"Hello")
    frame(data, OP_TEXT, mask=MASK)
    assert data == b"Hello"


def test_generate_mask() -> None:
    masks = [generate_mask() for _ in range(5000)]  # crosses the pool's refill
    assert all(type(m) is bytes and len(m) == 4 for m in masks)
    assert len(set(masks)) > 4900


def test_sender_client_masks_with_the_hook() -> None:
    sender = Sender(is_client=True, generate_mask=lambda: MASK)
    assert bytes(sender.message("Hello", False)) == bytes.fromhex("818537fa213d7f9f4d5158")
    assert bytes(sender.ping(b"Hello")) == bytes.fromhex("898537fa213d7f9f4d5158")
    assert bytes(sender.pong("Hello")) == bytes.fromhex("8a8537fa213d7f9f4d5158")


def test_sender_client_uses_random_masks() -> None:
    sender = Sender(is_client=True)
    a, b = bytes(sender.message(b"x" * 16, True)), bytes(sender.message(b"x" * 16, True))
    assert a[1] & 0x80 and b[1] & 0x80 and a[2:6] != b[2:6]


def test_sender_server_does_not_mask() -> None:
    sender = Sender(is_client=False)
    assert bytes(sender.message("Hello", False)) == bytes.fromhex("810548656c6c6f")
    assert bytes(sender.message(b"Hello", True)) == bytes.fromhex("820548656c6c6f")


def test_sender_mask_override() -> None:
    sender = Sender(is_client=False, generate_mask=lambda: MASK)
    assert bytes(sender.message("Hello", False, mask=True)) == bytes.fromhex(
        "818537fa213d7f9f4d5158"
    )
    client = Sender(is_client=True, generate_mask=lambda: MASK)
    assert bytes(client.ping(b"Hello", mask=False)) == bytes.fromhex("890548656c6c6f")


def test_sender_fragments_use_continuation() -> None:
    sender = Sender(is_client=False)
    wire = b"".join(
        bytes(sender.message(part, True, fin=fin))
        for part, fin in ((b"a", False), (b"b", False), (b"c", True))
    )
    assert wire == bytes.fromhex("020161000162800163")
    # The next message starts afresh with its own opcode.
    assert bytes(sender.message("d", False)) == bytes.fromhex("810164")


def test_sender_close_frames() -> None:
    sender = Sender(is_client=False)
    assert bytes(sender.close()) == bytes.fromhex("8800")
    assert bytes(sender.close(1000)) == bytes.fromhex("880203e8")
    assert bytes(sender.close(4000, "bye")) == bytes.fromhex("88050fa0627965")


def test_sender_control_payload_limit() -> None:
    sender = Sender(is_client=False)
    assert len(sender.ping(b"x" * 125)) == 127
    with pytest.raises(WebSocketError) as info:
        sender.ping(b"x" * 126)
    assert info.value.code == "WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH"
    with pytest.raises(WebSocketError):
        sender.pong("é" * 63)


@pytest.mark.parametrize(
    "code, reason, payload",
    [
        (None, "", b""),
        (1000, "", b"\x03\xe8"),
        (1001, "going", b"\x03\xe9going"),
        (4999, b"raw", b"\x13\x87raw"),
        (3000, "é" * 61 + "x", b"\x0b\xb8" + ("é" * 61 + "x").encode()),
    ],
    ids=["none", "1000", "reason", "bytes-reason", "123-bytes"],
)
def test_close_payload(code: int | None, reason: str | bytes, payload: bytes) -> None:
    assert close_payload(code, reason) == payload


@pytest.mark.parametrize(
    "code, reason, error",
    [
        (None, "why", TypeError),
        (999, "", TypeError),
        (1004, "", TypeError),
        (1005, "", TypeError),
        (1006, "", TypeError),
        (1015, "", TypeError),
        (2999, "", TypeError),
        (5000, "", TypeError),
        (True, "", TypeError),
        ("1000", "", TypeError),
        (1000, "x" * 124, ValueError),
        (1000, "é" * 62, ValueError),
    ],
    ids=[
        "reason-without-code",
        "999",
        "1004",
        "1005",
        "1006",
        "1015",
        "2999",
        "5000",
        "bool",
        "str",
        "124-bytes",
        "124-utf8-bytes",
    ],
)
def test_close_payload_invalid(code: object, reason: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        close_payload(code, reason)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 100_000])
@pytest.mark.parametrize("is_client", [True, False], ids=["client", "server"])
def test_sender_output_parses_back(size: int, is_client: bool) -> None:
    received: list[object] = []
    receiver = Receiver(is_server=is_client, on_message=lambda d, b: received.append((d, b)))
    sender = Sender(is_client=is_client)
    data = bytes(i & 0xFF for i in range(size))
    text = "é" * (size // 2)
    receiver.feed(bytes(sender.message(data, True)) + bytes(sender.message(text, False)))
    assert received == [(data, True), (text, False)]


def _multibyte_buffers() -> list[Any]:
    return [
        array.array("H", [0x0102, 0x0304]),
        memoryview(array.array("i", [1, -1])),
        memoryview(bytes(range(8))).cast("I"),
    ]


@pytest.mark.parametrize("mask", [None, MASK], ids=["unmasked", "masked"])
@pytest.mark.parametrize("data", _multibyte_buffers(), ids=["array-H", "array-i", "cast-I"])
def test_frame_counts_bytes_of_multibyte_buffers(data: Any, mask: bytes | None) -> None:
    # The length on the wire is in bytes: len() of array('H') counts items.
    raw = memoryview(data).tobytes()
    assert bytes(frame(data, OP_BINARY, mask=mask)) == bytes(frame(raw, OP_BINARY, mask=mask))


@pytest.mark.parametrize("data", _multibyte_buffers(), ids=["array-H", "array-i", "cast-I"])
@pytest.mark.parametrize("is_client", [True, False], ids=["client", "server"])
def test_sender_multibyte_buffers(data: Any, is_client: bool) -> None:
    raw = memoryview(data).tobytes()
    received: list[Any] = []
    receiver = Receiver(
        is_server=is_client,
        on_message=lambda d, b: received.append(d),
        on_ping=received.append,
    )
    sender = Sender(is_client=is_client)
    receiver.feed(bytes(sender.message(data, True)) + bytes(sender.ping(data)))
    assert received == [raw, raw]


def test_sender_control_limit_counts_bytes() -> None:
    sender = Sender(is_client=False)
    with pytest.raises(WebSocketError):
        sender.ping(array.array("i", range(32)))  # 32 items, 128 bytes


def _counting_urandom() -> Any:
    """An os.urandom stand-in whose every 4-byte chunk is distinct: a repeat is a race."""
    lock = threading.Lock()
    counter = itertools.count()

    def urandom(size: int) -> bytes:
        with lock:
            start = next(counter) * (size // 4)
        time.sleep(0)  # other threads run meanwhile: concurrent refills
        return b"".join(struct.pack("!I", start + i) for i in range(size // 4))

    return urandom


def test_generate_mask_threads_never_share_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # Many switches between threads, refills that overlap: every key must still be handed out
    # once (under the GIL the old index was only exposed around a refill; without a GIL, at
    # every call).
    monkeypatch.setattr(sender.os, "urandom", _counting_urandom())
    monkeypatch.setattr(sender, "_next_mask", iter(()).__next__)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    results: list[list[bytes]] = [[] for _ in range(4)]

    def work(out: list[bytes]) -> None:
        out.extend(generate_mask() for _ in range(50_000))

    try:
        threads = [threading.Thread(target=work, args=(out,)) for out in results]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    masks = [mask for out in results for mask in out]
    assert len(masks) == 200_000
    assert len(set(masks)) == len(masks)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_generate_mask_forked_child_does_not_repeat_the_parent() -> None:
    generate_mask()  # the pool is filled before the fork
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write_end, b"".join(generate_mask() for _ in range(16)))
        finally:
            os._exit(0)
    os.close(write_end)
    child = b""
    while len(child) < 64:
        chunk = os.read(read_end, 64)
        if not chunk:
            break
        child += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    parent = b"".join(generate_mask() for _ in range(16))
    assert len(child) == 64
    assert child != parent


def _deflate_sender() -> Any:
    from wsfast.permessage_deflate import PerMessageDeflate

    deflate = PerMessageDeflate({}, is_server=True)
    deflate.accept([{}])
    return Sender(is_client=False, deflate=deflate)


@pytest.mark.parametrize("size", [8192, 65536, 1 << 20])
def test_incompressible_messages_go_uncompressed(size: int) -> None:
    import base64
    import random

    from wsfast.receiver import Receiver

    sender = _deflate_sender()
    rnd = random.Random(size)
    noise = rnd.randbytes(size)
    words = b" ".join(rnd.choice([b"alpha", b"beta", b"gamma", b"delta"]) for _ in range(size))
    cases = [
        (noise, None, False),  # random: sent as it is, RSV1 clear
        (noise, True, True),  # compress=True forces deflate
        (noise[:8191], None, True),  # below SAMPLE_FROM: no sample, compressed
        (words[:size], None, True),
        (base64.b64encode(noise)[:size], None, True),  # 64 byte values: still compressible
    ]
    receiver_msgs: list[Any] = []
    deflate = sender.deflate
    for payload, compress, expect_rsv1 in cases:
        out = sender.message(payload, True, compress=compress)
        head = bytes(out[:2])
        assert bool(head[0] & 0x40) is expect_rsv1, (len(payload), compress)
        if not expect_rsv1:
            assert bytes(out).endswith(payload)
        receiver_msgs.append(out)
    # A peer with context takeover reads every one of them, in order, whatever went raw.
    from wsfast.permessage_deflate import PerMessageDeflate

    peer = PerMessageDeflate({}, is_server=False, max_payload=0)
    peer.accept([dict(deflate.params)])
    got: list[Any] = []
    receiver = Receiver(
        on_message=lambda data, is_binary: got.append(data),
        on_ping=None,
        on_pong=None,
        on_close=None,
        is_server=False,
        deflate=peer,
    )
    for out in receiver_msgs:
        receiver.feed(bytes(out))
    assert got == [case[0] for case in cases]


def test_coalesce_joins_runs_of_small_frames_up_to_the_limit() -> None:
    frames = [bytes([i]) * 1028 for i in range(80)]
    writes = coalesce(frames, 65536)
    assert b"".join(writes) == b"".join(frames)
    assert [len(w) for w in writes] == [63 * 1028, 17 * 1028]


def test_coalesce_writes_a_large_frame_alone_without_copying_it() -> None:
    big = b"b" * 70000
    view = memoryview(b"v" * 65536)
    writes = coalesce([b"a", b"c", big, b"d", view, b"e"], 65536)
    assert writes[0] == b"ac"
    assert writes[1] is big
    assert writes[2] == b"d"
    assert writes[3] is view
    assert writes[4] == b"e"
    assert coalesce([], 65536) == []
    single = b"s" * 10
    assert coalesce([single], 65536)[0] is single

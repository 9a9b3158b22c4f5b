"""The sans-I/O frame parser: byte-literal round trips, the table of invalid input, splitting."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import MASK
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsfast import WebSocketError
from wsfast.buffer_util import NATIVE_SCAN
from wsfast.constants import OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT
from wsfast.receiver import DONE, GET_DATA, GET_INFO, Receiver
from wsfast.sender import frame

HELLO = b"Hello"


class Events:
    """A receiver wired to a list of ``(kind, *args)`` events."""

    def __init__(self, **options: Any) -> None:
        self.events: list[tuple[Any, ...]] = []
        options.setdefault("is_server", False)
        self.receiver = Receiver(
            on_message=lambda data, is_binary: self.events.append(("message", data, is_binary)),
            on_ping=lambda data: self.events.append(("ping", data)),
            on_pong=lambda data: self.events.append(("pong", data)),
            on_close=lambda code, reason: self.events.append(("close", code, reason)),
            **options,
        )

    def feed(self, *chunks: bytes) -> list[tuple[Any, ...]]:
        for chunk in chunks:
            self.receiver.feed(chunk)
        return self.events


def parse(data: bytes, **options: Any) -> list[tuple[Any, ...]]:
    return Events(**options).feed(data)


# -- byte-literal round trips (RFC 6455 5.7 and the three length encodings) -----------------------

BIN_256 = bytes(range(256))
BIN_64K = bytes(i & 0xFF for i in range(65536))

# (id, wire bytes, is_server, frames as (payload, opcode, fin, mask), expected events)
ROUND_TRIPS = [
    (
        "text-unmasked",
        bytes.fromhex("810548656c6c6f"),
        False,
        [(HELLO, OP_TEXT, True, None)],
        [("message", "Hello", False)],
    ),
    (
        "text-masked",
        bytes.fromhex("818537fa213d7f9f4d5158"),
        True,
        [(HELLO, OP_TEXT, True, MASK)],
        [("message", "Hello", False)],
    ),
    (
        "text-fragmented",
        bytes.fromhex("010348656c") + bytes.fromhex("80026c6f"),
        False,
        [(b"Hel", OP_TEXT, False, None), (b"lo", OP_CONTINUATION, True, None)],
        [("message", "Hello", False)],
    ),
    (
        "ping-unmasked",
        bytes.fromhex("890548656c6c6f"),
        False,
        [(HELLO, OP_PING, True, None)],
        [("ping", HELLO)],
    ),
    (
        "pong-masked",
        bytes.fromhex("8a8537fa213d7f9f4d5158"),
        True,
        [(HELLO, OP_PONG, True, MASK)],
        [("pong", HELLO)],
    ),
    (
        "binary-256-16bit-length",
        bytes.fromhex("827e0100") + BIN_256,
        False,
        [(BIN_256, OP_BINARY, True, None)],
        [("message", BIN_256, True)],
    ),
    (
        "binary-64KiB-64bit-length",
        bytes.fromhex("827f0000000000010000") + BIN_64K,
        False,
        [(BIN_64K, OP_BINARY, True, None)],
        [("message", BIN_64K, True)],
    ),
    (
        "binary-125-7bit-length",
        bytes.fromhex("827d") + BIN_256[:125],
        False,
        [(BIN_256[:125], OP_BINARY, True, None)],
        [("message", BIN_256[:125], True)],
    ),
    (
        "binary-65535-16bit-length",
        bytes.fromhex("827effff") + BIN_64K[:65535],
        False,
        [(BIN_64K[:65535], OP_BINARY, True, None)],
        [("message", BIN_64K[:65535], True)],
    ),
    (
        "empty-text",
        bytes.fromhex("8100"),
        False,
        [(b"", OP_TEXT, True, None)],
        [("message", "", False)],
    ),
    (
        "empty-binary-masked",
        bytes.fromhex("828037fa213d"),
        True,
        [(b"", OP_BINARY, True, MASK)],
        [("message", b"", True)],
    ),
    (
        "close-1000-reason",
        bytes.fromhex("880503e8627965"),
        False,
        [(b"\x03\xe8bye", OP_CLOSE, True, None)],
        [("close", 1000, "bye")],
    ),
    (
        "close-empty",
        bytes.fromhex("8800"),
        False,
        [(b"", OP_CLOSE, True, None)],
        [("close", 1005, "")],
    ),
    (
        "ping-between-fragments",
        bytes.fromhex("010348656c") + bytes.fromhex("8900") + bytes.fromhex("80026c6f"),
        False,
        [(b"Hel", OP_TEXT, False, None), (b"", OP_PING, True, None), (b"lo", 0, True, None)],
        [("ping", b""), ("message", "Hello", False)],
    ),
]


round_trip_cases = pytest.mark.parametrize(
    "wire, is_server, frames, expected",
    [case[1:] for case in ROUND_TRIPS],
    ids=[case[0] for case in ROUND_TRIPS],
)


@round_trip_cases
def test_round_trip(wire: bytes, is_server: bool, frames: list[Any], expected: list[Any]) -> None:
    serialised = b"".join(
        bytes(frame(payload, opcode, fin=fin, mask=mask)) for payload, opcode, fin, mask in frames
    )
    assert serialised == wire
    assert parse(wire, is_server=is_server) == expected


@round_trip_cases
def test_round_trip_byte_at_a_time(
    wire: bytes, is_server: bool, frames: list[Any], expected: list[Any]
) -> None:
    events = Events(is_server=is_server)
    for i in range(len(wire)):
        events.feed(wire[i : i + 1])
    assert events.events == expected


def test_types_of_message_data() -> None:
    [(_, text, is_binary)] = parse(bytes.fromhex("810548656c6c6f"))
    assert type(text) is str and is_binary is False
    [(_, data, is_binary)] = parse(bytes.fromhex("8205") + HELLO)
    assert type(data) is bytes and is_binary is True
    [(_, data)] = parse(bytes.fromhex("8a8537fa213d7f9f4d5158"), is_server=True)
    assert type(data) is bytes


@pytest.mark.parametrize(
    "binary_type, expected",
    [
        ("bytes", b"Hello"),
        ("bytearray", bytearray(b"Hello")),
        ("fragments", [b"Hel", b"lo"]),
    ],
    ids=["bytes", "bytearray", "fragments"],
)
def test_binary_type_fragmented(binary_type: str, expected: Any) -> None:
    wire = bytes.fromhex("0203") + b"Hel" + bytes.fromhex("8002") + b"lo"
    [(_, data, is_binary)] = parse(wire, binary_type=binary_type)
    assert is_binary and data == expected and type(data) is type(expected)
    if binary_type == "fragments":
        assert all(isinstance(part, (bytes, bytearray)) for part in data)


@pytest.mark.parametrize(
    "binary_type, expected",
    [("bytes", b"Hello"), ("bytearray", bytearray(b"Hello")), ("fragments", [b"Hello"])],
    ids=["bytes", "bytearray", "fragments"],
)
def test_binary_type_single_frame_masked(binary_type: str, expected: Any) -> None:
    wire = bytes(frame(HELLO, OP_BINARY, mask=MASK))
    [(_, data, _)] = parse(wire, is_server=True, binary_type=binary_type)
    assert data == expected and type(data) is type(expected)


def test_several_messages_in_one_chunk() -> None:
    wire = b"".join(bytes(frame(f"m{i}".encode(), OP_TEXT)) for i in range(50))
    assert parse(wire) == [("message", f"m{i}", False) for i in range(50)]


def test_nothing_after_a_close_frame_is_parsed() -> None:
    events = Events()
    events.feed(bytes.fromhex("880203e8") + bytes.fromhex("810548656c6c6f"))
    events.feed(bytes.fromhex("810548656c6c6f"))
    assert events.events == [("close", 1000, "")]
    assert events.receiver.state == DONE


@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
)
def test_valid_close_codes(code: int) -> None:
    assert parse(bytes([0x88, 2]) + code.to_bytes(2, "big")) == [("close", code, "")]


def test_close_reason_utf8() -> None:
    reason = "κόσμε"
    payload = (1001).to_bytes(2, "big") + reason.encode()
    assert parse(bytes(frame(payload, OP_CLOSE))) == [("close", 1001, reason)]


def test_pause_keeps_the_rest_buffered() -> None:
    events = Events()
    receiver = events.receiver

    def on_message(data: Any, is_binary: bool) -> None:
        events.events.append(("message", data))
        receiver.paused = True

    receiver.on_message = on_message
    wire = b"".join(bytes(frame(f"m{i}".encode(), OP_TEXT)) for i in range(3))
    receiver.feed(wire)
    assert events.events == [("message", "m0")]
    # The native scanner parsed all three and holds the two undelivered messages (their
    # payload lengths count, plus 1 while any is held); the fallback parses one frame at a time
    # and keeps raw bytes.
    per_message = 2 if NATIVE_SCAN else len(wire) // 3
    held = 1 if NATIVE_SCAN else 0
    assert receiver.buffered == per_message * 2 + held
    receiver.paused = False
    receiver.feed(b"")
    assert events.events == [("message", "m0"), ("message", "m1")]
    assert receiver.buffered == per_message + held
    receiver.paused = False
    receiver.feed(b"")
    assert events.events == [("message", "m0"), ("message", "m1"), ("message", "m2")]
    assert receiver.buffered == 0


def test_skip_utf8_validation_delivers_invalid_text() -> None:
    [(_, text, is_binary)] = parse(bytes.fromhex("8102c328"), skip_utf8_validation=True)
    assert text == "\ufffd(" and is_binary is False


def test_max_payload_allows_exact_size() -> None:
    wire = bytes.fromhex("827e0100") + BIN_256
    assert parse(wire, max_payload=256) == [("message", BIN_256, True)]


def test_max_payload_ignores_control_frames() -> None:
    assert parse(bytes.fromhex("890548656c6c6f"), max_payload=1) == [("ping", HELLO)]


def test_state_machine_states() -> None:
    receiver = Events().receiver
    assert receiver.state == GET_INFO
    receiver.feed(bytes.fromhex("8205") + b"He")
    assert receiver.state == GET_DATA
    receiver.feed(b"llo")
    assert receiver.state == GET_INFO


# -- invalid input --------------------------------------------------------------------------------


def close_frame(code: int) -> bytes:
    return bytes([0x88, 2]) + code.to_bytes(2, "big")


# (id, chunks fed in order, receiver options, WS_ERR_* code, close code)
INVALID: list[tuple[str, list[bytes], dict[str, Any], str, int]] = [
    ("rsv2", [bytes.fromhex("a100")], {}, "WS_ERR_UNEXPECTED_RSV_2_3", 1002),
    ("rsv3", [bytes.fromhex("9100")], {}, "WS_ERR_UNEXPECTED_RSV_2_3", 1002),
    (
        "rsv2-rsv3-with-deflate",
        [bytes.fromhex("f100")],
        {"deflate": object()},
        "WS_ERR_UNEXPECTED_RSV_2_3",
        1002,
    ),
    ("rsv1-without-deflate", [bytes.fromhex("c100")], {}, "WS_ERR_UNEXPECTED_RSV_1", 1002),
    (
        "rsv1-on-ping",
        [bytes.fromhex("c900")],
        {"deflate": object()},
        "WS_ERR_UNEXPECTED_RSV_1",
        1002,
    ),
    (
        "rsv1-on-close",
        [bytes.fromhex("c800")],
        {"deflate": object()},
        "WS_ERR_UNEXPECTED_RSV_1",
        1002,
    ),
    (
        "rsv1-on-continuation",
        [bytes.fromhex("020161"), bytes.fromhex("c00162")],
        {"deflate": object()},
        "WS_ERR_UNEXPECTED_RSV_1",
        1002,
    ),
    *[
        (f"opcode-{op:#x}", [bytes([0x80 | op, 0])], {}, "WS_ERR_INVALID_OPCODE", 1002)
        for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)
    ],
    ("continuation-without-start", [bytes.fromhex("8000")], {}, "WS_ERR_INVALID_OPCODE", 1002),
    (
        "continuation-after-complete-message",
        [bytes.fromhex("8100"), bytes.fromhex("800161")],
        {},
        "WS_ERR_INVALID_OPCODE",
        1002,
    ),
    (
        "text-mid-message",
        [bytes.fromhex("010161"), bytes.fromhex("810162")],
        {},
        "WS_ERR_INVALID_OPCODE",
        1002,
    ),
    (
        "binary-mid-message",
        [bytes.fromhex("020161"), bytes.fromhex("020162")],
        {},
        "WS_ERR_INVALID_OPCODE",
        1002,
    ),
    ("ping-not-fin", [bytes.fromhex("0900")], {}, "WS_ERR_EXPECTED_FIN", 1002),
    ("close-not-fin", [bytes.fromhex("0800")], {}, "WS_ERR_EXPECTED_FIN", 1002),
    ("pong-not-fin", [bytes.fromhex("0a00")], {}, "WS_ERR_EXPECTED_FIN", 1002),
    (
        "ping-126-bytes",
        [bytes.fromhex("897e007e")],
        {},
        "WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH",
        1002,
    ),
    (
        "close-127-length",
        [bytes.fromhex("887f")],
        {},
        "WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH",
        1002,
    ),
    (
        "close-length-1",
        [bytes.fromhex("880103")],
        {},
        "WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH",
        1002,
    ),
    *[
        (f"close-code-{code}", [close_frame(code)], {}, "WS_ERR_INVALID_CLOSE_CODE", 1002)
        for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000)
    ],
    ("close-reason-invalid-utf8", [bytes.fromhex("880403e8fffe")], {}, "WS_ERR_INVALID_UTF8", 1007),
    ("text-invalid-utf8", [bytes.fromhex("8102c328")], {}, "WS_ERR_INVALID_UTF8", 1007),
    ("text-surrogate", [bytes.fromhex("8103eda080")], {}, "WS_ERR_INVALID_UTF8", 1007),
    (
        "text-truncated-at-end",
        [bytes.fromhex("8102cebb") + bytes.fromhex("8101ce")],
        {},
        "WS_ERR_INVALID_UTF8",
        1007,
    ),
    (
        "text-fragment-breaks-utf8",
        [bytes.fromhex("0102cebb"), bytes.fromhex("0001ff")],
        {},
        "WS_ERR_INVALID_UTF8",
        1007,
    ),
    (
        "text-final-fragment-truncated",
        [bytes.fromhex("0102cebb"), bytes.fromhex("8001ce")],
        {},
        "WS_ERR_INVALID_UTF8",
        1007,
    ),
    (
        "masked-to-client",
        [bytes.fromhex("818537fa213d7f9f4d5158")],
        {},
        "WS_ERR_UNEXPECTED_MASK",
        1002,
    ),
    (
        "unmasked-to-server",
        [bytes.fromhex("810548656c6c6f")],
        {"is_server": True},
        "WS_ERR_EXPECTED_MASK",
        1002,
    ),
    (
        "unmasked-ping-to-server",
        [bytes.fromhex("8900")],
        {"is_server": True},
        "WS_ERR_EXPECTED_MASK",
        1002,
    ),
    (
        "max-payload-7bit",
        [bytes.fromhex("827d")],
        {"max_payload": 124},
        "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH",
        1009,
    ),
    (
        "max-payload-16bit",
        [bytes.fromhex("827e0100")],
        {"max_payload": 255},
        "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH",
        1009,
    ),
    (
        "max-payload-64bit",
        [bytes.fromhex("827f0000000000010000")],
        {"max_payload": 65535},
        "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH",
        1009,
    ),
    (
        "max-payload-masked-header-only",
        [bytes.fromhex("82fe0100")],
        {"max_payload": 255, "is_server": True},
        "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH",
        1009,
    ),
    (
        "max-payload-across-fragments",
        [bytes.fromhex("027e0080") + bytes(128), bytes.fromhex("807e0080")],
        {"max_payload": 200},
        "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH",
        1009,
    ),
    (
        "64bit-length-msb-set",
        [bytes.fromhex("827f8000000000000000")],
        {},
        "WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH",
        1009,
    ),
]


invalid_cases = pytest.mark.parametrize(
    "chunks, options, code, status_code",
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)


@invalid_cases
def test_invalid(chunks: list[bytes], options: dict[str, Any], code: str, status_code: int) -> None:
    events = Events(**options)
    *before, last = chunks
    events.feed(*before)  # every chunk but the last is valid on its own
    with pytest.raises(WebSocketError) as info:
        events.feed(last)
    assert info.value.code == code
    assert info.value.status_code == status_code
    # Once failed, the receiver is done and ignores everything.
    assert events.receiver.state == DONE
    seen = list(events.events)
    events.feed(bytes.fromhex("810548656c6c6f"))
    assert events.events == seen


@invalid_cases
def test_invalid_byte_at_a_time(
    chunks: list[bytes], options: dict[str, Any], code: str, status_code: int
) -> None:
    events = Events(**options)
    wire = b"".join(chunks)
    with pytest.raises(WebSocketError) as info:
        for i in range(len(wire)):
            events.feed(wire[i : i + 1])
    assert (info.value.code, info.value.status_code) == (code, status_code)


def test_max_payload_needs_no_payload() -> None:
    # 100 MiB announced, max_payload 1 MiB: the 10-byte header alone is refused.
    events = Events(max_payload=1 << 20)
    with pytest.raises(WebSocketError) as info:
        events.feed(bytes([0x82, 127]) + (100 << 20).to_bytes(8, "big"))
    assert info.value.code == "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH"
    assert info.value.status_code == 1009


def test_invalid_utf8_fails_fast_on_a_partial_frame() -> None:
    # A 10-byte text frame whose first byte is already invalid: refused before the rest arrives.
    events = Events()
    events.feed(bytes.fromhex("810a"))
    with pytest.raises(WebSocketError) as info:
        events.feed(b"\xff")
    assert (info.value.code, info.value.status_code) == ("WS_ERR_INVALID_UTF8", 1007)


def test_invalid_utf8_fails_fast_on_a_partial_masked_frame() -> None:
    # Server side: the partial payload is unmasked with the key rotated to its offset.
    wire = bytes(frame("aκόσμε".encode() + b"\xff" + b"z" * 20, OP_TEXT, mask=MASK))
    events = Events(is_server=True)
    cut = 2 + 4 + 1 + 10  # header, mask, "a", "κόσμε" (10 bytes)
    events.feed(wire[: cut - 3])
    events.feed(wire[cut - 3 : cut])  # the valid prefix in two odd-sized pieces
    with pytest.raises(WebSocketError) as info:
        events.feed(wire[cut : cut + 1])
    assert info.value.code == "WS_ERR_INVALID_UTF8"


def test_invalid_utf8_fails_fast_on_a_non_final_fragment() -> None:
    events = Events()
    with pytest.raises(WebSocketError) as info:
        events.feed(bytes.fromhex("0101ff"))  # not FIN, no continuation sent yet
    assert info.value.status_code == 1007


def test_invalid_utf8_fails_fast_on_surrogate_prefix() -> None:
    # ED A0 can only start an encoded surrogate: refused before the third byte.
    events = Events()
    with pytest.raises(WebSocketError) as info:
        events.feed(bytes.fromhex("0102eda0"))
    assert info.value.status_code == 1007


def test_valid_utf8_split_inside_a_character() -> None:
    text = "κόσμε€𝄞"
    raw = text.encode()
    parts = [raw[:1], raw[1:6], raw[6:13], raw[13:]]
    wire = b"".join(
        bytes(frame(part, OP_TEXT if i == 0 else OP_CONTINUATION, fin=i == 3, mask=MASK))
        for i, part in enumerate(parts)
    )
    events = Events(is_server=True)
    for i in range(len(wire)):
        events.feed(wire[i : i + 1])
    assert events.events == [("message", text, False)]


# -- one-shot feeding equals feeding at random split points ---------------------------------------

messages = st.lists(
    st.tuples(
        st.one_of(st.text(max_size=300), st.binary(max_size=300)),
        st.integers(min_value=1, max_value=4),  # number of fragments
        st.booleans(),  # a ping between the fragments
    ),
    max_size=6,
)


def _stream(msgs: list[Any], mask: bytes | None, with_close: bool) -> bytes:
    out = bytearray()
    for data, pieces, ping in msgs:
        raw = data.encode() if isinstance(data, str) else data
        step = max(1, -(-len(raw) // pieces))
        chunks = [raw[i : i + step] for i in range(0, len(raw), step)] or [b""]
        for i, chunk in enumerate(chunks):
            opcode = (OP_TEXT if isinstance(data, str) else OP_BINARY) if i == 0 else 0
            out += frame(chunk, opcode, fin=i == len(chunks) - 1, mask=mask)
            if ping and i == 0:
                out += frame(b"p", OP_PING, mask=mask)
    if with_close:
        out += frame(b"\x03\xe8done", OP_CLOSE, mask=mask)
    return bytes(out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    msgs=messages,
    is_server=st.booleans(),
    mask=st.binary(min_size=4, max_size=4),
    with_close=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_split_points_do_not_change_events(
    msgs: list[Any], is_server: bool, mask: bytes, with_close: bool, cuts: list[int]
) -> None:
    wire = _stream(msgs, mask if is_server else None, with_close)
    whole = parse(wire, is_server=is_server)
    points = sorted({c % (len(wire) + 1) for c in cuts})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=False)]
    assert Events(is_server=is_server).feed(*pieces) == whole
    expected = [("message", data, not isinstance(data, str)) for data, _, _ in msgs]
    assert [e for e in whole if e[0] == "message"] == expected
    assert whole.count(("ping", b"p")) == sum(1 for data, _, ping in msgs if ping)
    if with_close:
        assert whole[-1] == ("close", 1000, "done")


@settings(max_examples=60, deadline=None)
@given(
    prefix=st.text(max_size=40),
    bad=st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"]),
    is_server=st.booleans(),
    cut=st.integers(min_value=0, max_value=1000),
)
def test_invalid_utf8_found_at_any_split(
    prefix: str, bad: bytes, is_server: bool, cut: int
) -> None:
    payload = prefix.encode() + bad + b"tail"
    wire = bytes(frame(payload, OP_TEXT, mask=MASK if is_server else None))
    cut %= len(wire) + 1
    events = Events(is_server=is_server)
    with pytest.raises(WebSocketError) as info:
        events.feed(wire[:cut], wire[cut:])
    assert info.value.status_code == 1007
    assert events.events == []


@pytest.mark.parametrize("is_server", [False, True], ids=["client", "server"])
def test_close_length_1_refused_from_the_header(is_server: bool) -> None:
    # As ws: a 1-byte close payload can never be valid, so the 2-byte header alone is refused
    # (before the payload, and before the masking check).
    events = Events(is_server=is_server)
    with pytest.raises(WebSocketError) as info:
        events.feed(bytes.fromhex("8801"))
    assert (info.value.code, info.value.status_code) == (
        "WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH",
        1002,
    )


@pytest.mark.parametrize("masked", [True, False], ids=["server", "client"])
def test_a_callback_that_stops_the_receiver_ends_the_read_at_once(masked: bool) -> None:
    # A listener that terminates the connection in the middle of a read (fast path): nothing
    # after that message is delivered, and nothing is kept for a later feed.
    got: list[Any] = []
    receiver: Receiver

    def on_message(data: Any, is_binary: bool) -> None:
        got.append(data)
        receiver.stop()

    receiver = Receiver(is_server=masked, on_message=on_message)
    one = frame(b"a", OP_BINARY, mask=b"\x01\x02\x03\x04" if masked else None)
    receiver.feed(one * 3)
    assert got == [b"a"]
    assert receiver.buffered == 0
    receiver.feed(one)
    assert got == [b"a"]


# -- large masked messages in many reads (the receive path of issue 9) ---------------------------


def _reads(wire: bytes, sizes: list[int]) -> list[bytes]:
    out, pos, i = [], 0, 0
    while pos < len(wire):
        step = sizes[i % len(sizes)]
        out.append(wire[pos : pos + step])
        pos += step
        i += 1
    return out


@pytest.mark.parametrize("binary_type", ["bytes", "bytearray", "fragments"])
@pytest.mark.parametrize("size", [4095, 4096, 65536 + 3, (1 << 20) + 1])
@pytest.mark.parametrize("pieces", [1, 3], ids=["one-frame", "three-fragments"])
@pytest.mark.parametrize("read", [[65536], [7, 4093, 65536 + 1]], ids=["64k-reads", "odd-reads"])
def test_large_masked_messages_in_many_reads(
    binary_type: str, size: int, pieces: int, read: list[int]
) -> None:
    # Every frame's mask phase starts again at 0, and the reads cut frames, headers and masks
    # anywhere: the message must come out whole, of the type binary_type asks for, and a text
    # message of the same bytes decoded the same.
    import random

    rnd = random.Random(size * pieces)
    payload = bytes(rnd.randrange(0x20, 0x7F) for _ in range(64)) * (size // 64) + b"z" * (
        size % 64
    )
    cuts = sorted(rnd.randrange(size) for _ in range(pieces - 1))
    parts = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, size], strict=True)]
    for opcode in (OP_BINARY, OP_TEXT):
        wire = b"".join(
            bytes(
                frame(
                    part,
                    opcode if i == 0 else OP_CONTINUATION,
                    fin=i == len(parts) - 1,
                    mask=rnd.randbytes(4),
                )
            )
            for i, part in enumerate(parts)
        )
        events = Events(is_server=True, binary_type=binary_type, max_payload=size)
        [(kind, data, is_binary)] = events.feed(*_reads(wire, read))
        assert kind == "message" and is_binary == (opcode == OP_BINARY)
        if opcode == OP_TEXT:
            assert data == payload.decode()
        elif binary_type == "fragments":
            assert b"".join(data) == payload and all(type(p) is bytes for p in data)
        else:
            assert type(data) is (bytes if binary_type == "bytes" else bytearray)
            assert data == payload


@pytest.mark.parametrize("keep", [True, False], ids=["keep-validated", "unmask-again"])
def test_masked_text_in_pieces_either_way(monkeypatch: pytest.MonkeyPatch, keep: bool) -> None:
    # Both ways of building a masked text frame validated piece by piece (the fallback keeps the
    # unmasked pieces, the native path unmasks the frame again), whichever is active here.
    import wsfast.receiver

    monkeypatch.setattr(wsfast.receiver, "_KEEP_VALIDATED", keep)
    text = "ж€𝄞 abc " * 3000
    payload = text.encode()
    wire = bytes(frame(payload[:10001], OP_TEXT, fin=False, mask=b"\x01\x02\x03\x04")) + bytes(
        frame(payload[10001:], OP_CONTINUATION, mask=b"\x05\x06\x07\x08")
    )
    reads = _reads(wire, [4099, 5, 8191])
    assert Events(is_server=True).feed(*reads) == [("message", text, False)]


@pytest.mark.parametrize("is_server", [True, False], ids=["server", "client"])
def test_pause_mid_batch_resumes_at_the_next_frame(is_server: bool) -> None:
    # One read holding many whole frames (7- and 16-bit lengths, text and binary): a callback
    # that pauses after the k-th leaves exactly the frames after it raw, on every path (the
    # native scanner parses the whole read before delivering).
    payloads: list[Any] = [
        b"a" * 3,
        "b" * 200,
        b"c" * 125,
        "",
        b"d" * 126,
        "é" * 40,
        b"e" * 65535,
    ]
    wire = b"".join(
        bytes(
            frame(
                p.encode() if isinstance(p, str) else p,
                OP_TEXT if isinstance(p, str) else OP_BINARY,
                mask=MASK if is_server else None,
            )
        )
        for p in payloads
    )
    for pause_after in range(1, len(payloads) + 1):
        events = Events(is_server=is_server)
        receiver = events.receiver
        got: list[Any] = []

        def on_message(
            data: Any,
            is_binary: bool,
            receiver: Any = receiver,
            got: list[Any] = got,
            pause_after: int = pause_after,
        ) -> None:
            got.append(data)
            if len(got) == pause_after:
                receiver.paused = True

        receiver.on_message = on_message
        receiver.feed(wire)
        assert got == payloads[:pause_after]
        receiver.paused = False
        receiver.feed(b"")
        assert got == payloads
        assert receiver.buffered == 0


@pytest.mark.parametrize("feed_while_paused", [False, True], ids=["resume-empty", "feed-more"])
def test_pauses_between_reads_deliver_every_message_once(feed_while_paused: bool) -> None:
    # A paused receiver keeps the rest of a read by offset (Receiver._keep_rest), not as a
    # copy. Reads split at awkward places, a listener that pauses after every 5th message,
    # and input fed while paused (appended behind the kept rest): every message comes once,
    # in order, and nothing stays buffered.
    payloads = [bytes([65 + i % 26]) * (1024 if i % 3 == 0 else 3 + i) for i in range(60)]
    wire = b"".join(bytes(frame(p, OP_BINARY, mask=MASK)) for p in payloads)
    cuts = [0, 7, 1500, 1501, 4100, 9000, len(wire) - 3, len(wire)]
    reads = [wire[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    events = Events(is_server=True)
    receiver = events.receiver
    got: list[Any] = []
    receiver.on_message = _paused_after(5, receiver, got)
    checked = 0
    for read in reads:
        if not feed_while_paused:
            while receiver.paused:
                receiver.paused = False
                receiver.feed(b"")
                # The front ends' cheap test agrees with the count, held messages or not.
                assert receiver.has_buffered == (receiver.buffered > 0)
                checked += 1
        receiver.feed(read)
        assert receiver.has_buffered == (receiver.buffered > 0)
    while receiver.paused or receiver.buffered:
        receiver.paused = False
        receiver.feed(b"")
        assert receiver.has_buffered == (receiver.buffered > 0)
        checked += 1
    assert got == [(payload, True) for payload in payloads]
    assert receiver.buffered == 0 and not receiver.has_buffered
    assert checked >= 10


def test_a_slow_reader_keeps_the_scan_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    # A read of 8,000 small frames taken 16 at a time (a reader that pauses after each 16, as
    # a full recv() queue does): every frame is delivered once, in order, and the native
    # scanner (or the twin standing in for it) parses each frame about once, not the whole
    # rest of the read after every resume (32 million frames here).
    import wsfast.receiver as receiver_module
    from wsfast import buffer_util

    real = buffer_util.scan_frames
    parsed = [0]

    def counting(data: Any, pos: int, masked: bool, max_payload: int, out: list[Any]) -> int:
        end = real(data, pos, masked, max_payload, out)
        parsed[0] += len(out)
        return end

    monkeypatch.setattr(receiver_module, "scan_frames", counting)
    monkeypatch.setattr(receiver_module, "NATIVE_SCAN", True)
    count = 8000
    payloads = [b"%031d" % i for i in range(count)]
    wire = b"".join(bytes(frame(p, OP_BINARY, mask=MASK)) for p in payloads)
    events = Events(is_server=True)
    receiver = events.receiver
    got: list[Any] = []

    def on_message(data: Any, is_binary: bool) -> None:
        got.append(data)
        if len(got) % 16 == 0:
            receiver.paused = True

    receiver.on_message = on_message
    receiver.feed(wire)
    while receiver.buffered:
        receiver.paused = False
        receiver.feed(b"")
    assert got == payloads
    # Messages a pause leaves undelivered are held, not parsed again: each frame once.
    assert parsed[0] == count, parsed[0]


def _paused_after(count: int, receiver: Receiver, got: list[Any]) -> Any:
    def on_message(data: Any, is_binary: bool) -> None:
        got.append((data, is_binary))
        if len(got) % count == 0:
            receiver.paused = True

    return on_message


def test_input_fed_while_messages_are_held_comes_after_them() -> None:
    # Paused with scanned messages held: a new read (and a ping in it) waits behind them, and
    # the order of the wire is kept across resumes.
    events = Events(is_server=True)
    receiver = events.receiver
    got: list[Any] = []
    receiver.on_message = _paused_after(2, receiver, got)
    first = b"".join(bytes(frame(b"a%d" % i, OP_BINARY, mask=MASK)) for i in range(5))
    second = bytes(frame(b"p", OP_PING, mask=MASK)) + bytes(frame("t", OP_TEXT, mask=MASK))
    receiver.feed(first)
    assert got == [(b"a0", True), (b"a1", True)]
    # Payloads held (+1 while any is held), or raw frames.
    assert receiver.buffered == (6 + 1 if NATIVE_SCAN else 3 * 8)
    assert receiver.has_buffered
    receiver.feed(second)  # still paused: nothing is delivered
    assert len(got) == 2 and events.events == []
    while receiver.buffered:
        receiver.paused = False
        receiver.feed(b"")
    assert got == [(b"a%d" % i, True) for i in range(5)] + [("t", False)]
    assert events.events == [("ping", b"p")]


def test_an_empty_message_held_by_a_pause_is_delivered_on_resume() -> None:
    # Found by fuzz_receiver (input HgCBAIEA): two empty text frames, a pause after the first.
    # The front ends resume parsing only while ``buffered`` is non-zero; a held empty message
    # counted 0 and stayed undelivered until more bytes came.
    got: list[Any] = []
    receiver = Receiver(is_server=False)
    receiver.on_message = _paused_after(1, receiver, got)
    receiver.feed(b"\x81\x00\x81\x00")
    assert got == [("", False)]
    assert receiver.buffered > 0
    assert receiver.has_buffered
    receiver.paused = False
    receiver.feed(b"")
    assert got == [("", False), ("", False)]
    assert receiver.buffered == 0


def test_stop_drops_the_held_messages() -> None:
    events = Events(is_server=True)
    receiver = events.receiver
    got: list[Any] = []
    receiver.on_message = _paused_after(1, receiver, got)
    receiver.feed(b"".join(bytes(frame(b"x", OP_BINARY, mask=MASK)) for _ in range(4)))
    assert len(got) == 1 and receiver.buffered > 0
    receiver.stop()
    assert receiver.buffered == 0
    receiver.paused = False
    receiver.feed(b"")
    assert len(got) == 1


def test_a_callback_ending_the_receiver_stops_the_held_messages() -> None:
    events = Events(is_server=True)
    receiver = events.receiver
    got: list[Any] = []

    def on_message(data: Any, is_binary: bool) -> None:
        got.append(data)
        if len(got) == 1:
            receiver.paused = True
        elif len(got) == 2:
            receiver.stop()  # as terminate() does from a listener

    receiver.on_message = on_message
    receiver.feed(b"".join(bytes(frame(b"%d" % i, OP_BINARY, mask=MASK)) for i in range(4)))
    receiver.paused = False
    receiver.feed(b"")
    assert got == [b"0", b"1"]
    assert receiver.buffered == 0 and receiver.state == DONE


def test_a_listener_that_pauses_and_resumes_from_inside_gets_each_message_once() -> None:
    # WebSocket.pause() then resume() in a listener feeds the receiver again from inside the
    # delivery of held messages: the nested call must go on from the next message.
    events = Events(is_server=True)
    receiver = events.receiver
    got: list[Any] = []
    nested = [0]

    def on_message(data: Any, is_binary: bool) -> None:
        got.append(data)
        if len(got) == 1:
            receiver.paused = True  # pause: the rest of the window is held
        elif len(got) % 3 == 0 and nested[0] < 5:
            nested[0] += 1
            receiver.paused = True
            receiver.paused = False  # resume, and feed what is buffered, as resume() does
            if receiver.buffered:
                receiver.feed(b"")

    receiver.on_message = on_message
    payloads = [b"%02d" % i for i in range(20)]
    receiver.feed(b"".join(bytes(frame(p, OP_BINARY, mask=MASK)) for p in payloads))
    receiver.paused = False
    receiver.feed(b"")
    assert got == payloads
    assert receiver.buffered == 0

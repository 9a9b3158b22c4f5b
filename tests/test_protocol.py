"""The sans-I/O connection state machine, with byte literals, for both roles.

A client masks with the all-zero key here, so its frames read as plain bytes after the 4-byte
key; frames fed to a server are masked with RFC 6455 5.7's key (:data:`conftest.MASK`).
"""

from __future__ import annotations

import array
from typing import Any

import pytest
from conftest import MASK

from wsfast import WebSocketError
from wsfast.options import ConnectionOptions
from wsfast.permessage_deflate import PerMessageDeflate
from wsfast.protocol import CLOSED, CLOSING, OPEN, InvalidState, Protocol, State
from wsfast.sender import SPLIT_SIZE, frame

ZERO = b"\x00\x00\x00\x00"

# Frames of the peer, as they arrive: masked (to a server) or not (to a client).
HELLO_TO_SERVER = bytes.fromhex("818537fa213d7f9f4d5158")  # text "Hello", RFC 6455 5.7
HELLO_TO_CLIENT = bytes.fromhex("810548656c6c6f")
PING_TO_SERVER = bytes.fromhex("898537fa213d7f9f4d5158")  # ping "Hello"
PING_TO_CLIENT = bytes.fromhex("890548656c6c6f")
PONG_TO_CLIENT = bytes.fromhex("8a0548656c6c6f")
CLOSE_1000_BYE_TO_CLIENT = b"\x88\x05\x03\xe8bye"
CLOSE_EMPTY_TO_CLIENT = b"\x88\x00"
CLOSE_EMPTY_TO_SERVER = b"\x88\x80" + MASK


def masked(data: bytes, opcode: int, *, fin: bool = True) -> bytes:
    """A frame as a client sends it, with :data:`MASK`."""
    return bytes(frame(data, opcode, fin=fin, mask=MASK))


def peer(is_server: bool, data: bytes, opcode: int, *, fin: bool = True) -> bytes:
    """A frame of the peer of a ``is_server`` side: masked towards a server only."""
    return masked(data, opcode, fin=fin) if is_server else bytes(frame(data, opcode, fin=fin))


def ours(is_server: bool, head: bytes, payload: bytes = b"") -> bytes:
    """What a side writes: ``head`` is the 2-byte header; a client adds the zero mask bit+key."""
    if is_server:
        return head + payload
    return bytes((head[0], head[1] | 0x80)) + ZERO + payload


class Conn:
    """A Protocol wired to an event list; ``written()`` drains what it wrote."""

    def __init__(self, is_server: bool, *, sink: bool = False, **options: Any) -> None:
        options.setdefault("generate_mask", lambda: ZERO)
        self.events: list[tuple[Any, ...]] = []
        self.sunk: list[Any] = []
        self.proto = Protocol(
            is_server=is_server,
            options=ConnectionOptions(**options),
            write=self.sunk.append if sink else None,
            on_message=lambda data, binary: self.events.append(("message", data, binary)),
            on_ping=lambda data: self.events.append(("ping", data)),
            on_pong=lambda data: self.events.append(("pong", data)),
            on_close_frame=lambda code, reason: self.events.append(("close", code, reason)),
            on_error=lambda exc: self.events.append(("error", exc)),
        )

    def written(self) -> bytes:
        return b"".join(bytes(chunk) for chunk in self.proto.data_to_send())


ROLES = pytest.mark.parametrize("is_server", [True, False], ids=["server", "client"])


def hello(is_server: bool) -> bytes:
    return HELLO_TO_SERVER if is_server else HELLO_TO_CLIENT


def close_frame(is_server: bool, payload: bytes) -> bytes:
    """A close frame from the peer of an ``is_server`` side."""
    return peer(is_server, payload, 0x8)


# -- data messages --------------------------------------------------------------------------------


@ROLES
def test_initial_state(is_server: bool) -> None:
    proto = Conn(is_server).proto
    assert proto.state is OPEN and proto.state == State.OPEN == 1
    assert proto.is_server is is_server
    assert not (proto.close_sent or proto.close_received or proto.eof_due or proto.abort_due)
    assert proto.close_code is None and proto.error is None and proto.timer is None
    assert proto.data_to_send() == []


@ROLES
def test_messages_in(is_server: bool) -> None:
    conn = Conn(is_server)
    conn.proto.receive_data(hello(is_server) + peer(is_server, b"\x00\xff", 0x2))
    assert conn.events == [("message", "Hello", False), ("message", b"\x00\xff", True)]
    assert conn.written() == b""


@ROLES
def test_fragmented_message_in_split_reads(is_server: bool) -> None:
    conn = Conn(is_server)
    data = peer(is_server, b"Hel", 0x1, fin=False) + peer(is_server, b"lo", 0x0)
    for i in range(len(data)):
        conn.proto.receive_data(data[i : i + 1])
    assert conn.events == [("message", "Hello", False)]


SENDS = [
    # (id, args, kwargs, server header, payload)
    ("str-text", ("Hello",), {}, b"\x81\x05", b"Hello"),
    ("bytes-binary", (b"Hello",), {}, b"\x82\x05", b"Hello"),
    ("str-as-binary", ("Hello", True), {}, b"\x82\x05", b"Hello"),
    ("bytes-as-text", (b"Hello", False), {}, b"\x81\x05", b"Hello"),
    ("bytearray", (bytearray(b"Hello"),), {}, b"\x82\x05", b"Hello"),
    ("memoryview-as-binary", (memoryview(b"Hello"), True), {}, b"\x82\x05", b"Hello"),
    ("empty", (b"",), {}, b"\x82\x00", b""),
    ("126-bytes", (b"x" * 126,), {}, b"\x82\x7e\x00\x7e", b"x" * 126),
    ("first-fragment", ("Hel",), {"fin": False}, b"\x01\x03", b"Hel"),
]


@ROLES
@pytest.mark.parametrize(
    "args, kwargs, head, payload", [s[1:] for s in SENDS], ids=[s[0] for s in SENDS]
)
def test_send(
    is_server: bool, args: tuple[Any, ...], kwargs: dict[str, Any], head: bytes, payload: bytes
) -> None:
    conn = Conn(is_server)
    conn.proto.send(*args, **kwargs)
    if is_server:
        expected = head + payload
    else:
        expected = bytes((head[0], head[1] | 0x80)) + head[2:] + ZERO + payload
    assert conn.written() == expected


@ROLES
@pytest.mark.parametrize("size", [0, 1, 125, 126, 1024, 4095, 4096, 65535, 65536, SPLIT_SIZE - 1])
@pytest.mark.parametrize("kind", ["bytes", "str", "bytes-as-text", "str-as-binary"])
def test_send_frames_every_length_as_frame_does(is_server: bool, size: int, kind: str) -> None:
    # Protocol.send frames whole uncompressed messages itself (a server up to SPLIT_SIZE, a
    # client up to MASK_INLINE); the bytes must be sender.frame()'s, with a real masking key,
    # at each boundary of the 7-, 16- and 64-bit lengths.
    conn = Conn(is_server, generate_mask=lambda: MASK)
    raw = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    if kind.startswith("str"):
        raw = b"a" * size
    data: Any = raw.decode() if kind.startswith("str") else raw
    binary = {"bytes-as-text": False, "str-as-binary": True}.get(kind)
    conn.proto.send(data, binary)
    text = kind in ("str", "bytes-as-text")
    expected = bytes(frame(raw, 0x1 if text else 0x2, mask=None if is_server else MASK))
    assert conn.written() == expected


@ROLES
def test_send_fragments(is_server: bool) -> None:
    conn = Conn(is_server)
    conn.proto.send("Hel", fin=False)
    conn.proto.send("lo")  # a continuation: not the server's one-frame shortcut
    conn.proto.send("!")
    assert conn.written() == (
        ours(is_server, b"\x01\x03", b"Hel")
        + ours(is_server, b"\x80\x02", b"lo")
        + ours(is_server, b"\x81\x01", b"!")
    )


def test_server_send_masked_on_request() -> None:
    conn = Conn(True)
    conn.proto.send(b"Hi", mask=True)
    assert conn.written() == b"\x82\x82" + ZERO + b"Hi"


def test_client_send_unmasked_on_request() -> None:
    conn = Conn(False)
    conn.proto.send(b"Hi", mask=False)
    assert conn.written() == b"\x82\x02Hi"


def test_large_unmasked_send_is_written_as_header_then_payload() -> None:
    # Sender.message's split: the payload is written without being copied behind the header.
    conn = Conn(True, sink=True)
    payload = b"x" * SPLIT_SIZE
    conn.proto.send(payload)
    assert conn.sunk == [b"\x82\x7f" + SPLIT_SIZE.to_bytes(8, "big"), payload]
    assert conn.sunk[1] is payload
    assert conn.proto.data_to_send() == []


@ROLES
@pytest.mark.parametrize("binary", [None, True, False], ids=["binary-unset", "binary", "text"])
def test_send_refuses_other_types(is_server: bool, binary: bool | None) -> None:
    conn = Conn(is_server)
    for data in (42, None, [1, 2], {"a": 1}):
        with pytest.raises(TypeError, match=f"cannot send {type(data).__name__}"):
            conn.proto.send(data, binary)
    assert conn.written() == b""
    conn.proto.send(b"ok")  # the failed sends left no fragment open
    assert conn.written() == ours(is_server, b"\x82\x02", b"ok")


@ROLES
@pytest.mark.parametrize("binary", [None, True], ids=["binary-unset", "binary"])
def test_send_any_buffer(is_server: bool, binary: bool | None) -> None:
    # Regression: with ``binary`` given, array.array (any buffer but bytes, bytearray and
    # memoryview) was refused with "cannot send array", and sent without it.
    conn = Conn(is_server)
    conn.proto.send(array.array("B", [1, 2, 3]), binary)
    words = array.array("H", [0x0102, 0x0304])
    conn.proto.send(words, binary)  # the length on the wire counts bytes, not items
    assert conn.written() == ours(is_server, b"\x82\x03", b"\x01\x02\x03") + ours(
        is_server, b"\x82\x04", words.tobytes()
    )


def test_send_buffer_as_text() -> None:
    conn = Conn(True)
    conn.proto.send(array.array("B", b"Hi"), False)
    assert conn.written() == b"\x81\x02Hi"


@ROLES
def test_ping_and_pong_out(is_server: bool) -> None:
    conn = Conn(is_server)
    conn.proto.ping(b"hi")
    conn.proto.pong("yo")
    conn.proto.ping()
    assert conn.written() == (
        ours(is_server, b"\x89\x02", b"hi")
        + ours(is_server, b"\x8a\x02", b"yo")
        + ours(is_server, b"\x89\x00")
    )


@ROLES
def test_write_sink_receives_every_write(is_server: bool) -> None:
    conn = Conn(is_server, sink=True)
    conn.proto.send("Hello")
    conn.proto.close(1000)
    assert b"".join(map(bytes, conn.sunk)) == ours(is_server, b"\x81\x05", b"Hello") + ours(
        is_server, b"\x88\x02", b"\x03\xe8"
    )
    assert conn.proto.data_to_send() == []


def test_data_to_send_empties_the_buffer() -> None:
    conn = Conn(True)
    conn.proto.send("a")
    conn.proto.send("b")
    assert conn.proto.data_to_send() == [b"\x81\x01a", b"\x81\x01b"]
    assert conn.proto.data_to_send() == []


# -- pings and automatic pongs --------------------------------------------------------------------


@ROLES
def test_auto_pong_echoes_the_ping(is_server: bool) -> None:
    conn = Conn(is_server)
    ping = PING_TO_SERVER if is_server else PING_TO_CLIENT
    conn.proto.receive_data(ping)
    assert conn.written() == ours(is_server, b"\x8a\x05", b"Hello")
    assert conn.events == [("ping", b"Hello")]
    assert conn.proto.pending_auto_pongs == 1


@ROLES
def test_auto_pong_off(is_server: bool) -> None:
    conn = Conn(is_server, auto_pong=False)
    conn.proto.receive_data(PING_TO_SERVER if is_server else PING_TO_CLIENT)
    assert conn.written() == b""
    assert conn.events == [("ping", b"Hello")]
    assert conn.proto.pending_auto_pongs == 0


def test_pong_in() -> None:
    conn = Conn(False)
    conn.proto.receive_data(PONG_TO_CLIENT)
    assert conn.events == [("pong", b"Hello")]
    assert conn.written() == b""


@ROLES
def test_auto_pong_cap_terminates(is_server: bool) -> None:
    conn = Conn(is_server, max_pending_auto_pongs=2)
    proto = conn.proto
    ping = peer(is_server, b"p", 0x9)
    proto.receive_data(ping + ping)
    assert proto.pending_auto_pongs == 2
    assert conn.written() == ours(is_server, b"\x8a\x01", b"p") * 2
    assert not proto.abort_due
    # The third ping, with two pongs unflushed: dropped at once, no pong, no close frame
    # (ws 8.23's receiverOnPing calls terminate()). The ping is still reported, as ws emits it.
    proto.receive_data(ping + hello(is_server))
    assert proto.abort_due and proto.pending
    assert conn.written() == b""
    assert proto.state is CLOSING and not proto.close_sent and not proto.eof_due
    assert conn.events == [("ping", b"p")] * 3  # and nothing parsed after the drop


@ROLES
def test_auto_pongs_flushed_resets_the_count(is_server: bool) -> None:
    conn = Conn(is_server, max_pending_auto_pongs=1)
    ping = peer(is_server, b"", 0x9)
    for _ in range(5):
        conn.proto.receive_data(ping)
        assert conn.proto.pending_auto_pongs == 1
        conn.proto.auto_pongs_flushed()
        assert conn.proto.pending_auto_pongs == 0
    assert not conn.proto.abort_due
    assert conn.written() == ours(is_server, b"\x8a\x00") * 5


def test_auto_pong_cap_zero_disables_it() -> None:
    conn = Conn(True, max_pending_auto_pongs=0)
    conn.proto.receive_data(PING_TO_SERVER * 200)
    assert conn.proto.pending_auto_pongs == 200
    assert not conn.proto.abort_due and conn.proto.state is OPEN


@ROLES
def test_no_auto_pong_once_our_close_is_sent(is_server: bool) -> None:
    # RFC 6455 5.5.1: nothing may follow our close frame; the ping is still reported.
    conn = Conn(is_server)
    conn.proto.close()
    conn.written()
    conn.proto.receive_data(peer(is_server, b"late", 0x9))
    assert conn.written() == b""
    assert conn.events == [("ping", b"late")]


# -- the closing handshake ------------------------------------------------------------------------


@ROLES
def test_close_initiated_here(is_server: bool) -> None:
    conn = Conn(is_server, close_timeout=7.5)
    proto = conn.proto
    proto.close(1000, "bye")
    assert conn.written() == ours(is_server, b"\x88\x05", b"\x03\xe8bye")
    assert proto.state is CLOSING and proto.close_sent and not proto.close_received
    assert proto.timer == 7.5 and proto.pending
    assert not proto.eof_due and proto.close_code is None
    proto.timer, proto.pending = None, False  # the adapter armed its timer
    with pytest.raises(InvalidState):
        proto.send("x")

    proto.receive_data(close_frame(is_server, b"\x03\xe8ok"))
    assert conn.written() == b""  # no second close frame
    assert proto.close_received and proto.close_code == 1000 and proto.close_reason == "ok"
    assert conn.events == [("close", 1000, "ok")]
    assert proto.state is CLOSING
    # Both frames are out: the server closes TCP first (RFC 6455 7.1.1); the client waits,
    # its timer from sending the close frame still running.
    assert proto.eof_due is is_server
    assert (proto.timer == 7.5) is is_server
    proto.receive_eof()
    proto.connection_lost()
    assert proto.state is CLOSED and proto.close_code == 1000


@ROLES
def test_close_initiated_by_the_peer(is_server: bool) -> None:
    conn = Conn(is_server, close_timeout=3)
    proto = conn.proto
    proto.receive_data(close_frame(is_server, b"\x0f\xa0going") + hello(is_server))
    # The code and reason are echoed (RFC 6455 5.5.1, as ws); nothing is parsed after.
    assert conn.written() == ours(is_server, b"\x88\x07", b"\x0f\xa0going")
    assert conn.events == [("close", 4000, "going")]
    assert proto.close_sent and proto.close_received and proto.state is CLOSING
    assert proto.close_code == 4000 and proto.close_reason == "going"
    assert proto.timer == 3 and proto.pending
    assert proto.eof_due is is_server
    assert proto.error is None
    proto.receive_data(hello(is_server))
    assert conn.events == [("close", 4000, "going")]


@ROLES
def test_close_without_code_is_answered_without_code(is_server: bool) -> None:
    conn = Conn(is_server)
    conn.proto.receive_data(CLOSE_EMPTY_TO_SERVER if is_server else CLOSE_EMPTY_TO_CLIENT)
    assert conn.written() == ours(is_server, b"\x88\x00")
    assert conn.proto.close_code == 1005 and conn.proto.close_reason == ""
    assert conn.events == [("close", 1005, "")]


@ROLES
def test_close_without_code_sent(is_server: bool) -> None:
    conn = Conn(is_server)
    conn.proto.close()
    assert conn.written() == ours(is_server, b"\x88\x00")


@ROLES
def test_close_again_after_the_handshake(is_server: bool) -> None:
    # ws' close() while CLOSING with both frames out ends the socket again; here the server
    # raises eof_due again, the client keeps waiting for the server's EOF.
    conn = Conn(is_server)
    proto = conn.proto
    proto.close(1000)
    proto.receive_data(close_frame(is_server, b"\x03\xe8"))
    proto.eof_due = proto.pending = False
    proto.timer = None
    proto.close(1001, "ignored")
    assert conn.written() == ours(is_server, b"\x88\x02", b"\x03\xe8")  # the first only
    assert proto.eof_due is is_server


@ROLES
def test_close_is_ignored_while_waiting_and_when_closed(is_server: bool) -> None:
    conn = Conn(is_server)
    proto = conn.proto
    proto.close(1000)
    conn.written()
    proto.timer, proto.pending = None, False
    proto.close(1001)  # CLOSING, peer's close not received yet
    proto.close(5, "not even checked")
    assert conn.written() == b"" and proto.timer is None and not proto.eof_due
    proto.connection_lost()
    proto.close(1000)
    assert conn.written() == b"" and proto.state is CLOSED


BAD_CLOSES = [
    ("code-1005", (1005,), TypeError),
    ("code-999", (999,), TypeError),
    ("code-bool", (True,), TypeError),
    ("code-str", ("1000",), TypeError),
    ("reason-without-code", (None, "why"), TypeError),
    ("reason-124-bytes", (1000, "x" * 124), ValueError),
    ("reason-utf8-124-bytes", (1000, "é" * 62), ValueError),
]


@ROLES
@pytest.mark.parametrize("args, error", [b[1:] for b in BAD_CLOSES], ids=[b[0] for b in BAD_CLOSES])
def test_close_validation_raises_before_any_change(
    is_server: bool, args: tuple[Any, ...], error: type[Exception]
) -> None:
    conn = Conn(is_server)
    proto = conn.proto
    with pytest.raises(error):
        proto.close(*args)
    assert proto.state is OPEN and not proto.close_sent and proto.timer is None
    assert not proto.pending and conn.written() == b""
    proto.send("still open")
    assert conn.written() == ours(is_server, b"\x81\x0a", b"still open")


@ROLES
def test_send_ping_pong_after_close_raise_invalid_state(is_server: bool) -> None:
    proto = Conn(is_server).proto
    proto.close(1000)
    for call in (lambda: proto.send("x"), lambda: proto.ping(), lambda: proto.pong()):
        with pytest.raises(InvalidState) as info:
            call()
        assert info.value.state is CLOSING
        assert info.value.code == "WS_ERR_INVALID_STATE"
        assert "readyState 2 (CLOSING)" in str(info.value)
    proto.connection_lost()
    with pytest.raises(InvalidState, match=r"readyState 3 \(CLOSED\)"):
        proto.send(b"x")


# -- failing the connection -----------------------------------------------------------------------


def _too_many_fragments(is_server: bool) -> bytes:
    return peer(is_server, b"a", 0x1, fin=False) + peer(is_server, b"b", 0x0, fin=False) * 2


PROTOCOL_ERRORS = [
    # (id, is_server, input, options, WS_ERR code, close code)
    ("bad-opcode-to-server", True, b"\x83\x80" + MASK, {}, "WS_ERR_INVALID_OPCODE", 1002),
    ("bad-opcode-to-client", False, b"\x8f\x00", {}, "WS_ERR_INVALID_OPCODE", 1002),
    ("masked-to-client", False, HELLO_TO_SERVER, {}, "WS_ERR_UNEXPECTED_MASK", 1002),
    ("unmasked-to-server", True, HELLO_TO_CLIENT, {}, "WS_ERR_EXPECTED_MASK", 1002),
    (
        "over-max-payload-server",
        True,
        HELLO_TO_SERVER,
        {"max_payload": 4},
        "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH",
        1009,
    ),
    (
        "over-max-payload-client",
        False,
        b"\x82\x7e\x01\x00",  # header only: refused before the payload arrives
        {"max_payload": 255},
        "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH",
        1009,
    ),
    (
        "too-many-fragments-server",
        True,
        _too_many_fragments(True),
        {"max_fragments": 2},
        "WS_ERR_TOO_MANY_BUFFERED_PARTS",
        1008,
    ),
    (
        "too-many-fragments-client",
        False,
        _too_many_fragments(False),
        {"max_fragments": 2},
        "WS_ERR_TOO_MANY_BUFFERED_PARTS",
        1008,
    ),
    (
        "invalid-utf8-server",
        True,
        masked(b"\xff\xfe", 0x1),
        {},
        "WS_ERR_INVALID_UTF8",
        1007,
    ),
    ("invalid-utf8-client", False, b"\x81\x02\xc3\x28", {}, "WS_ERR_INVALID_UTF8", 1007),
    (
        "invalid-utf8-close-reason",
        False,
        b"\x88\x03\x03\xe8\xff",
        {},
        "WS_ERR_INVALID_UTF8",
        1007,
    ),
    ("close-code-1005-on-wire", False, b"\x88\x02\x03\xed", {}, "WS_ERR_INVALID_CLOSE_CODE", 1002),
]


@pytest.mark.parametrize(
    "is_server, data, options, code, status",
    [e[1:] for e in PROTOCOL_ERRORS],
    ids=[e[0] for e in PROTOCOL_ERRORS],
)
def test_protocol_error_fails_the_connection(
    is_server: bool, data: bytes, options: dict[str, Any], code: str, status: int
) -> None:
    conn = Conn(is_server, close_timeout=2, **options)
    proto = conn.proto
    proto.receive_data(data)
    assert conn.written() == ours(is_server, b"\x88\x02", status.to_bytes(2, "big"))
    assert proto.close_code == status
    assert proto.error is not None and proto.error.code == code
    assert proto.error.status_code == status
    assert [e[0] for e in conn.events] == ["error"] and conn.events[0][1] is proto.error
    # RFC 6455 7.1.7: fail = send close, then close TCP (without waiting for the peer's close).
    assert proto.eof_due and proto.timer == 2 and proto.pending
    assert proto.state is CLOSING and proto.close_sent and not proto.close_received
    assert not proto.abort_due
    # Later input, valid or not, is ignored.
    proto.receive_data(hello(is_server) + data + close_frame(is_server, b"\x03\xe8"))
    assert conn.written() == b"" and len(conn.events) == 1
    proto.connection_lost()
    assert proto.state is CLOSED and proto.close_code == status


@ROLES
def test_protocol_error_after_our_close(is_server: bool) -> None:
    # Our close frame is out: no second one; the error's code still wins over 1006.
    conn = Conn(is_server)
    proto = conn.proto
    proto.close(1000)
    conn.written()
    proto.eof_due = proto.pending = False
    proto.timer = None
    proto.receive_data(peer(is_server, b"\xff", 0x1))
    assert conn.written() == b""
    assert proto.error is not None and proto.error.code == "WS_ERR_INVALID_UTF8"
    assert proto.close_code == 1007 and proto.eof_due and proto.state is CLOSING
    assert [e[0] for e in conn.events] == ["error"]


@ROLES
def test_fail_after_the_peers_close_keeps_its_code(is_server: bool) -> None:
    # An adapter fails the connection itself when a listener raises (1011); the peer's close
    # was already received and answered, so its code stays and no frame is written.
    conn = Conn(is_server)
    proto = conn.proto
    proto.receive_data(close_frame(is_server, b"\x03\xe9"))
    conn.written()
    proto.eof_due = False
    exc = WebSocketError("internal error", "WS_ERR_INTERNAL", 1011)
    proto.fail(exc)
    assert conn.written() == b""
    assert proto.close_code == 1001 and proto.error is exc and proto.eof_due
    assert conn.events[-1] == ("error", exc)


def test_fail_only_once_and_not_when_closed() -> None:
    conn = Conn(True)
    proto = conn.proto
    first = WebSocketError("first", "WS_ERR_INTERNAL", 1011)
    proto.fail(first)
    assert conn.written() == b"\x88\x02\x03\xf3"
    proto.fail(WebSocketError("second", "WS_ERR_INTERNAL", 1002))
    assert proto.error is first and proto.close_code == 1011 and conn.written() == b""
    assert conn.events == [("error", first)]

    other = Conn(False)
    other.proto.connection_lost()
    other.proto.fail(first)
    assert other.proto.error is None and other.written() == b"" and other.events == []


# -- EOF, connection loss, timer, terminate -------------------------------------------------------


@ROLES
def test_receive_eof_while_open(is_server: bool) -> None:
    conn = Conn(is_server)
    proto = conn.proto
    proto.receive_eof()
    assert proto.eof_received and proto.state is CLOSING
    assert conn.written() == b"" and not proto.pending and not proto.eof_due
    proto.receive_data(hello(is_server))  # nothing arrives after EOF
    assert conn.events == []
    with pytest.raises(InvalidState):
        proto.send("x")
    proto.close(1000)  # too late for a handshake: nothing written
    assert conn.written() == b""
    proto.connection_lost()
    assert proto.state is CLOSED and proto.close_code == 1006


@ROLES
def test_receive_eof_while_closing(is_server: bool) -> None:
    conn = Conn(is_server)
    proto = conn.proto
    proto.close(1000)
    proto.receive_eof()
    assert proto.state is CLOSING and proto.eof_received and not proto.close_received


@ROLES
def test_connection_lost(is_server: bool) -> None:
    conn = Conn(is_server)
    proto = conn.proto
    proto.connection_lost()
    assert proto.state is CLOSED and proto.close_code == 1006 and proto.close_reason == ""
    assert conn.events == [] and conn.written() == b""
    proto.receive_data(hello(is_server))
    assert conn.events == []
    proto.connection_lost()  # once only
    assert proto.state is CLOSED


@ROLES
def test_connection_lost_keeps_the_received_code(is_server: bool) -> None:
    proto = Conn(is_server).proto
    proto.receive_data(close_frame(is_server, b"\x0b\xb8app"))
    proto.connection_lost()
    assert proto.close_code == 3000 and proto.close_reason == "app"


class RecordingDeflate(PerMessageDeflate):
    """permessage-deflate that counts its cleanups."""

    __slots__ = ("cleanups",)

    def __init__(self, is_server: bool) -> None:
        super().__init__(is_server=is_server)
        self.cleanups = 0
        self.accept([{}])

    def cleanup(self) -> None:
        self.cleanups += 1
        super().cleanup()


@ROLES
def test_compressed_message_and_connection_lost_releases_deflate(is_server: bool) -> None:
    deflate = RecordingDeflate(is_server)
    proto = Protocol(
        is_server=is_server,
        options=ConnectionOptions(generate_mask=lambda: ZERO),
        deflate=deflate,
    )
    proto.send(b"x" * 2000)
    (out,) = proto.data_to_send()
    assert out[0] == 0xC2  # FIN + RSV1 (RFC 7692 6) + binary
    proto.connection_lost()
    proto.connection_lost()
    assert deflate.cleanups == 1


@ROLES
def test_expire_drops_the_connection(is_server: bool) -> None:
    proto = Conn(is_server).proto
    proto.close(1000)
    proto.pending = False
    proto.expire()
    assert proto.abort_due and proto.pending and proto.state is CLOSING
    proto.abort_due = proto.pending = False
    proto.connection_lost()
    proto.expire()  # a timer firing after the close: nothing to do
    assert not proto.abort_due and not proto.pending


@ROLES
def test_terminate(is_server: bool) -> None:
    conn = Conn(is_server)
    proto = conn.proto
    proto.terminate()
    assert proto.abort_due and proto.pending and proto.state is CLOSING
    assert conn.written() == b"" and not proto.close_sent and proto.timer is None
    proto.receive_data(hello(is_server))
    assert conn.events == []
    with pytest.raises(InvalidState):
        proto.ping()
    proto.abort_due = proto.pending = False
    proto.connection_lost()
    assert proto.close_code == 1006
    proto.terminate()
    assert not proto.abort_due and proto.state is CLOSED


@ROLES
def test_callbacks_are_optional(is_server: bool) -> None:
    proto = Protocol(is_server=is_server, options=ConnectionOptions(generate_mask=lambda: ZERO))
    proto.receive_data(
        hello(is_server)
        + peer(is_server, b"", 0x9)
        + peer(is_server, b"", 0xA)
        + close_frame(is_server, b"\x03\xe8")
    )
    assert proto.close_code == 1000
    other = Protocol(is_server=is_server, options=ConnectionOptions(generate_mask=lambda: ZERO))
    other.receive_data(peer(is_server, b"", 0x3))
    assert other.error is not None and other.close_code == 1002


@pytest.mark.parametrize("drop", ["terminate", "expire"])
def test_fail_after_the_connection_is_dropped_does_nothing(drop: str) -> None:
    # A listener that terminates its connection and then raises: the adapter fails the
    # connection (1011) on top; nothing more may be written or reported.
    errors: list[Any] = []
    proto = Protocol(is_server=True, options=ConnectionOptions(), on_error=errors.append)
    if drop == "terminate":
        proto.terminate()
    else:
        proto.close(1000)
        proto.data_to_send()
        proto.expire()
    proto.fail(WebSocketError("bug", "WS_ERR_INTERNAL", 1011))
    assert errors == []
    assert proto.error is None
    assert proto.data_to_send() == []
    assert proto.abort_due and not proto.eof_due

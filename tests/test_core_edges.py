"""Edge cases of the sans-I/O core that the larger tables do not reach."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import MASK

from wsfast import handshake
from wsfast.constants import OP_BINARY, OP_CONTINUATION, OP_TEXT
from wsfast.exceptions import WebSocketError
from wsfast.receiver import DONE, Receiver
from wsfast.sender import frame


def masked(payload: bytes, opcode: int, fin: bool = True) -> bytes:
    return bytes(frame(payload, opcode, fin=fin, mask=MASK))


def test_receiver_without_callbacks_parses_and_ignores() -> None:
    receiver = Receiver(is_server=True)
    receiver.feed(masked(b"x", OP_BINARY) + masked(b"", 0x9) + masked(b"\x03\xe8", 0x8))
    assert receiver.state == DONE


def test_a_listener_that_ends_the_receiver_stops_the_fast_path() -> None:
    seen: list[Any] = []

    def on_message(data: Any, binary: bool) -> None:
        seen.append(data)
        receiver.state = DONE  # what WebSocket._end() does once the connection is ending

    receiver = Receiver(is_server=True, on_message=on_message)
    receiver.feed(masked(b"one", OP_BINARY) + masked(b"two", OP_BINARY))
    assert seen == [b"one"]
    receiver.feed(masked(b"three", OP_BINARY))
    assert seen == [b"one"]


@pytest.mark.parametrize("binary_type", ["bytes", "fragments"])
def test_empty_final_fragment(binary_type: str) -> None:
    seen: list[Any] = []
    receiver = Receiver(
        is_server=True, binary_type=binary_type, on_message=lambda d, b: seen.append(d)
    )
    receiver.feed(masked(b"ab", OP_BINARY, fin=False) + masked(b"", OP_CONTINUATION))
    assert seen == ([b"ab"] if binary_type == "bytes" else [[b"ab"]])


@pytest.mark.parametrize("binary_type", ["bytes", "bytearray"])
def test_binary_type_changed_mid_message_keeps_every_fragment(binary_type: str) -> None:
    seen: list[Any] = []
    receiver = Receiver(
        is_server=True, binary_type="fragments", on_message=lambda d, b: seen.append(d)
    )
    receiver.feed(masked(b"ab", OP_BINARY, fin=False))
    receiver.binary_type = binary_type
    receiver.feed(masked(b"cd", OP_CONTINUATION))
    assert seen == [b"abcd"] and type(seen[0]).__name__ == binary_type


def test_skip_utf8_validation_on_fragments_replaces_instead_of_failing() -> None:
    seen: list[Any] = []
    receiver = Receiver(
        is_server=True, skip_utf8_validation=True, on_message=lambda d, b: seen.append(d)
    )
    receiver.feed(masked(b"a\xff", OP_TEXT, fin=False) + masked(b"b", OP_CONTINUATION))
    assert seen == ["a\ufffdb"]


def test_strict_text_fragments_still_fail() -> None:
    receiver = Receiver(is_server=True)
    with pytest.raises(WebSocketError) as info:
        receiver.feed(masked(b"a\xff", OP_TEXT, fin=False))
    assert (info.value.code, info.value.status_code) == ("WS_ERR_INVALID_UTF8", 1007)


def test_large_masked_frame_round_trips() -> None:
    payload = bytes(range(256)) * 64  # 16 KiB: the preallocated masking path of frame()
    seen: list[Any] = []
    Receiver(is_server=True, on_message=lambda d, b: seen.append(d)).feed(
        masked(payload, OP_BINARY)
    )
    assert seen == [payload]


def test_headers_mapping_protocol() -> None:
    headers = handshake.Headers([("A", "1"), ("b", "2"), ("a", "3")])
    assert list(headers) == ["a", "b"]
    assert headers["A"] == "1, 3" and len(headers) == 2
    assert "Headers(" in repr(headers)


def test_request_url_is_its_target() -> None:
    request = handshake.Request("GET", "/chat?x=1", handshake.Headers())
    assert request.url == "/chat?x=1"


@pytest.mark.parametrize(
    "line",
    ["GET /", "GET / HTTP/2.0", "G(T / HTTP/1.1", "GET  / HTTP/1.1"],
    ids=["two-parts", "http2", "bad-method", "double-space"],
)
def test_bad_request_lines_are_400(line: str) -> None:
    with pytest.raises(handshake.RequestError) as info:
        handshake.parse_request_line(line)
    assert info.value.status == 400


@pytest.mark.parametrize(
    "raw",
    [b"GET / HTTP/1.1\r\nA: b\nc\r\n\r\n", b"GET / HTTP/1.1\r\nA: b\x00\r\n\r\n"],
    ids=["bare-lf-in-value", "nul-in-value"],
)
def test_control_characters_in_header_values_are_400(raw: bytes) -> None:
    with pytest.raises(handshake.RequestError) as info:
        handshake.parse_head(raw)
    assert info.value.status == 400

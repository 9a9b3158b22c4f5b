"""permessage-deflate (RFC 7692): negotiation with ws' rules, compression, bombs, bad data."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pytest

from wsfast import extension, permessage_deflate
from wsfast.exceptions import WebSocketError
from wsfast.permessage_deflate import TRAILER, PerMessageDeflate


def offers(header: str) -> list[dict[str, list[str | bool]]]:
    """The permessage-deflate configurations of a header, as the handshake passes them."""
    parsed = extension.parse(header)
    return parsed["permessage-deflate"]  # type: ignore[return-value]


def server(
    options: dict[str, Any] | None = None, header: str = "permessage-deflate", max_payload: int = 0
) -> PerMessageDeflate:
    pmd = PerMessageDeflate(options, is_server=True, max_payload=max_payload)
    pmd.accept(offers(header))
    return pmd


def client(
    options: dict[str, Any] | None = None, header: str = "permessage-deflate", max_payload: int = 0
) -> PerMessageDeflate:
    pmd = PerMessageDeflate(options, is_server=False, max_payload=max_payload)
    pmd.accept(offers(header))
    return pmd


def text(size: int, seed: int = 0) -> bytes:
    """Compressible, not trivially: words drawn at random."""
    rng = random.Random(seed)
    words = [b"hello", b"world", b"deflate", b"frame", b"socket", b"message", b"42", b"{}"]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


def repeats(span: int) -> bytes:
    """Random blocks each repeated at a distance just under ``span``: matches only a window of
    at least ``span`` bytes can find."""
    rng = random.Random(span)
    out = bytearray()
    for _ in range(8):
        block = rng.randbytes(span - 16)
        out += block + block
    return bytes(out)


def inflate_bytewise(data: bytes, wbits: int) -> bytes:
    """Inflate one byte of input at a time, so every back reference must reach into zlib's own
    window (within a single call zlib also lets a reference reach this call's output)."""
    inflate = zlib.decompressobj(-wbits)
    return b"".join(inflate.decompress(data[i : i + 1]) for i in range(len(data)))


# -- negotiation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param(None, {"client_max_window_bits": True}, id="defaults"),
        pytest.param(True, {"client_max_window_bits": True}, id="true"),
        pytest.param({"client_max_window_bits": False}, {}, id="client-bits-false"),
        pytest.param({"client_max_window_bits": 10}, {"client_max_window_bits": 10}, id="bits-10"),
        pytest.param(
            {
                "server_no_context_takeover": True,
                "client_no_context_takeover": True,
                "server_max_window_bits": 9,
                "client_max_window_bits": 8,
            },
            {
                "server_no_context_takeover": True,
                "client_no_context_takeover": True,
                "server_max_window_bits": 9,
                "client_max_window_bits": 8,
            },
            id="all",
        ),
        # ws would offer a bare server_max_window_bits, which servers must refuse.
        pytest.param(
            {"server_max_window_bits": True}, {"client_max_window_bits": True}, id="server-true"
        ),
        pytest.param(
            {"server_no_context_takeover": False, "client_no_context_takeover": False},
            {"client_max_window_bits": True},
            id="takeover-false",
        ),
    ],
)
def test_offer(options: Any, expected: dict[str, Any]) -> None:
    assert PerMessageDeflate(options).offer() == expected


def test_offer_formats_as_ws() -> None:
    offer = PerMessageDeflate({"server_no_context_takeover": True}).offer()
    assert (
        extension.format({PerMessageDeflate.EXTENSION_NAME: offer})
        == "permessage-deflate; server_no_context_takeover; client_max_window_bits"
    )


@pytest.mark.parametrize(
    ("options", "header", "expected"),
    [
        pytest.param(None, "permessage-deflate", {}, id="plain"),
        pytest.param(
            None, "permessage-deflate; client_max_window_bits", {}, id="bare-bits-dropped"
        ),
        pytest.param(
            None,
            "permessage-deflate; client_max_window_bits=10",
            {"client_max_window_bits": 10},
            id="client-hint-kept",
        ),
        pytest.param(
            None,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
            {"server_no_context_takeover": True, "server_max_window_bits": 9},
            id="client-requests-kept",
        ),
        pytest.param(
            {
                "server_no_context_takeover": True,
                "client_no_context_takeover": True,
                "server_max_window_bits": 10,
                "client_max_window_bits": 11,
            },
            "permessage-deflate; client_max_window_bits",
            {
                "server_no_context_takeover": True,
                "client_no_context_takeover": True,
                "server_max_window_bits": 10,
                "client_max_window_bits": 11,
            },
            id="server-options-added",
        ),
        pytest.param(
            {"server_max_window_bits": 10},
            "permessage-deflate; server_max_window_bits=8, permessage-deflate; "
            "server_max_window_bits=12, permessage-deflate",
            {"server_max_window_bits": 10},
            id="first-acceptable-offer",
        ),
        pytest.param(
            {"server_no_context_takeover": False},
            "permessage-deflate; server_no_context_takeover, permessage-deflate; "
            "client_no_context_takeover",
            {"client_no_context_takeover": True},
            id="skip-forbidden-no-context-takeover",
        ),
        pytest.param(
            {"server_max_window_bits": False},
            "permessage-deflate; server_max_window_bits=10, permessage-deflate",
            {},
            id="skip-forbidden-server-bits",
        ),
        pytest.param(
            {"client_max_window_bits": 9},
            "permessage-deflate, permessage-deflate; client_max_window_bits=12",
            {"client_max_window_bits": 9},
            id="skip-offer-without-client-bits",
        ),
        pytest.param(
            {"client_max_window_bits": 10},
            "permessage-deflate; client_max_window_bits=9, permessage-deflate; "
            "client_max_window_bits=10",
            {"client_max_window_bits": 10},
            id="skip-offer-with-smaller-client-bits",
        ),
        pytest.param(
            {"client_max_window_bits": False},
            "permessage-deflate; client_max_window_bits=12",
            {},
            id="client-bits-false-dropped",
        ),
        pytest.param(
            {"server_max_window_bits": True},
            "permessage-deflate; server_max_window_bits=12",
            {"server_max_window_bits": 12},
            id="server-bits-true-takes-offer",
        ),
    ],
)
def test_accept_as_server(options: Any, header: str, expected: dict[str, Any]) -> None:
    pmd = server(options, header)
    assert pmd.params == expected


def test_accept_as_server_response_formats_as_ws() -> None:
    pmd = server({"server_max_window_bits": 10}, "permessage-deflate; client_max_window_bits")
    assert pmd.params is not None
    assert (
        extension.format({PerMessageDeflate.EXTENSION_NAME: pmd.params})
        == "permessage-deflate; server_max_window_bits=10"
    )


@pytest.mark.parametrize(
    ("options", "header", "expected"),
    [
        pytest.param(None, "permessage-deflate", {}, id="plain"),
        pytest.param(
            None,
            "permessage-deflate; client_max_window_bits=10",
            {"client_max_window_bits": 10},
            id="server-limits-offered-bits",
        ),
        pytest.param(
            {"client_max_window_bits": 10},
            "permessage-deflate",
            {"client_max_window_bits": 10},
            id="own-bits-kept",
        ),
        pytest.param(
            {"client_max_window_bits": 10},
            "permessage-deflate; client_max_window_bits=9",
            {"client_max_window_bits": 9},
            id="smaller-bits-accepted",
        ),
        pytest.param(
            None,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=8",
            {
                "server_no_context_takeover": True,
                "client_no_context_takeover": True,
                "server_max_window_bits": 8,
            },
            id="all-from-server",
        ),
    ],
)
def test_accept_as_client(options: Any, header: str, expected: dict[str, Any]) -> None:
    assert client(options, header).params == expected


@pytest.mark.parametrize(
    ("is_server", "options", "header", "message"),
    [
        pytest.param(
            True,
            None,
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            'Parameter "server_max_window_bits" must have only a single value',
            id="duplicate-server-bits",
        ),
        pytest.param(
            True,
            None,
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            'Parameter "client_no_context_takeover" must have only a single value',
            id="duplicate-flag",
        ),
        pytest.param(
            True,
            None,
            "permessage-deflate, permessage-deflate; foo",
            'Unknown parameter "foo"',
            id="unknown-in-later-offer",
        ),
        pytest.param(
            True,
            None,
            "permessage-deflate; server_max_window_bits=7",
            'Invalid value for parameter "server_max_window_bits": 7',
            id="server-bits-7",
        ),
        pytest.param(
            True,
            None,
            "permessage-deflate; server_max_window_bits=16",
            'Invalid value for parameter "server_max_window_bits": 16',
            id="server-bits-16",
        ),
        pytest.param(
            True,
            None,
            "permessage-deflate; server_max_window_bits=abc",
            'Invalid value for parameter "server_max_window_bits": abc',
            id="server-bits-abc",
        ),
        pytest.param(
            True,
            None,
            "permessage-deflate; server_max_window_bits",
            'Invalid value for parameter "server_max_window_bits": true',
            id="server-bits-bare",
        ),
        pytest.param(
            True,
            None,
            "permessage-deflate; client_max_window_bits=010",
            'Invalid value for parameter "client_max_window_bits": 010',
            id="leading-zero-rfc7692",
        ),
        pytest.param(
            True,
            None,
            "permessage-deflate; client_max_window_bits=0xa",
            'Invalid value for parameter "client_max_window_bits": 0xa',
            id="hex-rfc7692",
        ),
        pytest.param(
            True,
            None,
            'permessage-deflate; client_max_window_bits="1e1"',
            'Invalid value for parameter "client_max_window_bits": 1e1',
            id="exponent-rfc7692",
        ),
        pytest.param(
            True,
            None,
            "permessage-deflate; client_max_window_bits=8.5",
            'Invalid value for parameter "client_max_window_bits": 8.5',
            id="fraction",
        ),
        pytest.param(
            True,
            None,
            "permessage-deflate; server_no_context_takeover=1",
            'Invalid value for parameter "server_no_context_takeover": 1',
            id="flag-with-value",
        ),
        pytest.param(
            True,
            {"client_max_window_bits": 10},
            "permessage-deflate",
            "None of the extension offers can be accepted",
            id="nothing-acceptable",
        ),
        pytest.param(
            True,
            {"server_max_window_bits": 12},
            "permessage-deflate; server_max_window_bits=11",
            "None of the extension offers can be accepted",
            id="server-window-too-small",
        ),
        pytest.param(
            False,
            None,
            "permessage-deflate; client_max_window_bits",
            'Invalid value for parameter "client_max_window_bits": true',
            id="client-bits-bare-in-response",
        ),
        pytest.param(
            False,
            {"client_no_context_takeover": False},
            "permessage-deflate; client_no_context_takeover",
            'Unexpected parameter "client_no_context_takeover"',
            id="client-takeover-forbidden",
        ),
        pytest.param(
            False,
            {"client_max_window_bits": False},
            "permessage-deflate; client_max_window_bits=10",
            'Unexpected or invalid parameter "client_max_window_bits"',
            id="client-bits-not-offered",
        ),
        pytest.param(
            False,
            {"client_max_window_bits": 10},
            "permessage-deflate; client_max_window_bits=11",
            'Unexpected or invalid parameter "client_max_window_bits"',
            id="client-bits-above-offer",
        ),
        pytest.param(
            False,
            None,
            "permessage-deflate; server_max_window_bits=5",
            'Invalid value for parameter "server_max_window_bits": 5',
            id="response-server-bits-5",
        ),
    ],
)
def test_accept_invalid(is_server: bool, options: Any, header: str, message: str) -> None:
    pmd = PerMessageDeflate(options, is_server=is_server)
    with pytest.raises(ValueError) as info:
        pmd.accept(offers(header))
    assert str(info.value) == message
    assert pmd.params is None


@pytest.mark.parametrize(
    "options",
    [
        {"server_max_window_bits": 7},
        {"client_max_window_bits": 16},
        {"client_max_window_bits": "9"},
    ],
    ids=repr,
)
def test_invalid_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="Invalid value for option"):
        PerMessageDeflate(options)


def test_threshold() -> None:
    assert PerMessageDeflate().threshold == 1024
    assert PerMessageDeflate({"threshold": 0}).threshold == 0
    assert PerMessageDeflate.EXTENSION_NAME == "permessage-deflate"


def test_use_before_accept() -> None:
    with pytest.raises(RuntimeError):
        PerMessageDeflate().compress(b"x", True)
    with pytest.raises(RuntimeError):
        PerMessageDeflate().decompress(b"x", True)


# -- RFC 7692 section 7.2.3 examples -----------------------------------------------------------


def test_rfc_hello() -> None:
    pmd = server()
    assert pmd.compress(b"Hello", True) == bytes.fromhex("f2 48 cd c9 c9 07 00")
    assert client().decompress(bytes.fromhex("f2 48 cd c9 c9 07 00"), True) == b"Hello"


def test_rfc_hello_fragmented() -> None:
    pmd = client()
    assert (
        pmd.decompress(bytes.fromhex("f2 48 cd"), False)
        + pmd.decompress(bytes.fromhex("c9 c9 07 00"), True)
        == b"Hello"
    )


def test_rfc_shared_context() -> None:
    sender = server()
    assert sender.compress(b"Hello", True) == bytes.fromhex("f2 48 cd c9 c9 07 00")
    assert sender.compress(b"Hello", True) == bytes.fromhex("f2 00 11 00 00")
    receiver = client()
    assert receiver.decompress(bytes.fromhex("f2 48 cd c9 c9 07 00"), True) == b"Hello"
    assert receiver.decompress(bytes.fromhex("f2 00 11 00 00"), True) == b"Hello"


def test_rfc_no_context_takeover_repeats_bytes() -> None:
    sender = server(header="permessage-deflate; server_no_context_takeover")
    assert sender.compress(b"Hello", True) == bytes.fromhex("f2 48 cd c9 c9 07 00")
    assert sender.compress(b"Hello", True) == bytes.fromhex("f2 48 cd c9 c9 07 00")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param("00 05 00 fa ff 48 65 6c 6c 6f 00", id="stored-block"),
        pytest.param("f3 48 cd c9 c9 07 00", id="bfinal"),
        pytest.param("f3 48 cd c9 c9 07 00 00", id="bfinal-padded"),
        pytest.param("f2 48 05 00 00 00 ff ff ca c9 c9 07 00", id="two-blocks"),
    ],
)
def test_rfc_payloads(payload: str) -> None:
    receiver = client()
    assert receiver.decompress(bytes.fromhex(payload), True) == b"Hello"
    # Whatever ended the first message, the next one starts a stream of its own.
    assert receiver.decompress(bytes.fromhex("f2 48 cd c9 c9 07 00"), True) == b"Hello"


def test_fresh_inflater_after_final_block() -> None:
    receiver = client()
    sender = zlib.compressobj(6, zlib.DEFLATED, -15)
    final = sender.compress(b"Hello") + sender.flush(zlib.Z_FINISH)  # BFINAL set
    assert receiver.decompress(final, True) == b"Hello"
    assert receiver.decompress(server().compress(b"World", True), True) == b"World"


def test_frames_after_final_block_are_ignored() -> None:
    receiver = client()
    assert receiver.decompress(bytes.fromhex("f3 48 cd c9 c9 07 00"), False) == b"Hello"
    assert receiver.decompress(b"\x00" * 1000, False) == b""
    assert receiver.decompress(b"\x00", True) == b""
    assert receiver.decompress(bytes.fromhex("f2 48 cd c9 c9 07 00"), True) == b"Hello"


# -- round trips -------------------------------------------------------------------------------


def test_empty_message() -> None:
    sender = server()
    assert sender.compress(b"", True) == b"\x00"  # what ws sends for an empty message
    assert client().decompress(b"\x00", True) == b""
    assert zlib.decompressobj(-15).decompress(b"\x00" + TRAILER) == b""


@pytest.mark.parametrize("takeover", [True, False], ids=["takeover", "no-takeover"])
@pytest.mark.parametrize("bits", range(8, 16))
def test_round_trip_windows(bits: int, takeover: bool) -> None:
    header = f"permessage-deflate; server_max_window_bits={bits}"
    if not takeover:
        header += "; server_no_context_takeover"
    sender = server(header=header)
    receiver = client(header=header)
    for seed in range(4):
        message = text(3000, seed) + repeats(1 << min(bits, 12))
        data = sender.compress(message, True)
        assert not data.endswith(TRAILER)
        assert receiver.decompress(data, True) == message
        if not takeover:
            # Each message stands alone: a fresh peer inflater with the window reads it.
            assert inflate_bytewise(data + TRAILER, bits) == message


# zlib-ng picks a different algorithm per level band (1, 2-6 and 7-9): each must keep within
# the window.
LEVELS = (1, 4, 6, 9)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("bits", range(9, 16))
def test_compressor_honours_window(bits: int, level: int) -> None:
    sender = client({"level": level}, header=f"permessage-deflate; client_max_window_bits={bits}")
    message = repeats(1 << bits) + repeats(1 << (bits - 1))
    assert inflate_bytewise(sender.compress(message, True) + TRAILER, bits) == message


@pytest.mark.parametrize("level", LEVELS)
def test_window_8_inflates_with_an_8_bit_window(level: int) -> None:
    # Python's zlib refuses a raw 8-bit compressor, so window 8 compresses with 9 (as Node); a
    # peer inflating with 8 bits still reads it: deflate's longest distance with a 512-byte
    # window is 512 - 262 (MIN_LOOKAHEAD) = 250 bytes.
    with pytest.raises(ValueError):
        zlib.compressobj(6, zlib.DEFLATED, -8)
    sender = client({"level": level}, header="permessage-deflate; client_max_window_bits=8")
    message = text(8000) + b"".join(repeats(span) for span in (40, 120, 250, 256, 300, 400, 512))
    data = sender.compress(message, True)
    assert inflate_bytewise(data + TRAILER, 8) == message
    assert len(data) < len(message) * 0.8  # it still compresses
    # Across messages too, with context takeover.
    second = sender.compress(message, True)
    inflate = zlib.decompressobj(-8)
    for chunk in (data, second):
        assert (
            b"".join(inflate.decompress(chunk[i : i + 1]) for i in range(len(chunk)))
            + (inflate.decompress(TRAILER))
            == message
        )


def test_window_8_control_15_bit_stream_is_refused() -> None:
    # The check above would catch an oversized window: the same bytes from a 15-bit compressor
    # are refused by an 8-bit inflater.
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = deflate.compress(repeats(300)) + deflate.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(zlib.error, match="too far back"):
        inflate_bytewise(data, 8)


def test_window_8_both_directions() -> None:
    header = "permessage-deflate; server_max_window_bits=8; client_max_window_bits=8"
    a = server(header=header)
    b = client(header=header)
    message = text(5000) + repeats(256)
    assert b.decompress(a.compress(message, True), True) == message
    assert a.decompress(b.compress(message, True), True) == message


@pytest.mark.parametrize("takeover", [True, False], ids=["takeover", "no-takeover"])
def test_fragmented_message(takeover: bool) -> None:
    header = "permessage-deflate" + ("" if takeover else "; client_no_context_takeover")
    sender = client(header=header)
    receiver = server(header=header)
    for seed in range(3):
        parts = [text(700, seed * 10 + i) for i in range(4)] + [b""]
        frames = [sender.compress(part, i == len(parts) - 1) for i, part in enumerate(parts)]
        assert all(frame.endswith(TRAILER) for frame in frames[:-1])
        got = [receiver.decompress(frame, i == len(frames) - 1) for i, frame in enumerate(frames)]
        assert got == parts


def test_binary_and_large() -> None:
    sender = server()
    receiver = client(max_payload=4 << 20)
    for message in (os.urandom(1 << 20), text(1 << 20), bytes(3 << 20)):
        assert receiver.decompress(sender.compress(message, True), True) == message


def test_inflate_step_boundaries() -> None:
    # Outputs of exactly one and two steps (256 KiB) and around them, with a limit in force.
    for size in (256 * 1024 - 1, 256 * 1024, 256 * 1024 + 1, 512 * 1024):
        message = text(size)
        receiver = client(max_payload=size)
        assert receiver.decompress(server().compress(message, True), True) == message


@pytest.mark.parametrize("level", [0, 1, 9])
def test_level_options(level: int) -> None:
    message = text(10000)
    for options in ({"level": level}, {"zlib_deflate_options": {"level": level}}):
        sender = server(options)
        data = sender.compress(message, True)
        assert client().decompress(data, True) == message
        if level == 0:
            assert len(data) > len(message)  # stored blocks


def test_lazy_contexts_and_cleanup() -> None:
    # An idle connection that negotiated compression holds no zlib context.
    pmd = server()
    assert pmd._deflate is None and pmd._inflate is None
    pmd.compress(b"x" * 2000, True)
    pmd.decompress(client().compress(b"y" * 2000, True), True)
    assert pmd._deflate is not None and pmd._inflate is not None
    pmd.cleanup()
    assert pmd._deflate is None and pmd._inflate is None
    # No context takeover frees them after every message.
    header = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    pmd = server(header=header)
    pmd.compress(b"x" * 2000, True)
    pmd.decompress(client(header=header).compress(b"y" * 2000, True), True)
    assert pmd._deflate is None and pmd._inflate is None


# -- max_payload and bombs ---------------------------------------------------------------------


def bomb(size: int) -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    return deflate.compress(bytes(size)) + deflate.flush(zlib.Z_SYNC_FLUSH)[:-4]


def test_bomb_refused_before_memory_is_spent() -> None:
    limit = 1 << 20
    data = bomb(10_000_000)
    assert len(data) < 20_000  # ~10 KB on the wire
    receiver = client(max_payload=limit)
    tracemalloc.start()
    try:
        with pytest.raises(WebSocketError) as info:
            receiver.decompress(data, True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH"
    assert info.value.status_code == 1009
    assert str(info.value) == "Max payload size exceeded"
    # Measured: ~1.3 MiB (the allowance, one 256 KiB step, zlib's state); 10 MB if inflated.
    assert peak < 1.5 * limit, peak


def test_bomb_across_frames() -> None:
    limit = 100_000
    sender = server()
    frames = [sender.compress(bytes(30_000), False) for _ in range(3)]
    frames.append(sender.compress(bytes(30_000), True))
    receiver = client(max_payload=limit)
    for frame in frames[:3]:
        assert receiver.decompress(frame, False) == bytes(30_000)
    with pytest.raises(WebSocketError) as info:
        receiver.decompress(frames[3], True)
    assert info.value.status_code == 1009


def test_limit_counts_each_message_afresh() -> None:
    sender = server()
    receiver = client(max_payload=1000)
    for _ in range(5):
        assert receiver.decompress(sender.compress(bytes(1000), True), True) == bytes(1000)
    with pytest.raises(WebSocketError) as info:
        receiver.decompress(sender.compress(bytes(1001), True), True)
    assert info.value.code == "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH"


def test_no_limit() -> None:
    assert client().decompress(bomb(10_000_000), True) == bytes(10_000_000)


# -- invalid data ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\xff\xff\xff\xff", id="reserved-block-type"),
        pytest.param(b"\x00\x05\x00\x00\x00Hello", id="stored-length-mismatch"),
        pytest.param(bytes.fromhex("f2 00 11 00 00"), id="reference-without-history"),
    ],
)
def test_invalid_data(payload: bytes) -> None:
    receiver = client(max_payload=1 << 20)
    with pytest.raises(WebSocketError) as info:
        receiver.decompress(payload, True)
    assert info.value.code == "WS_ERR_INVALID_COMPRESSED_DATA"
    assert info.value.status_code == 1007
    # the error of the zlib in use (zlib-ng.error with wsfast[speedups], zlib.error without)
    assert isinstance(info.value.__cause__, permessage_deflate._ZLIB_ERRORS)


def test_invalid_data_without_limit() -> None:
    with pytest.raises(WebSocketError) as info:
        client().decompress(b"\xff\xff\xff\xff", True)
    assert info.value.status_code == 1007


def test_peer_without_context_takeover_cannot_reference_history() -> None:
    # The peer promised client_no_context_takeover yet refers to its previous message.
    header = "permessage-deflate; client_no_context_takeover"
    receiver = server(header=header)
    assert receiver.decompress(bytes.fromhex("f2 48 cd c9 c9 07 00"), True) == b"Hello"
    with pytest.raises(WebSocketError) as info:
        receiver.decompress(bytes.fromhex("f2 00 11 00 00"), True)
    assert info.value.status_code == 1007


# -- differential against node's ws (skipped without node and tests/interop/node_modules/ws) -----

WS_LIB = Path(__file__).parent / "interop" / "node_modules" / "ws" / "lib"

# Runs ws' own PerMessageDeflate on a JSON list of jobs from stdin and prints one JSON result per
# job: the negotiated params (or the error message), or the hex of compressed/inflated frames.
NODE_SCRIPT = r"""
const PerMessageDeflate = require(process.argv[1] + '/permessage-deflate.js');
const extension = require(process.argv[1] + '/extension.js');
const jobs = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const run = (pmd, method, frames) => frames.reduce((chain, [hex, fin]) => chain.then((out) =>
  new Promise((resolve, reject) => pmd[method](Buffer.from(hex, 'hex'), fin, (err, data) =>
    err ? reject(err) : resolve(out.concat([data.toString('hex')]))))), Promise.resolve([]));
(async () => {
  const results = [];
  for (const job of jobs) {
    const pmd = new PerMessageDeflate({ ...job.options, isServer: job.isServer });
    try {
      const params = pmd.accept(extension.parse(job.header)['permessage-deflate']);
      if (job.method) results.push(await run(pmd, job.method, job.frames));
      else results.push({ params });
    } catch (err) {
      results.push({ error: err.message });
    }
    pmd.cleanup();
  }
  process.stdout.write(JSON.stringify(results));
})();
"""


def camel(options: dict[str, Any] | None) -> dict[str, Any]:
    return {
        re.sub(r"_(\w)", lambda m: m.group(1).upper(), key): value
        for key, value in (options or {}).items()
    }


def ws(jobs: list[dict[str, Any]]) -> list[Any]:
    node = shutil.which("node")
    if node is None or not (WS_LIB / "permessage-deflate.js").exists():
        pytest.skip("node or tests/interop/node_modules/ws is missing")
    for job in jobs:
        job["options"] = camel(job.get("options"))
    done = subprocess.run(
        [node, "-e", NODE_SCRIPT, str(WS_LIB)],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    results: list[Any] = json.loads(done.stdout)
    return results


NEGOTIATIONS: list[tuple[bool, dict[str, Any] | None, str]] = [
    (True, None, "permessage-deflate"),
    (True, None, "permessage-deflate; client_max_window_bits"),
    (True, None, "permessage-deflate; client_max_window_bits=10"),
    (True, None, "permessage-deflate; server_no_context_takeover; server_max_window_bits=9"),
    (
        True,
        {"server_max_window_bits": 10},
        "permessage-deflate; server_max_window_bits=8, "
        "permessage-deflate; server_max_window_bits=12",
    ),
    (True, {"server_no_context_takeover": False}, "permessage-deflate; server_no_context_takeover"),
    (True, {"server_max_window_bits": False}, "permessage-deflate; server_max_window_bits=10"),
    (
        True,
        {"client_max_window_bits": 9},
        "permessage-deflate, permessage-deflate; client_max_window_bits=12",
    ),
    (True, {"client_max_window_bits": 10}, "permessage-deflate; client_max_window_bits=9"),
    (True, {"client_max_window_bits": 10}, "permessage-deflate; client_max_window_bits"),
    (True, {"client_max_window_bits": False}, "permessage-deflate; client_max_window_bits=12"),
    (True, {"server_max_window_bits": True}, "permessage-deflate; server_max_window_bits=12"),
    (
        True,
        {
            "server_no_context_takeover": True,
            "client_no_context_takeover": True,
            "server_max_window_bits": 10,
            "client_max_window_bits": 11,
        },
        "permessage-deflate; client_max_window_bits",
    ),
    (True, None, "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10"),
    (True, None, "permessage-deflate, permessage-deflate; foo"),
    (True, None, "permessage-deflate; server_max_window_bits=7"),
    (True, None, "permessage-deflate; server_max_window_bits=16"),
    (True, None, "permessage-deflate; server_max_window_bits=abc"),
    (True, None, "permessage-deflate; server_max_window_bits"),
    (True, None, "permessage-deflate; client_no_context_takeover=1"),
    (False, None, "permessage-deflate"),
    (False, None, "permessage-deflate; client_max_window_bits=10"),
    (False, None, "permessage-deflate; client_max_window_bits"),
    (False, {"client_max_window_bits": 10}, "permessage-deflate"),
    (False, {"client_max_window_bits": 10}, "permessage-deflate; client_max_window_bits=11"),
    (False, {"client_max_window_bits": False}, "permessage-deflate; client_max_window_bits=10"),
    (
        False,
        {"client_no_context_takeover": False},
        "permessage-deflate; client_no_context_takeover",
    ),
    (
        False,
        None,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=8",
    ),
]


def test_negotiation_matches_ws() -> None:
    expected = ws([{"isServer": s, "options": o, "header": h} for s, o, h in NEGOTIATIONS])
    for (is_server, options, header), theirs in zip(NEGOTIATIONS, expected, strict=True):
        pmd = PerMessageDeflate(options, is_server=is_server)
        try:
            ours: dict[str, Any] = {"params": pmd.accept(offers(header))}
        except ValueError as exc:
            ours = {"error": str(exc)}
        assert ours == theirs, (is_server, options, header)


def frames_of(messages: list[list[bytes]]) -> list[tuple[str, bool]]:
    return [(part.hex(), i == len(parts) - 1) for parts in messages for i, part in enumerate(parts)]


@pytest.mark.parametrize("takeover", [True, False], ids=["takeover", "no-takeover"])
def test_compression_interoperates_with_ws(takeover: bool) -> None:
    # Each window 8..15 as the client's window: ws (the client) compresses and we (the server)
    # inflate, and we (the client) compress and ws (the server) inflates. Window 8 is the case
    # where both sides compress with 9 and inflate with 8. Fragmented and empty messages too.
    messages = [
        [text(3000, 1) + repeats(300)],
        [b""],
        [text(500, 2), text(700, 3) + repeats(250), b""],
        [os.urandom(2000)],
        [text(70_000, 4)],
        [text(3000, 1) + repeats(300)],
    ]
    plain = frames_of(messages)
    headers = [
        f"permessage-deflate; client_max_window_bits={bits}"
        + ("" if takeover else "; client_no_context_takeover")
        for bits in range(8, 16)
    ]
    jobs: list[dict[str, Any]] = []
    for header in headers:
        sender = client(header=header)
        ours = [(sender.compress(bytes.fromhex(h), fin).hex(), fin) for h, fin in plain]
        jobs.append({"isServer": False, "header": header, "method": "compress", "frames": plain})
        jobs.append({"isServer": True, "header": header, "method": "decompress", "frames": ours})
    results = ws(jobs)
    for header, theirs, inflated in zip(headers, results[::2], results[1::2], strict=True):
        assert inflated == [h for h, _ in plain], header  # ws inflated ours
        assert theirs[1] == "00", header  # ws' empty message, as ours
        receiver = server(header=header)
        got = [
            receiver.decompress(bytes.fromhex(h), fin).hex()
            for h, (_, fin) in zip(theirs, plain, strict=True)
        ]
        assert got == [h for h, _ in plain], header  # we inflated ws'

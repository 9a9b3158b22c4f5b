"""pytest-benchmark: masking and UTF-8 validation, native against fallback and the floors.

Run: ``pytest benchmarks/test_speedups_bench.py --benchmark-group-by=group``
(add ``--benchmark-columns=min,median,ops`` for a compact table). Each group holds one operation
on one input at one size, so its rows compare directly: the native extension, the pure-Python
fallback, a plain memory copy (masking's floor), ``bytes.decode`` (what Python pays to validate)
and the peers' native masks (``websockets.speedups.apply_mask``, aiohttp's Cython mask) where
installed. Sizes: 16 B, 125 B, 1 KiB, 64 KiB, 1 MiB, 16 MiB; inputs: ASCII, mixed multi-byte
text, and mixed text whose last byte is invalid. ``python -m wsfast bench`` prints the same
comparison in a few seconds. ``test_scan_frames``: the frame scanner (one read of 100 masked
frames into payloads), native against its pure-Python twin. ``test_permessage_deflate_zlib``:
deflating and inflating one text message with zlib-ng (``wsfast[speedups]``) against the
standard ``zlib`` module. ``test_payload_read_in_place``: a large payload assembled from its reads
in the native ``PayloadBuffer`` against the fallback's ``bytearray``.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from wsfast import _bench_speedups as data_sets
from wsfast import buffer_util, validation

try:
    import wsfast_bufferutil as native_bu
except ImportError:
    native_bu = None
try:
    import wsfast_utf8validate as native_u8
except ImportError:
    native_u8 = None

SIZES = [16, 125, 1024, 64 * 1024, 1024 * 1024, 16 * 1024 * 1024]
KEY = b"\x37\xfa\x21\x3d"
PEERS = data_sets.peers()
INPUTS = {
    "ascii": data_sets.ascii_text,
    "mixed": data_sets.mixed_text,
    "invalid": data_sets.invalid_text,
}


def _size_id(size: int) -> str:
    return data_sets.size_label(size).replace(" ", "")


def _native(module: Any) -> Any:
    if module is None:
        pytest.skip("the native extension is not installed")
    return module


@pytest.mark.parametrize("size", SIZES, ids=_size_id)
@pytest.mark.parametrize("impl", ["native", "fallback", "memcpy", "websockets"])
def test_mask(benchmark: Any, impl: str, size: int) -> None:
    benchmark.group = f"mask into a buffer {_size_id(size)}"
    src = random.Random(size).randbytes(size)
    out = bytearray(size)
    view = memoryview(out)
    if impl == "native":
        benchmark(_native(native_bu).mask, src, KEY, out, 0, size)
    elif impl == "fallback":
        benchmark(buffer_util.py_mask, src, KEY, out, 0, size)
    elif impl == "memcpy":
        benchmark(view.__setitem__, slice(None), src)
        return
    else:
        if "websockets" not in PEERS:
            pytest.skip("websockets is not installed")
        benchmark(PEERS["websockets"], src, KEY)
        return
    expected = bytearray(size)
    buffer_util.py_mask(src, KEY, expected, 0, size)
    assert out == expected


@pytest.mark.parametrize("size", SIZES, ids=_size_id)
@pytest.mark.parametrize("impl", ["native", "fallback", "aiohttp"])
def test_unmask(benchmark: Any, impl: str, size: int) -> None:
    benchmark.group = f"unmask in place {_size_id(size)}"
    buf = bytearray(random.Random(size).randbytes(size))
    if impl == "native":
        benchmark(_native(native_bu).unmask, buf, KEY)
    elif impl == "fallback":
        benchmark(buffer_util.py_unmask, buf, KEY)
    else:
        if "aiohttp" not in PEERS:
            pytest.skip("aiohttp is not installed")
        benchmark(PEERS["aiohttp"], KEY, buf)


def _old_route(unmask: Any, chunks: list[Any]) -> bytes:
    """How the receiver built a masked payload's bytes before ``concat_unmasked``."""
    buf = bytearray().join(chunks)
    unmask(buf, KEY)
    return bytes(buf)


@pytest.mark.parametrize("size", [1024, 64 * 1024, 1024 * 1024], ids=_size_id)
@pytest.mark.parametrize("impl", ["native", "fallback", "join+unmask+bytes", "memcpy"])
def test_concat_unmasked(benchmark: Any, impl: str, size: int) -> None:
    # A received payload in 64 KiB reads to its final bytes: concat_unmasked (one pass, no zero
    # fill) against the route it replaced (join into a bytearray, unmask in place, bytes()) and
    # a plain join (the floor: one copy without masking).
    benchmark.group = f"unmasked pieces into new bytes {_size_id(size)}"
    src = random.Random(size).randbytes(size)
    chunks = [memoryview(src)[start : start + 65536] for start in range(0, size, 65536)]
    if impl == "native":
        result = benchmark(_native(native_bu).concat_unmasked, chunks, KEY)
    elif impl == "fallback":
        result = benchmark(buffer_util.py_concat_unmasked, chunks, KEY)
    elif impl == "join+unmask+bytes":
        result = benchmark(_old_route, buffer_util.unmask, chunks)
    else:
        benchmark(b"".join, chunks)
        return
    assert result == buffer_util.py_unmasked(src, KEY)


def _read_in_place(make: Any, unmask: Any, pieces: list[Any], size: int) -> Any:
    """A payload read in place as the receiver does it (``IN_PLACE_READ`` pieces): each piece
    written into the payload's buffer, unmasked there, then the buffer taken as the message."""
    sink = make(size)
    view = memoryview(sink)
    pos = 0
    for piece in pieces:
        end = pos + len(piece)
        view[pos:end] = piece
        unmask(view[pos:end], KEY)  # the pieces are multiples of 4: the key's phase is 0
        pos = end
    view.release()
    return sink.take()


def _read_and_join(concat: Any, pieces: list[Any]) -> Any:
    """The route below 256 KiB: each read a new bytes (the copy out of the loop's read buffer),
    kept to the end of the frame, then joined and unmasked in one pass."""
    return concat([bytes(piece) for piece in pieces], KEY)


@pytest.mark.parametrize("size", [1024 * 1024, 16 * 1024 * 1024], ids=_size_id)
@pytest.mark.parametrize(
    "impl", ["native", "fallback", "native, reads joined", "fallback, reads joined"]
)
def test_payload_read_in_place(benchmark: Any, impl: str, size: int) -> None:
    # A large received payload from its 256 KiB reads to the message's bytes: the native
    # PayloadBuffer (a bytes written in place, no zero fill, no copy after) and the fallback's
    # bytearray (zero-filled, copied into bytes at the end), against the route they replace
    # from 256 KiB on (the reads kept and joined). The socket's own copy into the buffer is the
    # ``view[...] = piece`` step here, and the ``bytes(piece)`` copy in the joined route.
    benchmark.group = f"payload read in place {_size_id(size)}"
    src = random.Random(size).randbytes(size)
    pieces = [memoryview(src)[start : start + 262144] for start in range(0, size, 262144)]
    if impl == "native":
        native = _native(native_bu)
        result = benchmark(_read_in_place, native.PayloadBuffer, native.unmask, pieces, size)
    elif impl == "fallback":
        result = benchmark(
            _read_in_place, buffer_util.PyPayloadBuffer, buffer_util.py_unmask, pieces, size
        )
    elif impl == "native, reads joined":
        result = benchmark(_read_and_join, _native(native_bu).concat_unmasked, pieces)
    else:
        result = benchmark(_read_and_join, buffer_util.py_concat_unmasked, pieces)
    assert result == buffer_util.py_unmasked(src, KEY)


def _masked_frames(count: int, size: int, text: bool) -> bytes:
    rnd = random.Random(size)
    payload = bytes(rnd.choice(b"abcdefghij") for _ in range(size))
    length = bytes((0x80 | size,)) if size < 126 else bytes((0x80 | 126,)) + size.to_bytes(2, "big")
    frame = bytes((0x81 if text else 0x82,)) + length + KEY + buffer_util.py_unmasked(payload, KEY)
    return frame * count


@pytest.mark.parametrize("size", [32, 1024], ids=_size_id)
@pytest.mark.parametrize("kind", ["binary", "text"])
@pytest.mark.parametrize("impl", ["native", "fallback"])
def test_scan_frames(benchmark: Any, impl: str, kind: str, size: int) -> None:
    # One read holding 100 masked frames, as a server receives pipelined messages: parsed,
    # unmasked (and decoded, for text) into a list of payloads.
    benchmark.group = f"scan 100 masked {kind} frames of {_size_id(size)}"
    wire = _masked_frames(100, size, kind == "text")
    scan = _native(native_bu).scan_frames if impl == "native" else buffer_util.py_scan_frames

    def run() -> list[Any]:
        out: list[Any] = []
        scan(wire, 0, True, 0, out)
        return out

    result = benchmark(run)
    assert len(result) == 100


def _deflate_modules() -> dict[str, Any]:
    import zlib

    modules: dict[str, Any] = {"zlib": zlib}
    try:
        from zlib_ng import zlib_ng
    except ImportError:
        pass
    else:
        modules["zlib-ng"] = zlib_ng
    return modules


_TEXT_WORDS = [b"socket", b"frame", b"deflate", b"message", b"window", b"42", b"{}", b"echo"]


@pytest.mark.parametrize("size", [1024, 64 * 1024, 1024 * 1024], ids=_size_id)
@pytest.mark.parametrize("step", ["deflate", "inflate"])
@pytest.mark.parametrize("impl", ["zlib-ng", "zlib"])
def test_permessage_deflate_zlib(benchmark: Any, impl: str, step: str, size: int) -> None:
    # permessage-deflate's work on one text message, as wsfast does it (raw deflate, 15-bit
    # window, level 6, memLevel 8, sync flush) with fresh contexts, as without context
    # takeover: zlib-ng (wsfast[speedups]) against the standard module (WSFAST_NO_ZLIB_NG=1).
    # The text has few distinct words; zlib-ng's deflate gains more on varied text.
    module = _deflate_modules().get(impl)
    if module is None:
        pytest.skip("zlib-ng is not installed")
    rng = random.Random(size)
    text = b" ".join(rng.choice(_TEXT_WORDS) for _ in range(size))[:size]
    benchmark.group = f"permessage-deflate {step} {_size_id(size)} of text"
    deflate = module.compressobj(6, module.DEFLATED, -15, 8)
    compressed = deflate.compress(text) + deflate.flush(module.Z_SYNC_FLUSH)
    if step == "deflate":

        def run() -> bytes:
            fresh = module.compressobj(6, module.DEFLATED, -15, 8)
            out: bytes = fresh.compress(text) + fresh.flush(module.Z_SYNC_FLUSH)
            return out

        assert module.decompressobj(-15).decompress(benchmark(run)) == text
    else:

        def run() -> bytes:
            out: bytes = module.decompressobj(-15).decompress(compressed)
            return out

        assert benchmark(run) == text


def _decode(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize("size", SIZES, ids=_size_id)
@pytest.mark.parametrize("kind", list(INPUTS))
@pytest.mark.parametrize("impl", ["native", "fallback", "bytes.decode"])
def test_utf8(benchmark: Any, impl: str, kind: str, size: int) -> None:
    benchmark.group = f"utf-8 {kind} {_size_id(size)}"
    data = INPUTS[kind](size)
    if impl == "native":
        result = benchmark(_native(native_u8).is_valid_utf8, data)
    elif impl == "fallback":
        result = benchmark(validation.py_is_valid_utf8, data)
    else:
        result = benchmark(_decode, data)
    assert result is (kind != "invalid")

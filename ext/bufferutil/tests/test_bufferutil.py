"""Tests of wsfast_bufferutil on its own (no wsfast needed): every kernel the CPU has, against a
byte-by-byte reference, plus the argument checks. Run: ``pytest ext/bufferutil/tests``."""

import array
import os
import random

import pytest

if os.environ.get("WSFAST_REQUIRE_EXTENSIONS") == "1":
    import wsfast_bufferutil  # a release build must have the module
else:
    wsfast_bufferutil = pytest.importorskip("wsfast_bufferutil")

KERNELS = ["words", "sse2", "avx2", "avx512"]
SIZES = [
    0,
    1,
    2,
    3,
    4,
    5,
    7,
    8,
    15,
    16,
    17,
    31,
    32,
    33,
    63,
    64,
    65,
    125,
    127,
    128,
    129,
    255,
    256,
    257,
    300,
    1023,
    1024,
    4097,
    65536 + 13,
]


def reference(data, key):
    return bytes(b ^ key[i & 3] for i, b in enumerate(data))


@pytest.fixture(params=KERNELS)
def kernel(request):
    name = wsfast_bufferutil._use_kernel(request.param)
    if name != request.param:
        wsfast_bufferutil._use_kernel(None)
        pytest.skip(f"kernel {request.param} not available here (got {name})")
    yield name
    wsfast_bufferutil._use_kernel(None)


def test_version():
    assert wsfast_bufferutil.__version__ == "0.1.0"
    assert wsfast_bufferutil._kernel() in ("avx512", "avx2", "sse2", "neon", "words")


@pytest.mark.parametrize("size", SIZES)
def test_unmask_matches_reference(kernel, size):
    rnd = random.Random(size)
    data = rnd.randbytes(size)
    key = rnd.randbytes(4)
    # Offsets into a larger buffer move the start off every alignment the kernels care about.
    for start in (0, 1, 3, 17, 63):
        buf = bytearray(rnd.randbytes(start)) + bytearray(data) + bytearray(b"\xaa" * 5)
        view = memoryview(buf)[start : start + size]
        wsfast_bufferutil.unmask(view, key)
        assert bytes(view) == reference(data, key)
        assert buf[start + size :] == b"\xaa" * 5  # nothing written past the end


@pytest.mark.parametrize("size", SIZES)
def test_mask_matches_reference(kernel, size):
    rnd = random.Random(size + 1)
    data = rnd.randbytes(size)
    key = rnd.randbytes(4)
    for offset in (0, 1, 2, 6, 14, 33):
        out = bytearray(b"\x55" * (offset + size + 7))
        wsfast_bufferutil.mask(data, key, out, offset, size)
        assert out[:offset] == b"\x55" * offset
        assert bytes(out[offset : offset + size]) == reference(data, key)
        assert out[offset + size :] == b"\x55" * 7


def test_mask_partial_length_and_types():
    data = bytearray(os.urandom(100))
    key = memoryview(b"\x01\x02\x03\x04\x05")  # longer masks: the first four bytes count
    out = array.array("B", bytes(120))
    wsfast_bufferutil.mask(memoryview(data), key, out, 10, 50)
    assert out.tobytes()[10:60] == reference(data[:50], b"\x01\x02\x03\x04")
    words = array.array("I", range(10))  # any buffer: its bytes are what count
    raw = words.tobytes()
    wsfast_bufferutil.unmask(words, b"abcd")
    assert words.tobytes() == reference(raw, b"abcd")


def test_overlapping_source_and_output(kernel):
    for shift in (1, 3, 4, 40):
        base = bytes(range(256)) * 2
        got = bytearray(base)
        wsfast_bufferutil.mask(got, b"\x10\x20\x30\x40", got, shift, 300)
        expected = bytearray(base)
        expected[shift : shift + 300] = reference(base[:300], b"\x10\x20\x30\x40")
        assert got == expected
        # Output before the source (a frame header prepended in place).
        view = memoryview(got)
        src = bytes(view[shift:])
        wsfast_bufferutil.mask(view[shift:], b"\x10\x20\x30\x40", got, 0, 300)
        assert bytes(got[:300]) == reference(src[:300], b"\x10\x20\x30\x40")


def test_mask_then_unmask_round_trip():
    data = os.urandom(70000)
    key = os.urandom(4)
    out = bytearray(len(data))
    wsfast_bufferutil.mask(data, key, out, 0, len(data))
    wsfast_bufferutil.unmask(out, key)
    assert out == data


#: unmasked / concat_unmasked: every size around the kernels' steps (16, 32, 64 bytes).
NEW_SIZES = sorted(set(SIZES) | set(range(31, 66)) | {1 << 20})


def _as(kind, data, rnd):
    """``data`` as a buffer of another type, or as a view at an odd offset into a larger one."""
    if kind == "bytes":
        return bytes(data)
    if kind == "bytearray":
        return bytearray(data)
    start = rnd.randrange(8)
    return memoryview(rnd.randbytes(start) + bytes(data) + b"\xaa")[start : start + len(data)]


@pytest.mark.parametrize("size", NEW_SIZES)
def test_unmasked_matches_reference(kernel, size):
    rnd, data, key, expected = _case(size + 2, size)
    for kind in ("bytes", "bytearray", "memoryview"):
        source = _as(kind, data, rnd)
        got = wsfast_bufferutil.unmasked(source, key)
        assert type(got) is bytes and got == expected
        assert bytes(source) == data  # the source is left as it is


def _int_reference(data, key):
    size = len(data)
    return (
        int.from_bytes(data, "little") ^ int.from_bytes((key * (size // 4 + 1))[:size], "little")
    ).to_bytes(size, "little")


def _case(seed, size):
    """A random generator, payload, key, and the payload unmasked by a reference."""
    rnd = random.Random(seed)
    data = rnd.randbytes(size)
    key = rnd.randbytes(4)
    return rnd, data, key, reference(data, key) if size < 70000 else _int_reference(data, key)


def _splits(rnd, size, count):
    cuts = sorted(rnd.randrange(size + 1) for _ in range(count - 1))
    return list(zip([0] + cuts, cuts + [size], strict=True))


@pytest.mark.parametrize("size", NEW_SIZES)
def test_concat_unmasked_matches_reference(kernel, size):
    rnd, data, key, expected = _case(size + 3, size)
    for count in (1, 2, 3, 5, 17):
        pieces = [
            _as(rnd.choice(("bytes", "bytearray", "memoryview")), data[a:b], rnd)
            for a, b in _splits(rnd, size, count)
        ]
        got = wsfast_bufferutil.concat_unmasked(pieces, key)
        assert type(got) is bytes and got == expected, [len(p) for p in pieces]
        assert b"".join(pieces) == data
        assert wsfast_bufferutil.concat_unmasked(tuple(pieces), key) == expected
        assert wsfast_bufferutil.concat_unmasked(iter(pieces), key) == expected


def test_concat_unmasked_large_pieces_default_kernels():
    # 1 MiB in 64 KiB reads (the receiver's case), and pieces big enough for the wide kernel and
    # the streaming stores, at unaligned offsets.
    wsfast_bufferutil._use_kernel(None)
    rnd = random.Random(7)
    for size, step in ((1 << 20, 65536), ((1 << 20) + 5, 65536 + 3), ((9 << 20) + 3, 300001)):
        data = rnd.randbytes(size)
        key = rnd.randbytes(4)
        pieces = [memoryview(data)[a : a + step] for a in range(0, size, step)]
        assert wsfast_bufferutil.concat_unmasked(pieces, key) == _int_reference(data, key)
        assert wsfast_bufferutil.unmasked(memoryview(data)[1:], key) == _int_reference(
            data[1:], key
        )


def test_concat_unmasked_edges():
    key = b"\x01\x02\x03\x04"
    assert wsfast_bufferutil.concat_unmasked([], key) == b""
    assert wsfast_bufferutil.concat_unmasked([b"", b"", b""], key) == b""
    assert wsfast_bufferutil.unmasked(b"", key) == b""
    # The phase carries on across empty and 1-byte pieces.
    assert wsfast_bufferutil.concat_unmasked([b"\x00", b"", b"\x00" * 2, b"\x00" * 3], key) == (
        b"\x01\x02\x03\x04\x01\x02"
    )
    words = array.array("I", [0x01020304] * 3)  # any buffer: its bytes are what count
    raw = words.tobytes()
    assert wsfast_bufferutil.unmasked(words, b"abcdefg") == reference(raw, b"abcd")
    assert wsfast_bufferutil.concat_unmasked([words, raw], b"abcd") == reference(raw * 2, b"abcd")


def test_concat_unmasked_releases_its_views():
    bufs = [bytearray(b"x" * 10), bytearray(b"y" * 10)]
    wsfast_bufferutil.concat_unmasked(bufs, b"1234")
    with pytest.raises(TypeError):
        wsfast_bufferutil.concat_unmasked([bufs[0], "text", bufs[1]], b"1234")
    for buf in bufs:
        buf.extend(b"more")  # would raise BufferError if a view were still held


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda m: m.unmask(b"abcd", b"1234"), TypeError),  # read-only buffer
        (lambda m: m.unmask(bytearray(4), b"123"), ValueError),  # short mask
        (lambda m: m.unmask(bytearray(4), bytearray()), ValueError),
        (lambda m: m.unmask(memoryview(bytearray(8))[::2], b"1234"), TypeError),
        (lambda m: m.unmask("text", b"1234"), TypeError),
        (lambda m: m.unmask(bytearray(4), "1234"), TypeError),
        (lambda m: m.mask(b"abc", b"1234", b"xxxxx", 0, 3), TypeError),  # read-only output
        (lambda m: m.mask(b"abc", b"12", bytearray(5), 0, 3), ValueError),
        (lambda m: m.mask(b"abc", b"1234", bytearray(2), 0, 3), ValueError),
        (lambda m: m.mask(b"abc", b"1234", bytearray(5), 3, 3), ValueError),
        (lambda m: m.mask(b"abc", b"1234", bytearray(5), -1, 3), ValueError),
        (lambda m: m.mask(b"abc", b"1234", bytearray(5), 0, -1), ValueError),
        (lambda m: m.mask(b"abc", b"1234", bytearray(9), 0, 4), ValueError),  # beyond source
        (lambda m: m.mask(b"abc", b"1234", bytearray(9), 2**70, 3), ValueError),
        (lambda m: m.mask(b"abc", b"1234", bytearray(9), 0, 2**63), ValueError),
        (lambda m: m.mask(b"abc", b"1234", bytearray(9), 1.0, 3), TypeError),
        (lambda m: m.mask(memoryview(b"abcdef")[::2], b"1234", bytearray(9), 0, 3), TypeError),
        (lambda m: m.mask(None, b"1234", bytearray(9), 0, 3), TypeError),
        (lambda m: m.unmasked(b"abcd", b"123"), ValueError),
        (lambda m: m.unmasked("text", b"1234"), TypeError),
        (lambda m: m.unmasked(memoryview(b"abcdefgh")[::2], b"1234"), TypeError),
        (lambda m: m.concat_unmasked([b"ab"], b"12"), ValueError),
        (lambda m: m.concat_unmasked([b"ab", None], b"1234"), TypeError),
        (lambda m: m.concat_unmasked([b"ab", memoryview(b"abcd")[::2]], b"1234"), TypeError),
        (lambda m: m.concat_unmasked(5, b"1234"), TypeError),
    ],
    ids=[
        "unmask-readonly",
        "unmask-short-mask",
        "unmask-empty-mask",
        "unmask-noncontiguous",
        "unmask-str",
        "unmask-str-mask",
        "mask-readonly-output",
        "mask-short-mask",
        "mask-output-too-small",
        "mask-offset-past-end",
        "mask-negative-offset",
        "mask-negative-length",
        "mask-length-beyond-source",
        "mask-huge-offset",
        "mask-huge-length",
        "mask-float-offset",
        "mask-noncontiguous-source",
        "mask-none-source",
        "unmasked-short-mask",
        "unmasked-str",
        "unmasked-noncontiguous",
        "concat-short-mask",
        "concat-none-chunk",
        "concat-noncontiguous-chunk",
        "concat-not-iterable",
    ],
)
def test_bad_arguments_raise(call, exc):
    with pytest.raises(exc):
        call(wsfast_bufferutil)


def test_failed_call_writes_nothing():
    out = bytearray(b"\x00" * 8)
    with pytest.raises(ValueError):
        wsfast_bufferutil.mask(b"abcdefgh", b"1234", out, 4, 8)
    assert out == bytes(8)


def test_bytearray_export_is_released():
    buf = bytearray(16)
    wsfast_bufferutil.unmask(memoryview(buf), b"1234")
    wsfast_bufferutil.mask(b"x" * 16, b"1234", memoryview(buf), 0, 16)
    buf.extend(b"more")  # would raise BufferError if a view were still held
    assert len(buf) == 20


def test_unknown_kernel_name_keeps_a_working_kernel():
    try:
        wsfast_bufferutil._use_kernel("no-such-kernel")
        buf = bytearray(b"abcd" * 10)
        wsfast_bufferutil.unmask(buf, b"\x00\x00\x00\x01")
        assert buf == b"abce" * 10
    finally:
        wsfast_bufferutil._use_kernel(None)


def test_default_kernels_at_large_sizes():
    # Unpinned, large copies may take another kernel than small ones (see WSF_WIDE_FROM).
    wsfast_bufferutil._use_kernel(None)
    for size in (256 * 1024 - 1, 256 * 1024, (1 << 20) + 7, (8 << 20) + 3):
        data = os.urandom(size)
        key = os.urandom(4)
        expected = (
            int.from_bytes(data, "little")
            ^ int.from_bytes((key * (size // 4 + 1))[:size], "little")
        ).to_bytes(size, "little")
        out = bytearray(size + 2)
        wsfast_bufferutil.mask(data, key, out, 1, size)
        assert out[1:-1] == expected and out[0] == 0 and out[-1] == 0
        buf = bytearray(data)
        wsfast_bufferutil.unmask(buf, key)
        assert buf == expected


def test_checked_in_c_matches_the_pyx(tmp_path):
    # The sdist builds from src/wsfast_bufferutil.c when Cython is absent: it must be regenerated
    # whenever the .pyx changes (see README).
    import pathlib
    import subprocess
    import sys

    cython = pytest.importorskip("Cython")
    src = pathlib.Path(__file__).resolve().parent.parent / "src"
    checked_in = src / "wsfast_bufferutil.c"
    if not checked_in.exists():
        pytest.skip("not run from a source tree")
    first = checked_in.read_text().splitlines()[0]
    if first != f"/* Generated by Cython {cython.__version__} */":
        pytest.skip(f"checked-in C comes from another Cython ({first})")
    out = tmp_path / "regenerated.c"
    subprocess.run(
        [sys.executable, "-m", "cython", "-3", "src/wsfast_bufferutil.pyx", "-o", str(out)],
        cwd=src.parent,
        check=True,
    )
    assert out.read_text() == checked_in.read_text(), "regenerate the C file (README)"


# -- PayloadBuffer -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 5, 4096, 1 << 20])
def test_payload_buffer_is_written_in_place_and_taken_as_bytes(size):
    key = b"\x12\x34\x56\x78"
    plain = random.Random(size).randbytes(size)
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(plain)) if size < 4096 else None
    sink = wsfast_bufferutil.PayloadBuffer(size)
    assert len(sink) == size
    view = memoryview(sink)
    assert not view.readonly and view.nbytes == size
    if masked is None:
        masked = wsfast_bufferutil.unmasked(plain, key)
    # Filled in two pieces, as two reads would, then unmasked in place with the key's phase.
    half = size // 2
    view[:half] = masked[:half]
    view[half:] = masked[half:]
    wsfast_bufferutil.unmask(view, key)
    view.release()
    data = sink.take()
    assert type(data) is bytes
    assert data == plain


def test_payload_buffer_exports_nothing_once_taken():
    sink = wsfast_bufferutil.PayloadBuffer(8)
    memoryview(sink)[:] = b"abcdefgh"
    assert sink.take() == b"abcdefgh"
    with pytest.raises(BufferError):
        memoryview(sink)
    with pytest.raises(ValueError):
        wsfast_bufferutil.PayloadBuffer(-1)

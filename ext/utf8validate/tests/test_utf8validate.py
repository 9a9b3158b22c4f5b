"""Tests of wsfast_utf8validate on its own (no wsfast needed): every kernel the CPU has, against
CPython's strict decoder, with the validity classes of RFC 3629 at every position relative to
the vector blocks. Run: ``pytest ext/utf8validate/tests``."""

import codecs
import itertools
import os
import random

import pytest

if os.environ.get("WSFAST_REQUIRE_EXTENSIONS") == "1":
    import wsfast_utf8validate as u8  # a release build must have the module
else:
    u8 = pytest.importorskip("wsfast_utf8validate")

KERNELS = ["scalar", "avx2", "avx512", "neon"]

VALID = [
    "a",
    "\x7f",
    "\x80",
    "é",
    "\u07ff",
    "\u0800",
    "€",
    "\ud7ff",
    "\ue000",
    "\uffff",
    "\U00010000",
    "😀",
    "\U0010ffff",
]
# Each entry is invalid wherever it appears (followed by ASCII).
INVALID = {
    "lone-continuation": b"\x80",
    "two-continuations": b"\xbf\xbf",
    "overlong-2-c0": b"\xc0\xaf",
    "overlong-2-c1": b"\xc1\xbf",
    "overlong-3": b"\xe0\x80\xaf",
    "overlong-3-max": b"\xe0\x9f\xbf",
    "overlong-4": b"\xf0\x80\x80\xaf",
    "overlong-4-max": b"\xf0\x8f\xbf\xbf",
    "surrogate-low": b"\xed\xa0\x80",
    "surrogate-high": b"\xed\xbf\xbf",
    "above-10ffff": b"\xf4\x90\x80\x80",
    "f5-lead": b"\xf5\x80\x80\x80",
    "ff-byte": b"\xff",
    "fe-byte": b"\xfe",
    "f8-five-byte": b"\xf8\x88\x80\x80\x80",
    "truncated-2-then-ascii": b"\xc3a",
    "truncated-3-then-ascii": b"\xe2\x82a",
    "truncated-4-then-ascii": b"\xf0\x9f\x98a",
    "lead-then-lead": b"\xc3\xc3\xa9",
    "extra-continuation": b"\xc3\xa9\xa9",
    "four-byte-extra-cont": b"\xf0\x9f\x98\x80\x80",
}
TRUNCATED_ENDS = [
    b"\xc3",
    b"\xe2",
    b"\xe2\x82",
    b"\xf0",
    b"\xf0\x9f",
    b"\xf0\x9f\x98",
    b"\xf4\x8f\xbf",
]


def reference(data):
    try:
        bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def viable(prefix):
    """True if some continuation makes ``prefix`` valid UTF-8 (the fail-fast oracle)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(prefix, False)
    except UnicodeDecodeError:
        return False
    pending = decoder.getstate()[0]
    if not pending:
        return True
    edges = [0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF]
    for count in range(1, 4):
        for tail in itertools.product(edges, repeat=count):
            if reference(pending + bytes(tail)):
                return True
    return False


@pytest.fixture(params=KERNELS)
def kernel(request):
    try:
        u8._use_kernel(request.param)
    except ValueError:
        pytest.skip(f"kernel {request.param} not available on this CPU")
    yield request.param
    u8._use_kernel(None)


def test_version_and_kernel():
    assert u8.__version__ == "0.1.0"
    assert u8._kernel() in KERNELS


def test_unknown_kernel_is_refused():
    with pytest.raises(ValueError):
        u8._use_kernel("no-such-kernel")
    assert u8._kernel() in KERNELS


@pytest.mark.parametrize("char", VALID)
@pytest.mark.parametrize("pad", [0, 1, 13, 29, 30, 31, 32, 61, 62, 63, 64, 65, 127, 200])
def test_valid_characters_at_every_block_position(kernel, char, pad):
    for data in (
        b"x" * pad + char.encode(),
        b"x" * pad + char.encode() + b"y" * 70,
        (char * (pad + 1)).encode(),
    ):
        assert u8.is_valid_utf8(data) is True
        assert u8.is_valid_utf8(bytearray(data)) is True
        assert u8.is_valid_utf8(memoryview(data)) is True


@pytest.mark.parametrize("name", sorted(INVALID))
@pytest.mark.parametrize(
    "pad", [0, 1, 30, 31, 32, 33, 62, 63, 64, 65, 66, 67, 127, 128, 4095, 4096, 5000]
)
def test_invalid_sequences_at_every_block_position(kernel, name, pad):
    bad = INVALID[name]
    for filler in (b"x", "é".encode()):
        head = (filler * pad)[:pad]
        if not reference(head):
            head = head[:-1]
        for data in (head + bad, head + bad + b"z" * 100):
            assert u8.is_valid_utf8(data) is False, (name, pad, data[-8:])


@pytest.mark.parametrize("end", TRUNCATED_ENDS)
@pytest.mark.parametrize("pad", [0, 1, 61, 62, 63, 64, 65, 125, 126, 127, 128, 1000])
def test_truncated_at_the_end(kernel, end, pad):
    data = b"x" * pad + end
    assert u8.is_valid_utf8(data) is False
    v = u8.Utf8Validator()
    assert v.feed(data) is True  # may still be completed
    assert v.feed(b"", final=True) is False


def test_random_against_cpython(kernel):
    rnd = random.Random(4)
    alphabet = VALID + ["x"] * 10
    for _ in range(3000):
        n = rnd.choice([0, 1, 3, 15, 16, 17, 63, 64, 65, 66, 67, 100, 128, 129, 300, 4200])
        data = bytearray("".join(rnd.choice(alphabet) for _ in range(n)).encode()[:n])
        if data and rnd.random() < 0.5:
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        data = bytes(data)
        assert u8.is_valid_utf8(data) == reference(data), data


def test_incremental_is_fail_fast_and_exact(kernel):
    rnd = random.Random(5)
    alphabet = VALID + ["x"] * 5
    for _ in range(1500):
        data = bytearray("".join(rnd.choice(alphabet) for _ in range(rnd.randrange(120))).encode())
        if data and rnd.random() < 0.6:
            data[rnd.randrange(len(data))] = rnd.randrange(0x80, 0x100)
        data = bytes(data)
        cuts = sorted(rnd.sample(range(len(data) + 1), min(4, len(data) + 1)))
        parts = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)], strict=True)]
        v = u8.Utf8Validator()
        seen = b""
        for i, part in enumerate(parts):
            final = i == len(parts) - 1
            seen += part
            got = v.feed(part, final)
            expected = reference(seen) if final else viable(seen)
            assert got == expected, (parts, i)
            if not got:
                assert v.feed(b"a") is False  # stays failed until reset
                break


@pytest.mark.parametrize(
    "chunks, expected",
    [
        ([b"\xed\xa0"], False),
        ([b"\xed", b"\xa0"], False),
        ([b"\xf4\x90"], False),
        ([b"\xf4", b"\x90"], False),
        ([b"\xe0\x80"], False),
        ([b"\xf0\x8f"], False),
        ([b"\xc0"], False),
        ([b"\xf5"], False),
        ([b"\xed\x9f"], True),
        ([b"\xf4\x8f"], True),
        ([b"\xf0", b"\x9f", b"\x98"], True),
        ([b"ok \xce"], True),
    ],
    ids=[
        "ed-a0",
        "ed|a0",
        "f4-90",
        "f4|90",
        "e0-80",
        "f0-8f",
        "c0",
        "f5",
        "ed-9f",
        "f4-8f",
        "f0|9f|98",
        "open-2-byte",
    ],
)
def test_fail_fast_prefixes(kernel, chunks, expected):
    v = u8.Utf8Validator()
    results = [v.feed(c) for c in chunks]
    assert results[-1] is expected
    assert all(results[:-1])


def test_validator_across_messages():
    v = u8.Utf8Validator()
    assert v.feed("héllo ".encode()[:2]) is True
    assert v.feed("héllo ".encode()[2:], final=True) is True
    assert v.feed(b"\xe2\x82") is True
    assert v.feed(b"\xac", final=True) is True
    assert v.feed(b"\xe2\x82", final=True) is False
    v.reset()
    assert v.feed(b"fresh", final=True) is True
    big = ("€" * 400_000).encode()  # above the GIL-release threshold, split mid-character
    assert v.feed(big[:1_000_001]) is True
    assert v.feed(big[1_000_001:], final=True) is True


def test_buffer_types_and_errors():
    import array

    assert u8.is_valid_utf8(array.array("B", "añb".encode())) is True
    assert u8.is_valid_utf8(b"") is True
    assert u8.Utf8Validator().feed(b"", final=True) is True
    for bad in ("text", None, 3, memoryview(b"abcd")[::2]):
        with pytest.raises(TypeError):
            u8.is_valid_utf8(bad)
        with pytest.raises(TypeError):
            u8.Utf8Validator().feed(bad)


def test_large_inputs():
    text = ("ascii " * 100 + "ünïcödé 中文 😀 ") * 3000
    data = text.encode()
    assert u8.is_valid_utf8(data) is True
    broken = bytearray(data)
    broken[len(broken) // 2] = 0xFF
    assert u8.is_valid_utf8(bytes(broken)) is False
    assert u8.is_valid_utf8(broken) is False


def test_checked_in_c_matches_the_pyx(tmp_path):
    # The sdist builds from src/wsfast_utf8validate.c when Cython is absent: it must be regenerated
    # whenever the .pyx changes (see README).
    import pathlib
    import subprocess
    import sys

    cython = pytest.importorskip("Cython")
    src = pathlib.Path(__file__).resolve().parent.parent / "src"
    checked_in = src / "wsfast_utf8validate.c"
    if not checked_in.exists():
        pytest.skip("not run from a source tree")
    first = checked_in.read_text().splitlines()[0]
    if first != f"/* Generated by Cython {cython.__version__} */":
        pytest.skip(f"checked-in C comes from another Cython ({first})")
    out = tmp_path / "regenerated.c"
    subprocess.run(
        [sys.executable, "-m", "cython", "-3", "src/wsfast_utf8validate.pyx", "-o", str(out)],
        cwd=src.parent,
        check=True,
    )
    assert out.read_text() == checked_in.read_text(), "regenerate the C file (README)"

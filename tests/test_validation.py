"""Close codes, UTF-8 validation (whole and incremental) and masking, on every implementation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsfast import buffer_util, validation
from wsfast.validation import is_valid_status_code

VALID_CODES = [
    1000,
    1001,
    1002,
    1003,
    1007,
    1008,
    1009,
    1010,
    1011,
    1012,
    1013,
    1014,
    3000,
    3999,
    4000,
    4999,
]
INVALID_CODES = [-1, 0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_status_codes(code: int) -> None:
    assert is_valid_status_code(code)


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_status_codes(code: int) -> None:
    assert not is_valid_status_code(code)


# The implementations the core may use: the fallback always, and whatever validation.py chose.
UTF8_CHECKS = {"fallback": validation.py_is_valid_utf8, "chosen": validation.is_valid_utf8}
VALIDATORS = {"fallback": validation.PyUtf8Validator, "chosen": validation.Utf8Validator}

# (id, bytes, valid) — RFC 3629 and Markus Kuhn's stress test classics.
UTF8_CASES = [
    ("empty", b"", True),
    ("ascii", b"Hello, world", True),
    ("two-byte", "κόσμε".encode(), True),
    ("three-byte", "€".encode(), True),
    ("four-byte", "𝄞".encode(), True),
    ("max-code-point", b"\xf4\x8f\xbf\xbf", True),
    ("nul", b"\x00", True),
    ("lone-continuation", b"\x80", False),
    ("overlong-slash-2", b"\xc0\xaf", False),
    ("overlong-slash-3", b"\xe0\x80\xaf", False),
    ("overlong-slash-4", b"\xf0\x80\x80\xaf", False),
    ("surrogate-high", b"\xed\xa0\x80", False),
    ("surrogate-low", b"\xed\xbf\xbf", False),
    ("above-max", b"\xf4\x90\x80\x80", False),
    ("f5-lead", b"\xf5\x80\x80\x80", False),
    ("ff", b"\xff", False),
    ("truncated-2", b"\xce", False),
    ("truncated-3", b"\xe2\x82", False),
    ("truncated-4", b"\xf0\x9d\x84", False),
    ("invalid-after-ascii", b"abc\xc3\x28", False),
]


@pytest.mark.parametrize("impl", sorted(UTF8_CHECKS))
@pytest.mark.parametrize("data, valid", [c[1:] for c in UTF8_CASES], ids=[c[0] for c in UTF8_CASES])
def test_is_valid_utf8(impl: str, data: bytes, valid: bool) -> None:
    check = UTF8_CHECKS[impl]
    assert check(data) is valid
    assert check(bytearray(data)) is valid
    assert check(memoryview(data)) is valid


@pytest.mark.parametrize("impl", sorted(VALIDATORS))
@pytest.mark.parametrize("data, valid", [c[1:] for c in UTF8_CASES], ids=[c[0] for c in UTF8_CASES])
def test_incremental_validator_byte_by_byte(impl: str, data: bytes, valid: bool) -> None:
    validator = VALIDATORS[impl]()
    ok = all(validator.feed(data[i : i + 1], False) for i in range(len(data)))
    ok = ok and validator.feed(b"", True)
    assert ok is valid


@pytest.mark.parametrize("impl", sorted(VALIDATORS))
@pytest.mark.parametrize(
    "prefix",
    [b"\xff", b"\x80", b"\xc0", b"\xc1", b"\xed\xa0", b"\xf4\x90", b"\xf5", b"abc\xe2\x28"],
)
def test_incremental_validator_fails_fast(impl: str, prefix: bytes) -> None:
    # These prefixes cannot start any valid text: refused without waiting for more bytes.
    assert VALIDATORS[impl]().feed(prefix, False) is False


@pytest.mark.parametrize("impl", sorted(VALIDATORS))
def test_incremental_validator_waits_for_the_end(impl: str) -> None:
    validator = VALIDATORS[impl]()
    assert validator.feed(b"\xe2\x82", False) is True  # could still become "€"
    assert validator.feed(b"\xac", True) is True
    validator = VALIDATORS[impl]()
    assert validator.feed(b"\xe2\x82", False) is True
    assert validator.feed(b"", True) is False


@settings(max_examples=200, deadline=None)
@given(data=st.one_of(st.binary(max_size=64), st.text(max_size=32).map(str.encode)))
def test_utf8_agrees_with_python(data: bytes) -> None:
    try:
        data.decode("utf-8")
        expected = True
    except UnicodeDecodeError:
        expected = False
    for check in UTF8_CHECKS.values():
        assert check(data) is expected


# -- masking: one class run against every implementation, plus a differential test ----------------

MASKERS = {
    "fallback": (buffer_util.py_mask, buffer_util.py_unmask),
    "chosen": (buffer_util.mask, buffer_util.unmask),
}


def reference_mask(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i & 3] for i, b in enumerate(data))


@pytest.mark.parametrize("impl", sorted(MASKERS))
class TestMasking:
    def test_rfc_example(self, impl: str) -> None:
        mask, unmask = MASKERS[impl]
        out = bytearray(5)
        mask(b"Hello", b"\x37\xfa\x21\x3d", out, 0, 5)
        assert out == bytes.fromhex("7f9f4d5158")
        unmask(out, b"\x37\xfa\x21\x3d")
        assert out == b"Hello"

    def test_offset_into_output(self, impl: str) -> None:
        mask, _ = MASKERS[impl]
        out = bytearray(b"\xaa" * 10)
        mask(b"Hello", b"\x37\xfa\x21\x3d", out, 3, 5)
        assert out == b"\xaa" * 3 + bytes.fromhex("7f9f4d5158") + b"\xaa" * 2

    def test_empty(self, impl: str) -> None:
        mask, unmask = MASKERS[impl]
        out = bytearray()
        mask(b"", b"abcd", out, 0, 0)
        unmask(out, b"abcd")
        assert out == b""

    def test_unmask_refuses_read_only(self, impl: str) -> None:
        _, unmask = MASKERS[impl]
        with pytest.raises((TypeError, BufferError, ValueError)):
            unmask(b"read-only", b"abcd")

    def test_mask_refuses_out_of_range(self, impl: str) -> None:
        mask, _ = MASKERS[impl]
        with pytest.raises((ValueError, IndexError)):
            mask(b"Hello", b"abcd", bytearray(4), 0, 5)


@pytest.mark.parametrize("impl", sorted(MASKERS))
@pytest.mark.parametrize(
    "size", [1, 3, 4, 5, 7, 8, 15, 16, 17, 31, 63, 64, 65, 1000, 4097, 65536, 65541]
)
@pytest.mark.parametrize("offset", [0, 1, 2, 3, 5, 14])
def test_mask_differential(impl: str, size: int, offset: int) -> None:
    mask, unmask = MASKERS[impl]
    data = bytes((i * 7 + 3) & 0xFF for i in range(size))
    key = b"\x01\x80\xfe\x37"
    expected = reference_mask(data, key)
    out = bytearray(offset + size)
    mask(data, key, out, offset, size)
    assert out[offset:] == expected
    view: Any = bytearray(expected)
    unmask(view, key)
    assert view == data

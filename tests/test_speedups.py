"""The native speedups (wsfast_bufferutil, wsfast_utf8validate) against their pure-Python twins.

- ``TestMasking`` / ``TestUtf8``: one class of behaviour tests, run against the native and the
  fallback implementation alike (the native one is skipped when the extension is not installed).
- ``test_*_differential``: hypothesis drives random buffers, sizes, offsets, masks and every
  UTF-8 validity class through both implementations, on every SIMD kernel the CPU has.
- ``test_expected_speedups_loaded`` fails when ``WSFAST_EXPECT_SPEEDUPS=1`` (CI's "present" axis)
  but ``wsfast.speedups()`` reports a fallback: a broken build must not pass as a slow success.

Run with and without ``WSFAST_NO_BUFFER_UTIL=1 WSFAST_NO_UTF_8_VALIDATE=1``.
"""

from __future__ import annotations

import array
import os
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wsfast
from wsfast import buffer_util, validation

try:
    import wsfast_bufferutil as native_bu
except ImportError:  # pragma: no cover - depends on the environment
    native_bu = None
try:
    import wsfast_utf8validate as native_u8
except ImportError:  # pragma: no cover - depends on the environment
    native_u8 = None

needs_bu = pytest.mark.skipif(native_bu is None, reason="wsfast-bufferutil is not installed")
needs_u8 = pytest.mark.skipif(native_u8 is None, reason="wsfast-utf8validate is not installed")

#: RFC 6455 section 5.7: "Hello" masked with 37 fa 21 3d.
RFC_MASK = b"\x37\xfa\x21\x3d"
RFC_HELLO_MASKED = b"\x7f\x9f\x4d\x51\x58"

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def reference_mask(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i & 3] for i, b in enumerate(data))


# --- which implementation is active ------------------------------------------------------------


@pytest.mark.parametrize(
    "key, native, env, seams",
    [
        (
            "bufferutil",
            native_bu,
            "WSFAST_NO_BUFFER_UTIL",
            [(buffer_util, "mask", "py_mask"), (buffer_util, "unmask", "py_unmask")],
        ),
        (
            "utf8validate",
            native_u8,
            "WSFAST_NO_UTF_8_VALIDATE",
            [
                (validation, "is_valid_utf8", "py_is_valid_utf8"),
                (validation, "Utf8Validator", "PyUtf8Validator"),
            ],
        ),
    ],
    ids=["bufferutil", "utf8validate"],
)
def test_speedups_report_what_is_in_use(
    key: str, native: Any, env: str, seams: list[tuple[Any, str, str]]
) -> None:
    # Installed and not switched off <=> reported and wired into the core's seam.
    active = native is not None and not os.environ.get(env)
    assert wsfast.speedups()[key] == (native.__version__ if active else None)
    for module, name, fallback in seams:
        expected = getattr(native, name) if active else getattr(module, fallback)
        assert getattr(module, name) is expected


@pytest.mark.skipif(
    os.environ.get("WSFAST_EXPECT_SPEEDUPS") != "1",
    reason="set WSFAST_EXPECT_SPEEDUPS=1 where the native extensions must be in use",
)
def test_expected_speedups_loaded() -> None:
    report = wsfast.speedups()
    assert report["bufferutil"] is not None, (
        "WSFAST_EXPECT_SPEEDUPS=1 but wsfast_bufferutil is not in use "
        f"(installed: {native_bu is not None}, "
        f"WSFAST_NO_BUFFER_UTIL={os.environ.get('WSFAST_NO_BUFFER_UTIL')!r}): "
        f"{wsfast.speedups_status()['bufferutil'].detail}"
    )
    assert report["utf8validate"] is not None, (
        "WSFAST_EXPECT_SPEEDUPS=1 but wsfast_utf8validate is not in use "
        f"(installed: {native_u8 is not None}, "
        f"WSFAST_NO_UTF_8_VALIDATE={os.environ.get('WSFAST_NO_UTF_8_VALIDATE')!r}): "
        f"{wsfast.speedups_status()['utf8validate'].detail}"
    )


# --- speedups_status: why a fallback is in use -------------------------------------------------


def test_status_agrees_with_speedups() -> None:
    report = wsfast.speedups()
    status = wsfast.speedups_status()
    assert set(status) == set(report) == {"bufferutil", "utf8validate"}
    for name, entry in status.items():
        assert entry.module_version == report[name]
        assert (entry.state == "native") == (report[name] is not None)
        assert entry.distribution == f"wsfast-{name}"
        assert entry.detail


def _fake_status(
    monkeypatch: pytest.MonkeyPatch,
    *,
    error: str | None,
    installed: str | None,
    module_file: bool = False,
) -> wsfast.SpeedupStatus:
    """bufferutil's status with its loading outcome and installed metadata replaced."""
    import importlib.metadata
    import importlib.util

    monkeypatch.setattr(buffer_util, "NATIVE", error is None)
    monkeypatch.setattr(buffer_util, "NATIVE_VERSION", "9.9.9" if error is None else None)
    monkeypatch.setattr(buffer_util, "NATIVE_ERROR", error)

    def version(dist: str) -> str:
        if installed is None:
            raise importlib.metadata.PackageNotFoundError(dist)
        return installed

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if module_file else None)
    return wsfast.speedups_status()["bufferutil"]


def test_status_native(monkeypatch: pytest.MonkeyPatch) -> None:
    status = _fake_status(monkeypatch, error=None, installed="9.9.9")
    assert (status.state, status.module_version, status.installed_version) == (
        "native",
        "9.9.9",
        "9.9.9",
    )
    assert status.detail == "native 9.9.9"


def test_status_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    status = _fake_status(monkeypatch, error="WSFAST_NO_BUFFER_UTIL is set", installed="0.1.0")
    assert status.state == "disabled"
    assert status.detail == "pure-Python fallback (WSFAST_NO_BUFFER_UTIL is set)"


def test_status_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    status = _fake_status(monkeypatch, error="ModuleNotFoundError: no", installed=None)
    assert (status.state, status.installed_version) == ("not-installed", None)
    assert status.detail == "pure-Python fallback (not installed)"


def test_status_installed_without_its_native_module(monkeypatch: pytest.MonkeyPatch) -> None:
    # What pip leaves behind after building wsfast-bufferutil without a C compiler.
    status = _fake_status(monkeypatch, error="ModuleNotFoundError: no", installed="0.1.0")
    assert (status.state, status.installed_version) == ("no-native-module", "0.1.0")
    assert "wsfast-bufferutil 0.1.0 is installed WITHOUT its native module" in status.detail
    assert "C compiler" in status.detail
    fix = "--force-reinstall --no-cache-dir --no-binary wsfast-bufferutil wsfast-bufferutil"
    assert fix in status.detail
    assert wsfast.speedups()["bufferutil"] is None  # the old report keeps its shape


def test_status_native_module_that_fails_to_import(monkeypatch: pytest.MonkeyPatch) -> None:
    error = "ImportError: undefined symbol: PyFoo"
    status = _fake_status(monkeypatch, error=error, installed="0.1.0", module_file=True)
    assert status.state == "no-native-module"
    assert f"wsfast_bufferutil failed to import: {error}" in status.detail


def test_info_reports_a_distribution_without_its_native_module(tmp_path: Any) -> None:
    """``wsfast info`` for a wsfast-bufferutil whose module is absent: metadata of a fake
    distribution first on sys.path, the real module (if any) hidden."""
    import subprocess
    import sys

    dist_info = tmp_path / "wsfast_bufferutil-9.9.9.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: wsfast-bufferutil\nVersion: 9.9.9\n"
    )
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); "
        "sys.modules['wsfast_bufferutil'] = None; "
        "from wsfast.cli import main; sys.exit(main(['info']))"
    )
    env = {k: v for k, v in os.environ.items() if k != "WSFAST_NO_BUFFER_UTIL"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert (
        "speedup bufferutil: pure-Python fallback (wsfast-bufferutil 9.9.9 is installed WITHOUT "
        "its native module" in result.stdout
    )
    assert "pip install --force-reinstall --no-cache-dir" in result.stdout
    assert "warning: wsfast-bufferutil installed without the native module" in result.stderr


# --- masking: one class, both implementations --------------------------------------------------

MaskFns = tuple[Callable[..., None], Callable[..., None]]

MASK_IMPLS = [
    pytest.param((buffer_util.py_mask, buffer_util.py_unmask), id="fallback"),
    pytest.param(
        (getattr(native_bu, "mask", None), getattr(native_bu, "unmask", None)),
        id="native",
        marks=needs_bu,
    ),
]


@pytest.mark.parametrize("impl", MASK_IMPLS)
class TestMasking:
    def test_rfc_6455_example(self, impl: MaskFns) -> None:
        mask, unmask = impl
        out = bytearray(7)
        mask(b"Hello", RFC_MASK, out, 2, 5)
        assert out == b"\x00\x00" + RFC_HELLO_MASKED
        unmask(memoryview(out)[2:], RFC_MASK)
        assert out[2:] == b"Hello"

    @pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 15, 16, 17, 63, 64, 65, 255, 256, 257, 4099])
    def test_sizes_and_offsets(self, impl: MaskFns, size: int) -> None:
        mask, unmask = impl
        rnd = random.Random(size)
        data, key = rnd.randbytes(size), rnd.randbytes(4)
        for offset in (0, 1, 2, 3, 7, 14):
            out = bytearray(b"\xee" * (offset + size + 3))
            mask(data, key, out, offset, size)
            assert out[:offset] == b"\xee" * offset
            assert out[offset : offset + size] == reference_mask(data, key)
            assert out[offset + size :] == b"\xee\xee\xee"
        buf = bytearray(data)
        unmask(buf, key)
        assert buf == reference_mask(data, key)

    def test_buffer_types(self, impl: MaskFns) -> None:
        mask, unmask = impl
        out = array.array("B", bytes(12))
        mask(memoryview(b"abcdefgh"), bytearray(b"1234"), out, 2, 8)
        assert out.tobytes()[2:10] == reference_mask(b"abcdefgh", b"1234")
        words = array.array("H", [1, 2, 3, 4])
        raw = words.tobytes()
        unmask(words, b"\x01\x02\x03\x04")
        assert words.tobytes() == reference_mask(raw, b"\x01\x02\x03\x04")

    def test_long_mask_uses_first_four_bytes(self, impl: MaskFns) -> None:
        _, unmask = impl
        buf = bytearray(b"abcdefgh")
        unmask(buf, b"\x01\x02\x03\x04\xff\xff")
        assert buf == reference_mask(b"abcdefgh", b"\x01\x02\x03\x04")

    @pytest.mark.parametrize(
        "call, exc",
        [
            (lambda m, u: u(b"abcd", RFC_MASK), TypeError),
            (lambda m, u: u(bytearray(4), b"\x01\x02\x03"), ValueError),
            (lambda m, u: u(memoryview(bytearray(8))[::2], RFC_MASK), TypeError),
            (lambda m, u: m(b"abcd", RFC_MASK, b"12345678", 0, 4), TypeError),
            (lambda m, u: m(b"abcd", b"\x01", bytearray(8), 0, 4), ValueError),
            (lambda m, u: m(b"abcd", RFC_MASK, bytearray(8), 5, 4), ValueError),
            (lambda m, u: m(b"abcd", RFC_MASK, bytearray(8), -1, 4), ValueError),
            (lambda m, u: m(b"abcd", RFC_MASK, bytearray(8), 0, -1), ValueError),
            (lambda m, u: m(b"abcd", RFC_MASK, bytearray(8), 0, 5), ValueError),
            (lambda m, u: m(b"abcd", RFC_MASK, bytearray(8), 2**64, 4), ValueError),
        ],
        ids=[
            "unmask-read-only",
            "unmask-short-mask",
            "unmask-non-contiguous",
            "mask-read-only-output",
            "mask-short-mask",
            "mask-past-output",
            "mask-negative-offset",
            "mask-negative-length",
            "mask-beyond-source",
            "mask-huge-offset",
        ],
    )
    def test_bad_arguments(self, impl: MaskFns, call: Callable[..., Any], exc: type) -> None:
        with pytest.raises(exc):
            call(*impl)

    def test_refused_call_writes_nothing(self, impl: MaskFns) -> None:
        mask, _ = impl
        out = bytearray(8)
        with pytest.raises(ValueError):
            mask(b"abcdefgh", RFC_MASK, out, 4, 8)
        assert out == bytes(8)

    def test_overlapping_source_and_output(self, impl: MaskFns) -> None:
        mask, _ = impl
        base = bytes(range(200))
        for shift in (1, 3, 4, 64):
            got = bytearray(base)
            mask(got, RFC_MASK, got, shift, 120)
            assert got[shift : shift + 120] == reference_mask(base[:120], RFC_MASK)
            assert got[:shift] == base[:shift]


# --- UTF-8: one class, both implementations ----------------------------------------------------

Utf8Fns = tuple[Callable[[Any], bool], Callable[[], Any]]

UTF8_IMPLS = [
    pytest.param((validation.py_is_valid_utf8, validation.PyUtf8Validator), id="fallback"),
    pytest.param(
        (getattr(native_u8, "is_valid_utf8", None), getattr(native_u8, "Utf8Validator", None)),
        id="native",
        marks=needs_u8,
    ),
]

#: (bytes, valid?) for each RFC 3629 class, with ids.
UTF8_CLASSES = {
    "ascii": (b"hello", True),
    "two-byte": ("é".encode(), True),
    "three-byte": ("€".encode(), True),
    "four-byte": ("😀".encode(), True),
    "max-code-point": ("\U0010ffff".encode(), True),
    "last-before-surrogates": ("\ud7ff".encode(), True),
    "first-after-surrogates": ("\ue000".encode(), True),
    "empty": (b"", True),
    "lone-continuation": (b"\x80", False),
    "overlong-2": (b"\xc0\xaf", False),
    "overlong-2-c1": (b"\xc1\xbf", False),
    "overlong-3": (b"\xe0\x80\xaf", False),
    "overlong-4": (b"\xf0\x80\x80\xaf", False),
    "surrogate": (b"\xed\xa0\x80", False),
    "surrogate-pair-cesu": (b"\xed\xa0\xbd\xed\xb8\x80", False),
    "above-max": (b"\xf4\x90\x80\x80", False),
    "f5": (b"\xf5\x80\x80\x80", False),
    "ff": (b"\xff", False),
    "truncated-2": (b"\xc3", False),
    "truncated-3": (b"\xe2\x82", False),
    "truncated-4": (b"\xf0\x9f\x98", False),
    "missing-continuation": (b"\xe2\x82a", False),
}


@pytest.mark.parametrize("impl", UTF8_IMPLS)
class TestUtf8:
    @pytest.mark.parametrize("name", list(UTF8_CLASSES))
    def test_validity_classes(self, impl: Utf8Fns, name: str) -> None:
        is_valid, _ = impl
        data, valid = UTF8_CLASSES[name]
        # Whatever surrounds it, in or across the vector blocks, the class decides.
        for padded in (data, b"x" * 61 + data, b"x" * 200 + data, data + b"y" * 100):
            assert is_valid(padded) is valid
        assert is_valid(bytearray(data)) is valid
        assert is_valid(memoryview(data)) is valid

    @pytest.mark.parametrize(
        "chunks, results",
        [
            ([b"\xed\xa0"], [False]),
            ([b"\xf4\x90"], [False]),
            ([b"\xe0\x80"], [False]),
            ([b"\xf0\x8f"], [False]),
            ([b"\xc3", b"\xa9"], [True, True]),
            ([b"\xf0\x9f", b"\x98", b"\x80"], [True, True, True]),
            ([b"ok", b"\xff"], [True, False]),
        ],
        ids=[
            "surrogate-prefix",
            "above-max-prefix",
            "overlong-3-prefix",
            "overlong-4-prefix",
            "split-2",
            "split-4",
            "invalid-second-chunk",
        ],
    )
    def test_incremental_fail_fast(
        self, impl: Utf8Fns, chunks: list[bytes], results: list[bool]
    ) -> None:
        _, validator = impl
        v = validator()
        assert [v.feed(c) for c in chunks] == results

    def test_final_refuses_open_character(self, impl: Utf8Fns) -> None:
        _, validator = impl
        v = validator()
        assert v.feed(b"abc\xe2\x82") is True
        assert v.feed(b"", final=True) is False
        v.reset()
        assert v.feed(b"\xe2\x82") is True
        assert v.feed(b"\xac", final=True) is True
        assert v.feed("fin ✓".encode(), final=True) is True  # ready for the next message


# --- differential (hypothesis) -----------------------------------------------------------------


def _bu_kernels() -> list[Any]:
    names = ["words", "sse2", "avx2", "avx512", "neon"]
    return [pytest.param(n, marks=needs_bu) for n in names]


def _u8_kernels() -> list[Any]:
    names = ["scalar", "avx2", "avx512", "neon"]
    return [pytest.param(n, marks=needs_u8) for n in names]


@pytest.fixture
def bu_kernel(request: pytest.FixtureRequest) -> Iterator[str]:
    assert native_bu is not None
    name = request.param
    if native_bu._use_kernel(name) != name:
        native_bu._use_kernel(None)
        pytest.skip(f"masking kernel {name} is not available on this CPU")
    yield name
    native_bu._use_kernel(None)


@pytest.fixture
def u8_kernel(request: pytest.FixtureRequest) -> Iterator[str]:
    assert native_u8 is not None
    name = request.param
    try:
        native_u8._use_kernel(name)
    except ValueError:
        pytest.skip(f"UTF-8 kernel {name} is not available on this CPU")
    yield name
    native_u8._use_kernel(None)


@pytest.mark.parametrize("bu_kernel", _bu_kernels(), indirect=True)
@SETTINGS
@given(
    data=st.binary(max_size=700),
    key=st.binary(min_size=4, max_size=6),
    offset=st.integers(0, 70),
    cut=st.integers(0, 700),
    slack=st.integers(0, 9),
)
def test_mask_differential(
    bu_kernel: str, data: bytes, key: bytes, offset: int, cut: int, slack: int
) -> None:
    assert native_bu is not None
    length = min(cut, len(data))
    native_out = bytearray(b"\x5a" * (offset + length + slack))
    py_out = bytearray(native_out)
    native_bu.mask(data, key, native_out, offset, length)
    buffer_util.py_mask(data, key, py_out, offset, length)
    assert native_out == py_out
    native_buf, py_buf = bytearray(data), bytearray(data)
    native_bu.unmask(memoryview(native_buf)[offset % 5 :], key)
    buffer_util.py_unmask(memoryview(py_buf)[offset % 5 :], key)
    assert native_buf == py_buf


@pytest.mark.parametrize("bu_kernel", _bu_kernels(), indirect=True)
@pytest.mark.parametrize("size", [65536 + 3, (8 << 20) + 5])  # aligned and streaming paths
def test_mask_differential_large(bu_kernel: str, size: int) -> None:
    assert native_bu is not None
    rnd = random.Random(size)
    data, key = rnd.randbytes(size), rnd.randbytes(4)
    native_out, py_out = bytearray(size + 1), bytearray(size + 1)
    native_bu.mask(data, key, native_out, 1, size)
    buffer_util.py_mask(data, key, py_out, 1, size)
    assert native_out == py_out


@pytest.mark.parametrize("bu_kernel", _bu_kernels(), indirect=True)
@SETTINGS
@given(
    data=st.binary(max_size=700),
    key=st.binary(min_size=4, max_size=6),
    cuts=st.lists(st.integers(0, 700), max_size=6),
    start=st.integers(0, 9),
)
def test_unmasked_differential(
    bu_kernel: str, data: bytes, key: bytes, cuts: list[int], start: int
) -> None:
    # unmasked / concat_unmasked (one new bytes from received pieces) against their fallbacks,
    # on any split of the payload and pieces that are views at odd offsets.
    assert native_bu is not None
    if not hasattr(native_bu, "concat_unmasked"):
        pytest.skip("the installed wsfast_bufferutil predates unmasked/concat_unmasked")
    assert native_bu.unmasked(data, key) == buffer_util.py_unmasked(data, key)
    bounds = sorted(min(c, len(data)) for c in cuts)
    padded = bytes(start) + data
    pieces: list[Any] = [
        memoryview(padded)[start + a : start + b] if i % 2 else data[a:b]
        for i, (a, b) in enumerate(zip([0, *bounds], [*bounds, len(data)], strict=True))
    ]
    expected = reference_mask(data, key[:4])
    assert native_bu.concat_unmasked(pieces, key) == expected
    assert buffer_util.py_concat_unmasked(pieces, key) == expected
    assert type(buffer_util.py_concat_unmasked(pieces, key)) is bytes


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 4095, 4096, 65536 + 3, (1 << 20) + 1])
def test_unmasked_fallback_and_seams(size: int) -> None:
    # The fallback returns bytes at every size, and the core's seams agree with it (native when
    # loaded, the fallback's own functions otherwise).
    rnd = random.Random(size)
    data, key = rnd.randbytes(size), rnd.randbytes(4)
    # Pieces cut off the key's phase: a 7-byte head, then reads of 64 KiB + 3.
    cuts = [0, *range(min(7, size), size, 65539), size]
    pieces = [memoryview(data)[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    expected = buffer_util.py_unmasked(data, key)
    assert type(expected) is bytes
    reps = (key * (size // 4 + 1))[:size]
    assert expected == (int.from_bytes(data, "little") ^ int.from_bytes(reps, "little")).to_bytes(
        size, "little"
    )
    assert buffer_util.py_concat_unmasked(pieces, key) == expected
    assert type(buffer_util.py_concat_unmasked(pieces, key)) is bytes
    assert buffer_util.unmasked(data, key) == expected
    assert buffer_util.concat_unmasked(pieces, key) == expected
    if buffer_util.NATIVE and hasattr(native_bu, "unmasked"):
        assert buffer_util.unmasked is native_bu.unmasked  # type: ignore[union-attr]
    assert buffer_util.py_unmasked(array.array("B", data), key) == expected
    with pytest.raises(ValueError):
        buffer_util.py_unmasked(data, b"abc")
    with pytest.raises(TypeError):
        buffer_util.py_concat_unmasked([data, None], key)


def test_older_native_module_without_unmasked() -> None:
    # wsfast-bufferutil is a separate distribution: a module from before unmasked and
    # concat_unmasked existed still serves them, through its unmask on a copy.
    import types

    unmask_calls: list[int] = []

    def old_unmask(buffer: Any, mask: Any) -> None:
        unmask_calls.append(len(buffer))
        buffer_util.py_unmask(buffer, mask)

    old = types.SimpleNamespace(mask=buffer_util.py_mask, unmask=old_unmask, __version__="0.0.9")
    unmasked, concat_unmasked = buffer_util._unmasked_pair(old)
    data, key = bytes(range(256)) * 5, b"\x01\x02\x03\x04"
    expected = reference_mask(data, key)
    assert unmasked(data, key) == expected
    assert concat_unmasked([data[:7], memoryview(data)[7:]], key) == expected
    assert unmask_calls == [len(data), len(data)]
    # A module with only one of the two is treated as old too.
    half = types.SimpleNamespace(unmask=old_unmask, unmasked=lambda d, k: b"wrong")
    assert buffer_util._unmasked_pair(half)[0](data, key) == expected
    if hasattr(native_bu, "concat_unmasked"):
        assert buffer_util._unmasked_pair(native_bu) == (
            native_bu.unmasked,
            native_bu.concat_unmasked,
        )


_PIECES = [value for value, _ in UTF8_CLASSES.values()] + [
    b"a",
    b" ",
    "ж".encode(),
    "中".encode(),
    "\u0800".encode(),
    "\uffff".encode(),
    "\U00010000".encode(),
    b"\xc3",
    b"\xa9",
    b"\x80",
    b"\xbf",
    b"\xf4",
]
utf8_like = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from(_PIECES), max_size=80).map(b"".join),
    st.tuples(st.integers(0, 140), st.lists(st.sampled_from(_PIECES), max_size=4)).map(
        lambda t: b"x" * t[0] + b"".join(t[1])
    ),
)


@pytest.mark.parametrize("u8_kernel", _u8_kernels(), indirect=True)
@SETTINGS
@given(data=utf8_like)
def test_utf8_differential(u8_kernel: str, data: bytes) -> None:
    assert native_u8 is not None
    assert native_u8.is_valid_utf8(data) is validation.py_is_valid_utf8(data)


@pytest.mark.parametrize("u8_kernel", _u8_kernels(), indirect=True)
@SETTINGS
@given(data=utf8_like, cuts=st.lists(st.integers(0, 300), max_size=4))
def test_utf8_incremental_differential(u8_kernel: str, data: bytes, cuts: list[int]) -> None:
    assert native_u8 is not None
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    native, fallback = native_u8.Utf8Validator(), validation.PyUtf8Validator()
    for i, chunk in enumerate(chunks):
        final = i == len(chunks) - 1
        got, expected = native.feed(chunk, final), fallback.feed(chunk, final)
        assert got is expected, (chunks, i)
        if not got:
            break


# --- the benchmark behind `python -m wsfast bench` ---------------------------------------------


def test_bench_table_runs_and_reports_every_column() -> None:
    import io

    from wsfast import _bench_speedups

    out = io.StringIO()
    results = _bench_speedups.run(seconds=0.05, sizes=(16, 2048), file=out)
    text = out.getvalue()
    assert "mask (into a buffer)" in text and "utf-8 invalid" in text and "2 KiB" in text
    implementations = {r["implementation"] for r in results}
    assert {"fallback", "memcpy", "bytes.decode"} <= implementations
    assert ("native" in implementations) == (native_bu is not None or native_u8 is not None)
    assert all(r["ns"] > 0 and r["gbps"] > 0 for r in results)
    assert _bench_speedups.size_label(1 << 20) == "1 MiB"
    assert _bench_speedups.size_label(3000) == "3000 B"
    assert [_bench_speedups._ns(x) for x in (12.4, 2.5e4, 3.2e6)] == ["12 ns", "25.0 us", "3.20 ms"]


def test_bench_without_natives_or_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    from wsfast import _bench_speedups

    for name in (
        "wsfast_bufferutil",
        "wsfast_utf8validate",
        "websockets.speedups",
        "aiohttp._websocket.mask",
    ):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail
    assert _bench_speedups.peers() == {}
    out = io.StringIO()
    results = _bench_speedups.run(seconds=0.05, sizes=(16,), file=out)
    assert "not installed" in out.getvalue()
    assert {r["implementation"] for r in results} == {"fallback", "memcpy", "bytes.decode"}


def test_bench_inputs() -> None:
    from wsfast import _bench_speedups

    for size in (0, 1, 16, 1000):
        assert len(_bench_speedups.ascii_text(size)) == size
        mixed = _bench_speedups.mixed_text(size)
        assert size - 4 <= len(mixed) <= size and validation.py_is_valid_utf8(mixed)
        assert not validation.py_is_valid_utf8(_bench_speedups.invalid_text(max(size, 1)))
    assert _bench_speedups.ascii_text(10).isascii()
    assert max(_bench_speedups.mixed_text(4000)) >= 0xF0  # holds 4-byte characters


# --- scan_frames: the native frame scanner against its pure-Python twin --------------------------

SCAN_KEY = b"\x37\xfa\x21\x3d"


def _frame(b0: int, payload: bytes, masked: bool, length_form: int | None = None) -> bytes:
    """One frame with first byte ``b0``; ``length_form`` 126/127 forces a longer length field."""
    n = len(payload)
    bit = 0x80 if masked else 0
    if length_form == 127:
        head = bytes((b0, bit | 127)) + n.to_bytes(8, "big")
    elif length_form == 126 or n >= 126:
        head = bytes((b0, bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, bit | n))
    if masked:
        return head + SCAN_KEY + reference_mask(payload, SCAN_KEY)
    return head + payload


def _scanners() -> list[Any]:
    scanners = [pytest.param(buffer_util.py_scan_frames, id="python")]
    scanners.append(
        pytest.param(
            getattr(native_bu, "scan_frames", None),
            id="native",
            marks=pytest.mark.skipif(
                not hasattr(native_bu, "scan_frames"), reason="no native scan_frames"
            ),
        )
    )
    return scanners


@pytest.mark.parametrize("scan", _scanners())
@pytest.mark.parametrize("masked", [True, False], ids=["masked", "unmasked"])
def test_scan_frames_takes_simple_frames_and_stops_before_others(scan: Any, masked: bool) -> None:
    simple = [
        _frame(0x82, b"abc", masked),
        _frame(0x81, "héllo".encode(), masked),
        _frame(0x82, b"", masked),
        _frame(0x81, b"", masked),
        _frame(0x82, bytes(range(256)) * 4, masked),  # 16-bit length
        _frame(0x81, "κ".encode() * 700, masked),  # text past the native stack buffer
        _frame(0x82, b"x" * 5, masked, length_form=126),  # a longer form than needed
    ]
    expected = [b"abc", "héllo", b"", "", bytes(range(256)) * 4, "κ" * 700, b"x" * 5]
    head = b"".join(simple)
    whole = [
        _frame(0x02, b"frag", masked),  # not FIN
        _frame(0x80, b"cont", masked),  # continuation
        _frame(0xC2, b"rsv1", masked),  # RSV1 (compressed)
        _frame(0x89, b"ping", masked),  # control frame
        _frame(0x82, b"long", masked, length_form=127),  # 64-bit length
        _frame(0x81, b"\xff\xfe", masked),  # invalid UTF-8
        _frame(0x81, b"ok\xc3", masked),  # truncated UTF-8 sequence
        _frame(0x82, b"wrong mask bit", not masked),
    ]
    incomplete = [  # nothing may follow these: the next bytes would complete them
        _frame(0x82, b"incomplete", masked)[:-1],
        _frame(0x82, b"x" * 300, masked)[:3],  # incomplete 16-bit length
        b"\x82",  # one byte
    ]
    for stopper, tail in [(f, simple[0]) for f in whole] + [(f, b"") for f in incomplete]:
        out: list[Any] = []
        assert scan(head + stopper + tail, 0, masked, 0, out) == len(head)
        assert out == expected
        assert [type(item) for item in out] == [type(item) for item in expected]
    # From an offset, and out of a bytearray or a memoryview.
    out = []
    first = len(simple[0])
    assert scan(memoryview(bytearray(head)), first, masked, 0, out) == len(head)
    assert out == expected[1:]
    # max_payload: the first frame over it stops the scan (0 means no limit).
    out = []
    assert scan(head, 0, masked, 1024, out) == len(b"".join(simple[:5]))
    assert out == expected[:5]
    out = []
    assert scan(b"", 0, masked, 0, out) == 0 and out == []
    with pytest.raises(ValueError):
        scan(head, -1, masked, 0, [])


@pytest.mark.skipif(not hasattr(native_bu, "scan_frames"), reason="no native scan_frames")
@SETTINGS
@given(
    frames=st.lists(
        st.tuples(
            st.sampled_from([0x81, 0x82, 0x81, 0x82, 0x02, 0x80, 0xC1, 0x89, 0x92]),
            st.one_of(
                st.binary(max_size=40),
                st.text(max_size=20).map(lambda t: t.encode()),
                st.binary(min_size=126, max_size=1500),
            ),
            st.sampled_from([None, None, None, 126, 127]),
            st.booleans(),
        ),
        max_size=12,
    ),
    masked=st.booleans(),
    cut=st.integers(0, 4000),
    start=st.integers(0, 3),
    max_payload=st.sampled_from([0, 0, 30, 200]),
)
def test_scan_frames_differential(
    frames: list[tuple[int, bytes, int | None, bool]],
    masked: bool,
    cut: int,
    start: int,
    max_payload: int,
) -> None:
    wire = bytes(start) + b"".join(
        _frame(b0, payload, masked if right_bit else not masked, form)
        for b0, payload, form, right_bit in frames
    )
    wire = wire[: start + cut]
    native_out: list[Any] = []
    py_out: list[Any] = []
    assert native_bu is not None
    native_end = native_bu.scan_frames(wire, start, masked, max_payload, native_out)
    py_end = buffer_util.py_scan_frames(wire, start, masked, max_payload, py_out)
    assert native_end == py_end
    assert native_out == py_out
    assert [type(item) for item in native_out] == [type(item) for item in py_out]


def test_receiver_uses_the_native_scanner_when_loaded() -> None:
    assert buffer_util.NATIVE_SCAN == (buffer_util.NATIVE and hasattr(native_bu, "scan_frames"))
    if buffer_util.NATIVE_SCAN:
        assert buffer_util.scan_frames is native_bu.scan_frames  # type: ignore[union-attr]
    else:
        assert buffer_util.scan_frames is buffer_util.py_scan_frames

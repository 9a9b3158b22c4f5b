"""Differential fuzzing of the native masking module against its fallback: ``mask`` and
``unmask`` of ``wsfast_bufferutil`` against ``wsfast.buffer_util.py_mask``/``py_unmask``, on
every SIMD kernel the CPU has.

Input: a flags byte (bits 0-2 the kernel, bits 3-4 the source's type: bytes, bytearray,
memoryview of a slice, read-only output), key length (0..7), offset, length and slack bytes,
then the data.

Invariant: both raise the same exception type, or both succeed and write the same bytes (and
the native ``mask`` touches nothing outside ``output[offset:offset + length]``).
"""

from __future__ import annotations

from typing import Any

from wsfuzz import Input, instrumented, main

with instrumented():
    from wsfast.buffer_util import py_mask, py_unmask

import wsfast_bufferutil as native

KERNELS = [
    name for name in ("words", "sse2", "avx2", "avx512", "neon") if native._use_kernel(name) == name
]
native._use_kernel(None)


def outcome(call: Any, *args: Any) -> Any:
    try:
        call(*args)
    except (TypeError, ValueError) as exc:
        return type(exc)
    return None


def TestOneInput(data: bytes) -> None:
    inp = Input(data)
    flags = inp.byte()
    native._use_kernel(KERNELS[flags % len(KERNELS)])
    key = inp.take(inp.byte() & 7)
    offset = inp.byte() - 8  # a few negative offsets
    length = inp.byte() * 8 + (inp.byte() & 7) - 4
    slack = inp.byte() & 15
    source: Any = inp.rest()
    kind = (flags >> 3) & 3
    if kind == 1:
        source = bytearray(source)
    elif kind == 2:
        source = memoryview(source)[1:]
    size = max(0, offset) + max(0, length) + slack - 8
    fill = bytes(range(256)) * (size // 256 + 1)
    out_native: Any = bytearray(fill[: max(0, size)])
    out_py: Any = bytearray(out_native)
    if kind == 3:
        out_native, out_py = bytes(out_native), bytes(out_py)
    a = outcome(native.mask, source, key, out_native, offset, length)
    b = outcome(py_mask, source, key, out_py, offset, length)
    assert a == b, ("mask", a, b, len(source), len(key), offset, length, size)
    assert out_native == out_py, "mask wrote different bytes"

    buf_native = bytearray(source)
    buf_py = bytearray(source)
    a = outcome(native.unmask, buf_native, key)
    b = outcome(py_unmask, buf_py, key)
    assert a == b, ("unmask", a, b, len(key))
    assert buf_native == buf_py, "unmask wrote different bytes"
    # A read-only buffer is refused by both.
    assert outcome(native.unmask, bytes(source), key) == outcome(py_unmask, bytes(source), key)
    native._use_kernel(None)


if __name__ == "__main__":
    main(TestOneInput)

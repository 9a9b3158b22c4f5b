"""Differential fuzzing of the native UTF-8 validator against its fallback and CPython:
``wsfast_utf8validate.is_valid_utf8`` against ``wsfast.validation.py_is_valid_utf8`` and
``bytes.decode("utf-8")``, and the incremental ``Utf8Validator`` (native against
``PyUtf8Validator``) on the same input cut into pieces, on every SIMD kernel the CPU has.

Input: a flags byte (bits 0-1 the kernel), a cut-count byte (low 3 bits), that many cut bytes,
then the data.

Invariant: the same answer from all three on the whole input; from both validators on every
piece until the first refusal; the incremental answer at the end equals the whole one.
"""

from __future__ import annotations

from wsfuzz import Input, instrumented, main

with instrumented():
    from wsfast.validation import PyUtf8Validator, py_is_valid_utf8

import wsfast_utf8validate as native


def _available(name: str) -> bool:
    try:
        native._use_kernel(name)
    except ValueError:
        return False
    return True


KERNELS = [name for name in ("scalar", "avx2", "avx512", "neon") if _available(name)]
native._use_kernel(None)


def TestOneInput(data: bytes) -> None:
    inp = Input(data)
    flags = inp.byte()
    native._use_kernel(KERNELS[flags % len(KERNELS)])
    cuts = [inp.byte() for _ in range(inp.byte() & 7)]
    text = inp.rest()
    try:
        text.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    assert native.is_valid_utf8(text) is valid, text
    assert native.is_valid_utf8(bytearray(text)) is valid, text
    assert py_is_valid_utf8(text) is valid, text

    points = sorted({c * (len(text) + 1) // 256 for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    ours, theirs = native.Utf8Validator(), PyUtf8Validator()
    result = True
    for i, piece in enumerate(pieces):
        final = i == len(pieces) - 1
        a = ours.feed(piece, final)
        b = theirs.feed(piece, final)
        assert a == b, (pieces, i, a, b)
        if not a:
            result = False
            break
    assert result == valid, (pieces, result, valid)
    native._use_kernel(None)


if __name__ == "__main__":
    main(TestOneInput)

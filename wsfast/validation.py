"""Close-code and UTF-8 validation (the twin of ws' ``lib/validation.js``).

This module is the one place that chooses between the native ``wsfast_utf8validate`` extension
and the pure-Python fallback; set ``WSFAST_NO_UTF_8_VALIDATE`` to any non-empty value to force the
fallback.
"""

from __future__ import annotations

import codecs
import os
from typing import Any

__all__ = [
    "is_valid_status_code",
    "is_valid_utf8",
    "Utf8Validator",
    "py_is_valid_utf8",
    "PyUtf8Validator",
    "NATIVE",
    "NATIVE_VERSION",
    "NATIVE_ERROR",
]


def is_valid_status_code(code: int) -> bool:
    """True if ``code`` may appear in a close frame received from a peer (RFC 6455 7.4).

    1004-1006 and 1015 are reserved and must never be sent; 1000-2999 beyond the registered
    codes are reserved for the protocol; 3000-4999 are for libraries and applications.
    """
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


def py_is_valid_utf8(buffer: Any) -> bool:
    """Pure-Python UTF-8 check with RFC 3629 semantics (CPython's decoder is strict)."""
    try:
        str(buffer, "utf-8")
    except UnicodeDecodeError:
        return False
    return True


_Decoder = codecs.getincrementaldecoder("utf-8")


class PyUtf8Validator:
    """Incremental, fail-fast UTF-8 validation of a message that arrives in fragments.

    ``feed`` returns False as soon as the bytes seen so far cannot begin any valid UTF-8 text,
    so a text message is refused on the fragment that breaks it (Autobahn 6.4.x).
    """

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = _Decoder()

    def feed(self, buffer: Any, final: bool = False) -> bool:
        """Validate the next chunk; ``final`` says no more bytes follow."""
        try:
            self._decoder.decode(buffer, final)
        except UnicodeDecodeError:
            return False
        if not final:
            # CPython's decoder waits for a third byte before refusing an encoded surrogate
            # (ED A0..BF): refuse it now, the second byte already makes it invalid.
            pending = self._decoder.getstate()[0]
            if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
                return False
        return True

    def reset(self) -> None:
        """Forget any partial sequence, ready for the next message."""
        self._decoder.reset()


def _load_native() -> tuple[Any, str | None]:
    """The native module, or None and why not (read by ``wsfast.speedups_status()``)."""
    if os.environ.get("WSFAST_NO_UTF_8_VALIDATE"):
        return None, "WSFAST_NO_UTF_8_VALIDATE is set"
    try:
        import wsfast_utf8validate  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return wsfast_utf8validate, None


_native, NATIVE_ERROR = _load_native()
NATIVE: bool = _native is not None
NATIVE_VERSION: str | None = getattr(_native, "__version__", None) if _native else None

if _native is not None:
    is_valid_utf8 = _native.is_valid_utf8
    Utf8Validator: Any = _native.Utf8Validator
else:
    is_valid_utf8 = py_is_valid_utf8
    Utf8Validator = PyUtf8Validator

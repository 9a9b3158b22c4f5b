"""Masking and buffer helpers (the twin of ws' ``lib/buffer-util.js``).

This module is the one place that chooses between the native ``wsfast_bufferutil`` extension and
the pure-Python fallback; set ``WSFAST_NO_BUFFER_UTIL`` to any non-empty value to force the
fallback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = [
    "mask",
    "unmask",
    "unmasked",
    "concat_unmasked",
    "concat",
    "scan_frames",
    "payload_buffer",
    "NATIVE",
    "NATIVE_SCAN",
    "NATIVE_VERSION",
    "NATIVE_ERROR",
    "py_mask",
    "py_unmask",
    "py_unmasked",
    "py_concat_unmasked",
    "py_scan_frames",
    "PyPayloadBuffer",
]


# XOR tables: _XOR[k] maps every byte b to b ^ k, so bytes.translate XORs a whole strided slice
# in one C loop. Measured on the CI machine: 1.1 GB/s at 64 KiB..1 MiB against 0.1-0.2 GB/s for
# XOR through int.from_bytes, whose cost grows faster than the size.
_XOR = [bytes(b ^ k for b in range(256)) for k in range(256)]
# Below this size the int route is cheaper: one XOR instead of four slice round trips.
_SMALL = 512
# The same for a result that must be bytes (the translate route ends with a copy into bytes):
# at 1 KiB the int route took 4.9 us against 7.8 us, at 2 KiB 15.8 us against 11.6 us.
_SMALL_BYTES = 2048
# Strided slices of a chunk that fits in L2 stay fast; over a whole 16 MiB buffer they ran 3x
# slower.
_CHUNK = 16384


def _masked(data: Any, key: bytes) -> bytes | bytearray:
    """``data`` XOR the repeated 4-byte ``key``, as a new buffer of the same length."""
    n = len(data)
    if n < _SMALL:
        return _masked_small(data, key, n)
    return _xor_in_place(bytearray(data), key)


def _masked_small(data: Any, key: bytes, n: int) -> bytes:
    reps = (key * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(reps, "little")).to_bytes(n, "little")


def _xor_in_place(out: bytearray, key: bytes) -> bytearray:
    t0, t1, t2, t3 = (_XOR[k] for k in key)
    for start in range(0, len(out), _CHUNK):
        chunk = out[start : start + _CHUNK]
        chunk[0::4] = chunk[0::4].translate(t0)
        chunk[1::4] = chunk[1::4].translate(t1)
        chunk[2::4] = chunk[2::4].translate(t2)
        chunk[3::4] = chunk[3::4].translate(t3)
        out[start : start + _CHUNK] = chunk
    return out


def _key(mask: Any) -> bytes:
    key = bytes(mask)
    if len(key) < 4:
        raise ValueError("mask must be 4 bytes long")
    return key[:4]


def py_mask(source: Any, mask: Any, output: Any, offset: int, length: int) -> None:
    """Pure-Python ``mask``: writes ``source[:length]`` XOR ``mask`` into ``output[offset:]``."""
    key = _key(mask)
    out = memoryview(output)
    if out.readonly:
        raise TypeError("output buffer is read-only")
    if offset < 0 or length < 0 or offset + length > out.nbytes:
        raise ValueError("offset/length out of range of output")
    src = memoryview(source).cast("B")
    if length > src.nbytes:
        raise ValueError("length exceeds source")
    if length:
        out.cast("B")[offset : offset + length] = _masked(src[:length], key)


def py_unmask(buffer: Any, mask: Any) -> None:
    """Pure-Python ``unmask``: XORs ``buffer`` with ``mask`` in place."""
    key = _key(mask)
    view = memoryview(buffer).cast("B")
    if view.readonly:
        raise TypeError("buffer is read-only")
    if view.nbytes:
        view[:] = _masked(view, key)


def py_unmasked(data: Any, mask: Any) -> bytes:
    """Pure-Python ``unmasked``: a new ``bytes`` holding ``data`` XOR ``mask``."""
    return _unmasked(memoryview(data).cast("B"), _key(mask))


def py_concat_unmasked(chunks: Iterable[Any], mask: Any) -> bytes:
    """Pure-Python ``concat_unmasked``: ``unmasked(b"".join(chunks), mask)``."""
    key = _key(mask)
    return _concat_unmasked([memoryview(chunk).cast("B") for chunk in chunks], key)


def py_scan_frames(data: Any, pos: int, masked: bool, max_payload: int, out: list[Any]) -> int:
    """Pure-Python ``scan_frames``: parse the whole, simple data frames of ``data`` from ``pos``.

    A simple frame is FIN with opcode text or binary, RSV bits clear, masked if and only if
    ``masked``, a 7- or 16-bit length within ``max_payload`` (0: no limit), and entirely in
    ``data``. Each one's payload is appended to ``out``, unmasked: ``bytes`` for binary, ``str``
    for text. The scan stops before the first frame that is not simple or not complete, and
    before a text frame that is not valid UTF-8, and returns where the frames it took end.
    """
    if pos < 0:
        raise ValueError("pos must not be negative")
    view = memoryview(data).cast("B")
    size = len(view)
    mask_bit = 0x80 if masked else 0
    while size - pos >= 2:
        b0 = view[pos]
        b1 = view[pos + 1]
        if (b0 != 0x81 and b0 != 0x82) or (b1 & 0x80) != mask_bit:
            break
        length = b1 & 0x7F
        start = pos + 2
        if length == 126:
            if size - start < 2:
                break
            length = (view[start] << 8) | view[start + 1]
            start += 2
        elif length == 127:
            break
        if max_payload > 0 and length > max_payload:
            break
        if masked:
            end = start + 4 + length
            if end > size:
                break
            payload = _unmasked(view[start + 4 : end], bytes(view[start : start + 4]))
        else:
            end = start + length
            if end > size:
                break
            payload = bytes(view[start:end])
        if b0 == 0x81:
            try:
                out.append(str(payload, "utf-8"))
            except UnicodeDecodeError:
                break
        else:
            out.append(payload)
        pos = end
    return pos


# The fallback's seams for the core, without the argument checks of their py_ twins: the core
# passes bytes or memoryviews of bytes, and a 4-byte key.
def _unmasked(data: Any, key: bytes) -> bytes:
    """A new ``bytes`` holding ``data`` XOR the 4-byte ``key`` (the fallback's ``unmasked``)."""
    n = len(data)
    if n < _SMALL_BYTES:
        # Inline, not _masked_small: this is the fallback's per-message cost for small frames.
        reps = (key * ((n >> 2) + 1))[:n]
        return (int.from_bytes(data, "little") ^ int.from_bytes(reps, "little")).to_bytes(
            n, "little"
        )
    return _windows_unmasked((data,), key)


def _concat_unmasked(chunks: Iterable[Any], key: bytes) -> bytes:
    """The concatenation of ``chunks`` XOR the 4-byte ``key`` (the fallback's
    ``concat_unmasked``)."""
    if type(chunks) is not list:
        chunks = list(chunks)
    n = sum(len(chunk) for chunk in chunks)
    if n < _SMALL_BYTES:
        return _masked_small(b"".join(chunks), key, n)
    return _windows_unmasked(chunks, key)


def _windows_unmasked(chunks: Iterable[Any], key: bytes) -> bytes:
    """Unmask in windows that stay in L2, then one join into the result.

    The only payload-sized allocation is the result: a payload-sized temporary as well (join
    into a bytearray, translate, bytes()) doubled the time at 1 MiB, most of it page faults
    (glibc gives the freed pair back to the OS, and the next message faults it in again).
    """
    windows = []
    done = 0
    for chunk in chunks:
        view = memoryview(chunk)
        n = len(chunk)
        for start in range(0, n, _CHUNK):
            window = bytearray(view[start : start + _CHUNK])
            shift = (done + start) & 3
            t0, t1, t2, t3 = (_XOR[k] for k in key[shift:] + key[:shift])
            window[0::4] = window[0::4].translate(t0)
            window[1::4] = window[1::4].translate(t1)
            window[2::4] = window[2::4].translate(t2)
            window[3::4] = window[3::4].translate(t3)
            windows.append(window)
        done += n
    return b"".join(windows)


def _load_native() -> tuple[Any, str | None]:
    """The native module, or None and why not (read by ``wsfast.speedups_status()``)."""
    if os.environ.get("WSFAST_NO_BUFFER_UTIL"):
        return None, "WSFAST_NO_BUFFER_UTIL is set"
    try:
        import wsfast_bufferutil  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return wsfast_bufferutil, None


_native, NATIVE_ERROR = _load_native()
NATIVE: bool = _native is not None
NATIVE_VERSION: str | None = getattr(_native, "__version__", None) if _native else None


def _unmasked_pair(
    native: Any,
) -> tuple[Callable[[Any, bytes], bytes | bytearray], Callable[[Iterable[Any], bytes], Any]]:
    """``unmasked`` and ``concat_unmasked`` for a native module, or the fallback's for None.

    wsfast and wsfast-bufferutil are separate distributions: a module older than its
    ``unmasked``/``concat_unmasked`` gets them built from its ``unmask`` on a copy, which
    returns a ``bytearray`` (still one copy plus one in-place pass, as before they existed).
    """
    if native is None:
        return _unmasked, _concat_unmasked
    native_unmasked = getattr(native, "unmasked", None)
    native_concat = getattr(native, "concat_unmasked", None)
    if native_unmasked is not None and native_concat is not None:
        return native_unmasked, native_concat
    native_unmask = native.unmask

    def unmasked(data: Any, key: bytes) -> bytes | bytearray:
        """A new buffer holding ``data`` XOR the 4-byte ``key`` (an older native module)."""
        buf = bytearray(data)
        native_unmask(buf, key)
        return buf

    def concat_unmasked(chunks: Iterable[Any], key: bytes) -> bytearray:
        """The concatenation of ``chunks`` XOR the 4-byte ``key`` (an older native module)."""
        buf = bytearray().join(chunks)
        native_unmask(buf, key)
        return buf

    return unmasked, concat_unmasked


if _native is not None:
    mask = _native.mask
    unmask = _native.unmask
else:
    mask = py_mask
    unmask = py_unmask

#: ``unmasked(data, key)``: a new buffer holding ``data`` XOR the 4-byte ``key`` (``bytes``, or
#: a ``bytearray`` with an older native module); ``data`` is left as it is.
#: ``concat_unmasked(chunks, key)``: the same for the concatenation of ``chunks``, the key's
#: phase carrying on across them (the pieces of one received payload).
unmasked, concat_unmasked = _unmasked_pair(_native)


#: ``scan_frames(data, pos, masked, max_payload, out)``: the native frame scanner when the module
#: has it (``NATIVE_SCAN``), else its pure-Python twin. The receiver uses it only when native:
#: its own inline loop is the fallback's faster form.
scan_frames: Callable[[Any, int, bool, int, list[Any]], int] = (
    getattr(_native, "scan_frames", None) or py_scan_frames
)
NATIVE_SCAN: bool = scan_frames is not py_scan_frames


class PyPayloadBuffer(bytearray):
    """The fallback's ``PayloadBuffer``: a zero-filled ``bytearray`` of the payload's size;
    :meth:`take` returns a ``bytes`` copy, as the native one returns ``bytes``."""

    __slots__ = ()

    def take(self) -> bytes:
        return bytes(self)


#: ``payload_buffer(size)``: a writable buffer of ``size`` bytes for one received payload, read
#: into in place (``recv_into``, ``BufferedProtocol``); its ``take()`` returns the payload. The
#: native one is a ``bytes`` that is not zero-filled, so the payload is never copied after the
#: socket wrote it.
payload_buffer: Callable[[int], Any] = getattr(_native, "PayloadBuffer", None) or PyPayloadBuffer


def concat(chunks: Sequence[bytes | bytearray | memoryview], total: int | None = None) -> bytes:
    """Join received chunks into one ``bytes`` (ws' ``concat``)."""
    if len(chunks) == 1:
        only = chunks[0]
        return only if type(only) is bytes else bytes(only)
    return b"".join(chunks)

"""Frame serialisation (the twin of ws' ``lib/sender.js``), sans-I/O.

:func:`frame` is a pure function from (payload, opcode, flags, mask) to the bytes on the wire.
:class:`Sender` adds the per-connection state a message needs: the role (clients mask), the
negotiated permessage-deflate and whether the fragmented message being sent is compressed.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable
from typing import Any

from .buffer_util import mask as mask_into
from .buffer_util import unmasked
from .constants import OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT
from .exceptions import WebSocketError
from .permessage_deflate import deflate_message
from .validation import is_valid_status_code

__all__ = [
    "frame",
    "frame_header",
    "close_payload",
    "coalesce",
    "generate_mask",
    "Sender",
    "MaskedFrame",
    "PreparedMessage",
]

#: A frame header's first two bytes and its 16-bit or 64-bit extended length (RFC 6455 5.2).
pack_16 = struct.Struct("!BBH").pack
pack_64 = struct.Struct("!BBQ").pack

# Frames at least this large are written as header and payload separately (Sender.message),
# so that the payload is not copied. Below it, header and payload are joined into one frame:
# a separate header is a write() and a TCP segment of its own. At 64 KiB the copy costs less
# than that second write (split.py, 64 KiB echo, server: 14.0k -> 16.1k msg/s median of five
# alternating runs; server sys time 24 -> 19 us per message); at 1 MiB it would not.
SPLIT_SIZE = 262144
#: Masked frames below this size are joined from header, key and masked payload; from it on the
#: payload is masked into a preallocated buffer (frame()).
MASK_INLINE = 4096
#: The largest masked frame a connection keeps to build the next one in (Sender.reuse).
SPARE_MAX = 4 << 20
#: Whole messages from this size on are sampled before compression (``_incompressible``); below
#: it the sample's ~3 us would be a noticeable share of deflating text.
SAMPLE_FROM = 8192
#: Distinct byte values in a 128-byte sample above which a payload is taken as incompressible.
#: Measured: random bytes 102 (expected 100.7, deviation ~4.5), base64 57, JSON 28, English
#: text 31, CJK text in UTF-8 22; deflate at level 1 leaves random bytes at 100% of their size
#: and base64 at 76%.
_DISTINCT_LIMIT = 80

# Masks come from a pool filled by one os.urandom call: one syscall per 2048 masks instead of one
# per frame. The bytes are still from the OS CSPRNG, as RFC 6455 10.3 requires.
#
# The pool is handed out through an iterator: ``next()`` on a list iterator is one atomic step
# under the GIL, so threads sharing the pool never get the same key (a read-then-advance index
# could give two threads the same four bytes), and two threads refilling at once each take their
# own os.urandom pool. A forked child must not repeat its parent's keys: the pool is emptied in
# the child (os.register_at_fork). Measured per mask (timeit, this machine): 167 ns with the
# index, 137 ns with the iterator of chunks split by one regex call.
_POOL_SIZE = 8192
_split = re.compile(b"....", re.DOTALL).findall
_next_mask: Callable[[], bytes] = iter(()).__next__


def _empty_pool() -> None:
    global _next_mask
    _next_mask = iter(()).__next__


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_empty_pool)


def generate_mask() -> bytes:
    """Four cryptographically random bytes for a client frame's masking key (thread-safe)."""
    global _next_mask
    try:
        return _next_mask()
    except StopIteration:
        masks: Callable[[], bytes] = iter(_split(os.urandom(_POOL_SIZE))).__next__
        _next_mask = masks
        return masks()


def coalesce(chunks: list[Any], limit: int) -> list[Any]:
    """Group the frames of a batch into writes: each run of frames joined up to ``limit``
    bytes, and a frame of ``limit`` bytes or more written alone, never copied.

    The front ends wrote a batch past ``limit`` frame by frame: a pipelined read of 80
    frames of 1 KiB was answered with 80 ``write()`` calls, where this makes 2.
    """
    writes: list[Any] = []
    group: list[Any] = []
    size = 0
    for chunk in chunks:
        length = len(chunk)
        if group and size + length > limit:
            writes.append(group[0] if len(group) == 1 else b"".join(group))
            group = []
            size = 0
        group.append(chunk)
        size += length
    if group:
        writes.append(group[0] if len(group) == 1 else b"".join(group))
    return writes


def frame_header(length: int, opcode: int, fin: bool, rsv1: bool, masked: bool) -> bytes:
    """The 2, 4 or 10 byte frame header without the masking key (RFC 6455 5.2)."""
    b0 = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
    m = 0x80 if masked else 0
    if length < 126:
        return bytes((b0, m | length))
    if length < 65536:
        return pack_16(b0, m | 126, length)
    return pack_64(b0, m | 127, length)


def frame(
    data: Any,
    opcode: int,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes | None = None,
) -> bytes | bytearray:
    """Serialise one frame. ``mask`` is the 4-byte masking key, or None for an unmasked frame."""
    if type(data) is not bytes and type(data) is not bytearray:
        data = _byte_buffer(data)
    length = len(data)
    header = frame_header(length, opcode, fin, rsv1, mask is not None)
    if mask is None:
        if not length:
            return header
        unmasked_frame: bytes = header + data
        return unmasked_frame
    if length < MASK_INLINE:
        # Small frames: three short concatenations beat filling a preallocated buffer through
        # mask(), whose argument checks dominate at this size.
        if not length:
            return header + mask
        masked: bytes = header + mask + unmasked(data, mask)
        return masked
    start = len(header) + 4
    out = bytearray(start + length)
    out[: start - 4] = header
    out[start - 4 : start] = mask
    mask_into(data, mask, out, start, length)
    return out


def _incompressible(data: Any) -> bool:
    """Whether ``data`` looks incompressible, judged from 64 bytes at its start and 64 in its
    middle: random bytes show nearly every byte value there, text and structured data few."""
    middle = len(data) >> 1
    sample = bytes(data[:64]) + bytes(data[middle : middle + 64])
    return len(set(sample)) > _DISTINCT_LIMIT


def _byte_buffer(data: Any) -> Any:
    """``data`` as a buffer whose len() counts bytes, as the frame length does: str is encoded,
    and a buffer of multi-byte items (``array('H')``, ``memoryview.cast('I')``) is viewed as
    bytes; len() of those counts items, which framed a wrong length or truncated the payload."""
    if type(data) is bytes or type(data) is bytearray:
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    return memoryview(data).cast("B")


def close_payload(code: int | None, reason: str | bytes = "") -> bytes:
    """The payload of a close frame, checked as ws checks it before sending."""
    if code is None:
        if reason:
            raise TypeError("a close reason needs a close code")
        return b""
    if isinstance(code, bool) or not isinstance(code, int) or not is_valid_status_code(code):
        raise TypeError("First argument must be a valid error code number")
    raw = reason.encode("utf-8") if isinstance(reason, str) else bytes(reason)
    if len(raw) > 123:
        raise ValueError("The message must not be greater than 123 bytes")
    return code.to_bytes(2, "big") + raw


class PreparedMessage:
    """One data message framed once for any number of server-side receivers.

    Server frames are unmasked (RFC 6455 5.1), so every receiver gets the same bytes: the
    frame is built on first use and the same ``bytes`` object is written to every transport.
    A compressed frame is built once per :attr:`PerMessageDeflate.message_key` (receivers
    whose server side has no context takeover and equal parameters); see
    :meth:`Protocol.send_prepared` for which receivers get which.
    """

    __slots__ = ("payload", "binary", "_frame", "_deflated")

    def __init__(self, data: Any, binary: bool | None = None) -> None:
        if binary is None:
            binary = not isinstance(data, str)
        #: The message's bytes (UTF-8 for text).
        self.payload: bytes | bytearray | memoryview = _byte_buffer(data)
        self.binary = binary
        self._frame: bytes | bytearray | None = None
        self._deflated: dict[tuple[int, int, int, int], bytes | bytearray] = {}

    def frame(self) -> bytes | bytearray:
        """The uncompressed frame (built once)."""
        out = self._frame
        if out is None:
            out = self._frame = frame(self.payload, OP_BINARY if self.binary else OP_TEXT)
        return out

    def deflated(self, key: tuple[int, int, int, int]) -> bytes | bytearray:
        """The compressed frame (RSV1 set) for receivers whose message key is ``key``."""
        out = self._deflated.get(key)
        if out is None:
            payload = deflate_message(self.payload, key)
            opcode = OP_BINARY if self.binary else OP_TEXT
            out = self._deflated[key] = frame(payload, opcode, rsv1=True)
        return out


class MaskedFrame(bytearray):
    """A masked frame of ``SPLIT_SIZE`` bytes or more (a client's), which its connection may
    build the next such frame in once it is written: see :meth:`Sender.reuse`."""

    __slots__ = ()


class Sender:
    """Per-connection framing: masks on the client side, compresses when negotiated."""

    __slots__ = (
        "is_client",
        "deflate",
        "generate_mask",
        "plain",
        "masking",
        "_compress_fragments",
        "first_fragment",
        "_spare",
    )

    def __init__(
        self,
        *,
        is_client: bool,
        deflate: Any = None,
        generate_mask: Callable[[], bytes] | None = None,
    ) -> None:
        self.is_client = is_client
        self.deflate = deflate
        self.generate_mask = generate_mask or _default_mask
        #: Unmasked and uncompressed by default: Protocol.send frames small messages itself.
        self.plain = not is_client and deflate is None
        #: Masked and uncompressed: Protocol.send frames small messages itself.
        self.masking = is_client and deflate is None
        self._compress_fragments = False
        #: False while a message sent with ``fin=False`` is unfinished.
        self.first_fragment = True
        self._spare: MaskedFrame | None = None

    def reuse(self, frame: MaskedFrame) -> None:
        """``frame`` was written and nothing holds it any more (the transport's write buffer
        was empty right after the write): the next large masked frame is built in it.

        A client that sends large messages then masks each into the same buffer instead of a
        new one: at 1 MiB the new buffer and the received message, both freed per message, made
        glibc give the heap's top back to the OS and fault it in again each time (542 page
        faults per echoed message in the benchmark's client, 0 with the buffer reused).
        """
        if len(frame) <= SPARE_MAX:
            self._spare = frame

    def _mask_for(self, mask: bool | None) -> bytes | None:
        if mask is None:
            mask = self.is_client
        return self.generate_mask() if mask else None

    def message(
        self,
        data: Any,
        binary: bool,
        *,
        fin: bool = True,
        compress: bool | None = None,
        mask: bool | None = None,
        split: bool = False,
    ) -> Any:
        """Frame one data message, or one fragment of it when ``fin`` is False.

        With ``split``, a large unmasked frame comes back as a ``(header, payload)`` tuple, so
        the caller can write the payload without copying it behind the header first (a
        1 MiB echo made five 1 MiB copies; each fresh 1 MiB buffer is an mmap the kernel
        zeroes).
        """
        data = _byte_buffer(data)
        first = self.first_fragment
        opcode = (OP_BINARY if binary else OP_TEXT) if first else OP_CONTINUATION
        rsv1 = False
        deflate = self.deflate
        if deflate is not None:
            if first:
                # ws 8 (lib/sender.js): the threshold applies only when our side has no context
                # takeover; with it, even a small message compresses against earlier ones. It
                # is judged on the first fragment and then holds for the whole message (RSV1 is
                # set on the first frame only, RFC 7692 6).
                use = compress is not False
                if use and deflate.own_no_context_takeover:
                    use = len(data) >= deflate.threshold
                if use and compress is None and fin and len(data) >= SAMPLE_FROM:
                    # Random or already compressed bytes (images, archives, ciphertext) gain
                    # nothing from deflate and cost it the most time; RFC 7692 6 lets each
                    # message go uncompressed (RSV1 clear), and the peer's inflate context is
                    # left as it was. compress=True still compresses.
                    use = not _incompressible(data)
                self._compress_fragments = use
                rsv1 = use
            if self._compress_fragments:
                data = deflate.compress(data, fin)
        self.first_fragment = fin
        key = self._mask_for(mask)
        if len(data) >= SPLIT_SIZE:
            if key is not None:
                return self._masked_frame(data, opcode, fin, rsv1, key)
            if split:
                return frame_header(len(data), opcode, fin, rsv1, False), data
        return frame(data, opcode, fin=fin, rsv1=rsv1, mask=key)

    def _masked_frame(
        self, data: Any, opcode: int, fin: bool, rsv1: bool, key: bytes
    ) -> MaskedFrame:
        length = len(data)
        header = frame_header(length, opcode, fin, rsv1, True)
        start = len(header) + 4
        size = start + length
        out = self._spare
        self._spare = None
        if out is None or len(out) < size:
            out = MaskedFrame(size)
        elif len(out) > size:
            del out[size:]
        out[: start - 4] = header
        out[start - 4 : start] = key
        mask_into(data, key, out, start, length)
        return out

    def ping(self, data: Any = b"", mask: bool | None = None) -> bytes | bytearray:
        """Frame a ping (payload at most 125 bytes)."""
        return self._control(OP_PING, data, mask)

    def pong(self, data: Any = b"", mask: bool | None = None) -> bytes | bytearray:
        """Frame a pong (payload at most 125 bytes)."""
        return self._control(OP_PONG, data, mask)

    def close(self, code: int | None = None, reason: str | bytes = "") -> bytes | bytearray:
        """Frame a close with an optional code and reason."""
        return frame(close_payload(code, reason), OP_CLOSE, mask=self._mask_for(None))

    def _control(self, opcode: int, data: Any, mask: bool | None) -> bytes | bytearray:
        data = _byte_buffer(data)
        if len(data) > 125:
            raise WebSocketError(
                "The data size must not be greater than 125 bytes",
                "WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH",
                1002,
            )
        return frame(data, opcode, mask=self._mask_for(mask))


def _default_mask() -> bytes:
    return generate_mask()

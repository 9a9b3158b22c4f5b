"""The frame parser (the twin of ws' ``lib/receiver.js``), sans-I/O.

Bytes go in through :meth:`Receiver.feed`; complete messages and control frames come out through
the callbacks given to the constructor. Protocol violations raise :class:`WebSocketError` with
ws' ``WS_ERR_*`` code and the close code to send; once that happens the receiver ignores all
further input. Python's zlib is synchronous, so ws' ``INFLATING`` state does not exist here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .buffer_util import (
    NATIVE,
    NATIVE_SCAN,
    concat_unmasked,
    payload_buffer,
    scan_frames,
    unmask,
    unmasked,
)
from .constants import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
)
from .exceptions import WebSocketError
from .validation import Utf8Validator, is_valid_status_code

__all__ = [
    "Receiver",
    "GET_INFO",
    "GET_PAYLOAD_LENGTH_16",
    "GET_PAYLOAD_LENGTH_64",
    "GET_MASK",
    "GET_DATA",
    "DONE",
    "GET_DATA_IN_PLACE",
    "IN_PLACE_MIN",
]

GET_INFO = 0
GET_PAYLOAD_LENGTH_16 = 1
GET_PAYLOAD_LENGTH_64 = 2
GET_MASK = 3
GET_DATA = 4
# Terminal state: a close frame was received or a protocol error raised; input is ignored.
DONE = 5
# A large payload is read straight into its final buffer (Receiver.payload_buffer).
GET_DATA_IN_PLACE = 6

# Payloads from this size on are read in place when the front end asks for it (``on_in_place``):
# into one buffer of the payload's size, not as the socket's reads kept until the end of the
# frame and then joined (each read a new bytes object, then the joined copy: at 1 MiB about 2.3
# MiB allocated and freed per message, enough for glibc to give the heap's top back to the OS
# after each message and fault it in again).
IN_PLACE_MIN = 256 * 1024
IN_PLACE_READ = 256 * 1024

_from_bytes = int.from_bytes
# The native scanner's first window over a read, in bytes; it doubles with each call that was
# delivered whole (_scanned_frames). The window bounds the messages a pause holds (_held). It
# was 1 KiB while a pause threw the rest of the window away; since the rest is held, 16 KiB
# saves the calls that climbed to it: bench_hotpath at 100 messages per read, instructions per
# message, 32 B events 9,156 -> 8,947 and asyncio 13,882 -> 13,566; 1 KiB asyncio (paused
# every 12 messages, each resume began at 1 KiB again) 27,077 -> 23,673.
_SCAN_WINDOW = 16384
# A masked text frame received in pieces is unmasked piece by piece to be validated (fail-fast).
# The fallback keeps those unmasked pieces and joins them at the end of the frame: its unmasking
# is the slow part (1 MiB: 4.3 against 5.4 ms). The native path unmasks the frame again (one
# pass, at about the cost of a copy): keeping the pieces would save that but keep more
# payload-sized memory alive at once (720 against 480 page faults per 1 MiB message, as glibc
# returns it to the OS and faults it in again: 2.0-2.3 against 1.35-1.5 ms).
_KEEP_VALIDATED = not NATIVE


def _error(message: str, code: str, status_code: int) -> WebSocketError:
    return WebSocketError(message, code, status_code)


MessageCallback = Callable[[Any, bool], None]
ControlCallback = Callable[[bytes], None]
CloseCallback = Callable[[int, str], None]


def _ignore(*args: Any) -> None:
    return None


class Receiver:
    """Parses WebSocket frames from a byte stream.

    ``is_server`` enforces the masking direction (RFC 6455 5.1: a server must refuse unmasked
    frames, a client must refuse masked ones). ``max_payload`` (0 = unlimited) is checked against
    the frame header, before any payload is buffered. ``deflate`` is the negotiated
    :class:`~wsfast.permessage_deflate.PerMessageDeflate` or None.
    """

    __slots__ = (
        "is_server",
        "max_payload",
        "deflate",
        "skip_utf8_validation",
        "binary_type",
        "on_message",
        "on_ping",
        "on_pong",
        "on_close",
        "paused",
        "state",
        "_pending",
        "_pending_at",
        "_held",
        "_held_at",
        "_fin",
        "_rsv1",
        "_opcode",
        "_masked",
        "_mask",
        "_payload_length",
        "_payload_chunks",
        "_payload_needed",
        "_message_opcode",
        "_compressed",
        "_fragments",
        "_joined",
        "_fragment_count",
        "max_fragments",
        "_message_length",
        "_utf8",
        "_validated",
        "on_in_place",
        "_sink",
        "_sink_view",
        "_sink_filled",
        "_sink_ready",
    )

    def __init__(
        self,
        *,
        is_server: bool,
        max_payload: int = 0,
        deflate: Any = None,
        skip_utf8_validation: bool = False,
        binary_type: str = "bytes",
        max_fragments: int = 0,
        on_message: MessageCallback = _ignore,
        on_ping: ControlCallback = _ignore,
        on_pong: ControlCallback = _ignore,
        on_close: CloseCallback = _ignore,
    ) -> None:
        self.is_server = is_server
        self.max_payload = max_payload
        self.deflate = deflate
        self.skip_utf8_validation = skip_utf8_validation
        self.binary_type = binary_type
        #: Data frames allowed in one message, 0 for no limit. Memory is bounded by
        #: ``max_payload`` in bytes whatever the count; Autobahn 9.3/9.4 send 4 MiB as 65536
        #: fragments of 64 bytes, a legitimate message that a count limit would refuse.
        self.max_fragments = max_fragments
        self.on_message = on_message
        self.on_ping = on_ping
        self.on_pong = on_pong
        self.on_close = on_close
        #: Set by a listener (``WebSocket.pause``) to stop parsing after the current frame; the
        #: rest of the input stays buffered until :meth:`feed` is called again.
        self.paused = False
        self.state = GET_INFO
        # Bytes received and not parsed yet, from offset _pending_at on (_keep_rest).
        self._pending = b""
        self._pending_at = 0
        # Messages the native scanner parsed that a pause left undelivered (_scanned_frames):
        # they come first at the next feed, before the bytes in _pending.
        self._held: list[Any] | None = None
        self._held_at = 0
        self._fin = False
        self._rsv1 = False
        self._opcode = 0
        self._masked = False
        self._mask = b""
        self._payload_length = 0
        self._payload_chunks: list[Any] = []
        self._payload_needed = 0
        self._message_opcode = 0
        self._compressed = False
        self._fragments: list[Any] = []
        self._joined: bytearray | None = None
        self._fragment_count = 0
        self._message_length = 0
        self._utf8: Any = None
        self._validated = 0
        #: Set by a front end that can read into a buffer (an asyncio ``BufferedProtocol``,
        #: ``recv_into``): called when a payload of ``IN_PLACE_MIN`` bytes or more starts, after
        #: which :meth:`payload_buffer` gives the buffer to read into and
        #: :meth:`payload_written` takes the count. ``feed()`` still works meanwhile (it copies
        #: into the buffer). None: payloads are collected from ``feed()`` as they come.
        self.on_in_place: Callable[[], None] | None = None
        self._sink: Any = None
        self._sink_view: memoryview | None = None
        self._sink_filled = 0
        # The payload's length once its buffer is full but a pause holds it back, else 0.
        self._sink_ready = 0

    def stop(self) -> None:
        """Ignore all further input (a close frame was exchanged or the connection failed)."""
        self.state = DONE
        self._pending = b""
        self._pending_at = 0
        self._held = None
        self._sink = self._sink_view = None
        self._sink_ready = 0

    def detach(self) -> None:
        """Stop for good and drop the callbacks: the receiver no longer keeps its owner alive
        (the callbacks are bound methods; without this a closed connection sits in reference
        cycles until the next full collection)."""
        self.stop()
        self.on_message = self.on_ping = self.on_pong = _ignore
        self.on_close = _ignore
        self.on_in_place = None

    @property
    def buffered(self) -> int:
        """What was received and not delivered yet (non-zero while paused): the bytes not
        parsed, plus the payload lengths (characters for text) of the messages parsed but held
        back by a pause, or of a payload read in place and held back; at least 1 while any
        message is held, even an empty one, since the front ends resume parsing only when this
        is non-zero (an empty message held back stayed undelivered until more bytes came)."""
        held = self._held
        size = len(self._pending) - self._pending_at + self._sink_ready
        if held is not None:
            # Summed here, not kept up to date per message delivered (_deliver_held).
            size += sum(map(len, held[self._held_at :])) + 1
        return size

    @property
    def has_buffered(self) -> bool:
        """Whether :attr:`buffered` is non-zero, without summing the held messages: what the
        front ends ask before they resume parsing."""
        return self._held is not None or bool(self._pending) or bool(self._sink_ready)

    def feed(self, data: bytes) -> None:
        """Parse ``data``; calls the callbacks for every complete message or control frame.

        Raises :class:`WebSocketError` on a protocol violation; the receiver is then done.
        """
        state = self.state
        if state == DONE:
            return
        if self._held is not None:
            if not self.paused:
                try:
                    self._deliver_held()
                except WebSocketError:
                    self.stop()
                    raise
            if self._held is not None or self.paused or self.state == DONE:
                if self.state != DONE and data:
                    self._pending += data
                return
            state = self.state
        pos = 0
        if self._pending:
            pending, pos = self._pending, self._pending_at
            self._pending = b""
            self._pending_at = 0
            if data:
                data = pending[pos:] + data  # (bytes[0:] is the same object: no copy)
                pos = 0
            else:
                data = pending  # resumed after a pause: go on from the offset, no copy
        size = len(data)
        try:
            if state == GET_INFO and not self._message_opcode:
                if NATIVE_SCAN:
                    pos = self._scanned_frames(data, pos, size)
                else:
                    pos = self._fast_frames(data, pos, size)
                state = self.state
                if state == DONE:  # a callback stopped the receiver (terminate, close)
                    return
            while not self.paused:
                if state == GET_DATA:
                    needed = self._payload_needed
                    available = size - pos
                    if available < needed:
                        if (
                            needed >= IN_PLACE_MIN
                            and self.on_in_place is not None
                            and not self._payload_chunks
                        ):
                            self._start_in_place(memoryview(data)[pos:], needed)
                            return
                        if available:
                            # A view, not a slice, of a large piece: the join below is then
                            # the payload's only copy (data is immutable bytes).
                            chunk: Any = memoryview(data)[pos:] if available >= 4096 else data[pos:]
                            self._payload_needed = needed - available
                            if self._in_text_frame():
                                chunk = self._validate_partial(chunk)
                            self._payload_chunks.append(chunk)
                        return
                    chunks = self._payload_chunks
                    if chunks:
                        last = memoryview(data)[pos : pos + needed]
                        payload: Any
                        if not self._masked:
                            chunks.append(last)
                            payload = b"".join(chunks)
                        elif self._validated and _KEEP_VALIDATED:
                            # Text checked piece by piece: the pieces were unmasked for that
                            # already (_validate_partial); only the last one is left.
                            shift = self._validated & 3
                            chunks.append(unmasked(last, self._mask[shift:] + self._mask[:shift]))
                            payload = b"".join(chunks)
                        else:
                            # From the received pieces to the final bytes in one pass (native:
                            # no zero-filled buffer, no join, no copy after).
                            chunks.append(last)
                            payload = concat_unmasked(chunks, self._mask)
                        chunks.clear()
                    elif self._masked:
                        payload = unmasked(
                            memoryview(data)[pos : pos + needed]
                            if needed >= 4096
                            else data[pos : pos + needed],
                            self._mask,
                        )
                    else:
                        payload = data[pos : pos + needed]
                    pos += needed
                    state = self.state = GET_INFO
                    self._frame_done(payload)
                    if self.state == DONE:
                        return
                    continue
                if state == GET_INFO:
                    if size - pos < 2:
                        break
                    pos = self._get_info(data, pos)
                    state = self.state
                    continue
                if state == GET_PAYLOAD_LENGTH_16:
                    if size - pos < 2:
                        break
                    self._payload_length = _from_bytes(data[pos : pos + 2], "big")
                    pos += 2
                    self._check_length()
                    state = self.state
                    continue
                if state == GET_PAYLOAD_LENGTH_64:
                    if size - pos < 8:
                        break
                    length = _from_bytes(data[pos : pos + 8], "big")
                    pos += 8
                    if length >> 63:
                        # RFC 6455 5.2: the most significant bit must be 0.
                        raise _error(
                            "Unsupported WebSocket frame: payload length > 2^63 - 1",
                            "WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH",
                            1009,
                        )
                    self._payload_length = length
                    self._check_length()
                    state = self.state
                    continue
                if state == GET_MASK:
                    if size - pos < 4:
                        break
                    self._mask = data[pos : pos + 4]
                    pos += 4
                    state = self._start_data()
                    continue
                if state == GET_DATA_IN_PLACE:
                    # Bytes fed while the payload is read in place (a read that was under way
                    # when the front end switched, or a front end that feeds anyway): copied in.
                    view = self._sink_view
                    assert view is not None
                    filled = self._sink_filled
                    count = min(size - pos, len(view) - filled)
                    if count:
                        view[filled : filled + count] = memoryview(data)[pos : pos + count]
                        pos += count
                        self._in_place_written(count)
                    elif self._sink_ready:
                        self._end_in_place()
                    state = self.state
                    if state == GET_DATA_IN_PLACE:
                        break
                    if state == DONE:
                        return
                    continue
                break  # pragma: no cover - DONE is handled by the callers of the loop
        except WebSocketError:
            self.state = DONE
            self._pending = b""
            raise
        if pos < size and self.state != DONE:
            self._keep_rest(data, pos)

    def _keep_rest(self, data: bytes, pos: int) -> None:
        """Keep ``data[pos:]``, the bytes this feed() did not parse, for the next one.

        A pause keeps them by offset: the asyncio API's queue pauses every 12 messages, and each
        copy of the rest made a read of many messages cost O(n^2) bytes copied (1 KiB messages,
        100 per read: 280 KiB copied per read). The bytes of a partial frame are copied: they
        are joined to the next read anyway, and the read they came from can be freed.
        """
        if self.paused and pos:
            self._pending = data
            self._pending_at = pos
        else:
            self._pending = data[pos:]

    # -- payloads read in place -------------------------------------------------------------

    def payload_buffer(self) -> memoryview | None:
        """The part of the current payload still to read, to be written in place, or None when
        no payload is being read in place (the front end then goes back to :meth:`feed`).

        After writing ``n`` bytes at its start, call :meth:`payload_written` with ``n``.
        """
        view = self._sink_view
        if view is None or self.state != GET_DATA_IN_PLACE or self._pending:
            return None
        filled = self._sink_filled
        if filled == len(view):
            return None  # full, held back by a pause
        return view[filled : filled + IN_PLACE_READ]

    def payload_written(self, count: int) -> None:
        """``count`` bytes were written at the start of :meth:`payload_buffer`'s view. Completes
        the frame when it is full (callbacks run as for :meth:`feed`); raises
        :class:`WebSocketError` as :meth:`feed` does."""
        if self.state != GET_DATA_IN_PLACE:
            return
        try:
            self._in_place_written(count)
        except WebSocketError:
            self.stop()
            raise

    def _start_in_place(self, first: memoryview, length: int) -> None:
        sink = self._sink = payload_buffer(length)
        view = self._sink_view = memoryview(sink)
        self._sink_filled = 0
        self.state = GET_DATA_IN_PLACE
        count = len(first)
        if count:
            view[:count] = first
            self._in_place_written(count)
        on_in_place = self.on_in_place
        if on_in_place is not None and self.state == GET_DATA_IN_PLACE:
            on_in_place()

    def _in_place_written(self, count: int) -> None:
        view = self._sink_view
        assert view is not None
        start = self._sink_filled
        end = self._sink_filled = start + count
        if self._masked:
            # In place, while the piece the socket just wrote is in the cache; the key's
            # phase carries on from the piece before.
            shift = start & 3
            unmask(view[start:end], self._mask[shift:] + self._mask[:shift])
        if self._in_text_frame() and not self._compressed and not self.skip_utf8_validation:
            # Fail-fast, as for a frame fed in pieces (_validate_partial).
            self._validate_fragment(view[start:end], False)
            self._validated = end
        if end == len(view):
            if self.paused:
                self._sink_ready = end  # delivered by the feed() that follows resume()
                return
            self._end_in_place()

    def _in_text_frame(self) -> bool:
        """Whether the current frame carries text: a text frame or a continuation of one."""
        opcode = self._opcode
        return opcode == OP_TEXT or (opcode == OP_CONTINUATION and self._message_opcode == OP_TEXT)

    def _end_in_place(self) -> None:
        sink = self._sink
        self._sink = self._sink_view = None
        self._sink_ready = 0
        self.state = GET_INFO
        self._frame_done(sink.take())

    def _scanned_frames(self, data: bytes, pos: int, size: int) -> int:
        """``_fast_frames`` with the native scanner: it parses and unmasks the simple frames of
        ``data`` (and decodes the text ones) in windows of ``_SCAN_WINDOW`` bytes, doubling
        from one call to the next; they are delivered here.

        A callback may pause the receiver mid-batch: the messages of the window not delivered
        yet are then held (``_held``) and delivered first by the next :meth:`feed`. Before,
        they stayed raw bytes and were scanned again at each resume: the asyncio API's queue
        (16 messages, resumed at 8) threw away most of every window, 16,944 against 8,974
        instructions per echoed message at 100 messages per read. The small first window
        bounds what a pause holds as message objects.
        """
        if self.paused or self.binary_type != "bytes" or self.skip_utf8_validation:
            return pos
        window = _SCAN_WINDOW
        while True:
            stop = pos + window
            view: Any = data
            if stop < size:
                span = _frame_span(data, pos, size)
                if span > window:
                    stop = pos + span  # one frame larger than the window: scan it whole
                if stop < size:
                    view = memoryview(data)[:stop]
            items: list[Any] = []
            end = scan_frames(view, pos, self.is_server, self.max_payload, items)
            if not items:
                return pos
            on_message = self.on_message
            delivered = 0
            for item in items:
                delivered += 1
                on_message(item, type(item) is bytes)
                if self.paused or self.state == DONE:
                    if self.state == DONE:
                        return size
                    if delivered < len(items):
                        self._held = items
                        self._held_at = delivered
                    return end
            if stop >= size:
                return end
            pos = end
            window <<= 1

    def _deliver_held(self) -> None:
        """Deliver the messages a pause held back (_scanned_frames), until the next pause.

        The position is stored before each callback: a listener may resume the receiver and
        feed it again from inside (``pause()`` then ``resume()``), and that nested call goes on
        from the next message, not from where this loop started.
        """
        on_message = self.on_message
        while True:
            held = self._held
            if held is None:
                return
            at = self._held_at
            item = held[at]
            at += 1
            if at < len(held):
                self._held_at = at
            else:
                self._held = None
            on_message(item, type(item) is bytes)
            if self.paused or self.state == DONE:
                return

    def _fast_frames(self, data: bytes, pos: int, size: int) -> int:
        """Parse whole, unfragmented, uncompressed data frames of < 64 KiB in one pass.

        This is the common case (small messages, one or many per read) and skips the state
        machine's per-step calls; anything else returns to the general path at ``pos``, which
        re-parses that frame's header with every check.
        """
        masked = self.is_server
        mask_bit = 0x80 if masked else 0
        max_payload = self.max_payload
        on_message = self.on_message
        if self.binary_type != "bytes" or self.skip_utf8_validation:
            return pos
        while size - pos >= 2 and not self.paused:
            b0 = data[pos]
            b1 = data[pos + 1]
            if (b0 != 0x81 and b0 != 0x82) or (b1 & 0x80) != mask_bit:
                return pos
            length = b1 & 0x7F
            start = pos + 2
            if length == 126:
                if size - start < 2:
                    return pos
                length = (data[start] << 8) | data[start + 1]
                start += 2
            elif length == 127:
                return pos
            if max_payload and length > max_payload:
                return pos
            if masked:
                end = start + 4 + length
                if end > size:
                    return pos
                payload: Any = (
                    unmasked(
                        memoryview(data)[start + 4 : end]
                        if length >= 4096
                        else data[start + 4 : end],
                        data[start : start + 4],
                    )
                    if length
                    else b""
                )
            else:
                end = start + length
                if end > size:
                    return pos
                payload = data[start:end]
            pos = end
            if b0 == 0x81:
                try:
                    text = str(payload, "utf-8")
                except UnicodeDecodeError:
                    self.state = DONE
                    raise _error(
                        "Invalid WebSocket frame: invalid UTF-8 sequence",
                        "WS_ERR_INVALID_UTF8",
                        1007,
                    ) from None
                on_message(text, False)
            else:
                on_message(payload if type(payload) is bytes else bytes(payload), True)
            if self.state == DONE:
                return size
        return pos

    # -- header ------------------------------------------------------------------------------

    def _get_info(self, data: bytes, pos: int) -> int:
        b0 = data[pos]
        b1 = data[pos + 1]
        if b0 & 0x30:
            raise _error(
                "Invalid WebSocket frame: RSV2 and RSV3 must be clear",
                "WS_ERR_UNEXPECTED_RSV_2_3",
                1002,
            )
        rsv1 = bool(b0 & 0x40)
        fin = bool(b0 & 0x80)
        opcode = b0 & 0x0F
        compressed = False
        if rsv1:
            # RFC 7692 6: RSV1 marks the first frame of a compressed data message, and is
            # meaningless on control and continuation frames.
            if self.deflate is None or opcode == OP_CONTINUATION or opcode > 7:
                raise _error(
                    "Invalid WebSocket frame: RSV1 must be clear",
                    "WS_ERR_UNEXPECTED_RSV_1",
                    1002,
                )
            compressed = True
        if opcode == OP_CONTINUATION:
            if not self._message_opcode:
                raise _error(
                    "Invalid WebSocket frame: invalid opcode 0",
                    "WS_ERR_INVALID_OPCODE",
                    1002,
                )
        elif opcode == OP_TEXT or opcode == OP_BINARY:
            if self._message_opcode:
                raise _error(
                    f"Invalid WebSocket frame: invalid opcode {opcode}",
                    "WS_ERR_INVALID_OPCODE",
                    1002,
                )
            self._compressed = compressed
        elif opcode == OP_CLOSE or opcode == OP_PING or opcode == OP_PONG:
            if not fin:
                raise _error(
                    "Invalid WebSocket frame: FIN must be set",
                    "WS_ERR_EXPECTED_FIN",
                    1002,
                )
            # As ws: a 1-byte close payload is refused from the header, not after waiting for
            # the byte (RFC 6455 5.5.1: a close body starts with a 2-byte code).
            if (b1 & 0x7F) > 125 or (opcode == OP_CLOSE and (b1 & 0x7F) == 1):
                raise _error(
                    f"Invalid WebSocket frame: invalid payload length {b1 & 0x7F}",
                    "WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH",
                    1002,
                )
        else:
            raise _error(
                f"Invalid WebSocket frame: invalid opcode {opcode}",
                "WS_ERR_INVALID_OPCODE",
                1002,
            )
        masked = bool(b1 & 0x80)
        if self.is_server:
            if not masked:
                raise _error(
                    "Invalid WebSocket frame: MASK must be set",
                    "WS_ERR_EXPECTED_MASK",
                    1002,
                )
        elif masked:
            raise _error(
                "Invalid WebSocket frame: MASK must be clear",
                "WS_ERR_UNEXPECTED_MASK",
                1002,
            )
        self._fin = fin
        self._rsv1 = rsv1
        self._opcode = opcode
        self._masked = masked
        length = b1 & 0x7F
        if length == 126:
            self.state = GET_PAYLOAD_LENGTH_16
        elif length == 127:
            self.state = GET_PAYLOAD_LENGTH_64
        else:
            self._payload_length = length
            self._check_length()
        return pos + 2

    def _check_length(self) -> None:
        length = self._payload_length
        if self._opcode < 8:
            total = self._message_length + length
            max_payload = self.max_payload
            # Refuse from the header: the payload is never buffered (ws' maxPayload check).
            if max_payload and total > max_payload:
                raise _error(
                    "Max payload size exceeded",
                    "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH",
                    1009,
                )
            self._message_length = total
        if self._masked:
            self.state = GET_MASK
        else:
            self._start_data()

    def _start_data(self) -> int:
        length = self._payload_length
        if length:
            self._payload_needed = length
            self.state = GET_DATA
            return GET_DATA
        self.state = GET_INFO
        self._frame_done(b"")
        return self.state

    # -- payload -----------------------------------------------------------------------------

    def _frame_done(self, payload: Any) -> None:
        # ``payload`` is unmasked already (feed).
        opcode = self._opcode
        if opcode > 7:
            self._control_frame(opcode, payload)
            return
        if opcode:
            self._message_opcode = opcode
        if self._compressed:
            payload = self.deflate.decompress(payload, self._fin)
        validated = self._validated
        if validated:
            self._validated = 0
            if not self._fin:
                self._validate_fragment(memoryview(payload)[validated:], False)
        elif self._message_opcode == OP_TEXT and not self._fin:
            self._validate_fragment(payload, False)
        max_fragments = self.max_fragments
        if max_fragments:
            count = self._fragment_count = self._fragment_count + 1
            if count > max_fragments:
                # ws 8.23: 1008 (policy), not 1009: the message is not too big, too split.
                raise _error(
                    "Too many message fragments",
                    "WS_ERR_TOO_MANY_BUFFERED_PARTS",
                    1008,
                )
        if self._fin:
            self._fragment_count = 0
            joined = self._joined
            if joined is not None:
                self._joined = None
                if self._message_opcode == OP_BINARY and self.binary_type == "bytes":
                    # The message's bytes in one copy, not ``+=`` and then ``bytes(joined)``.
                    self._end_message(b"".join((joined, payload)), [])
                    return
                if payload:
                    joined += payload
                self._end_message(joined, [])
                return
            fragments = self._fragments
            if fragments:
                if payload:
                    fragments.append(bytes(payload))
                self._fragments = []
            self._end_message(payload, fragments)
        elif payload:
            if self.binary_type == "fragments" and self._message_opcode == OP_BINARY:
                self._fragments.append(bytes(payload))
                return
            # One growing buffer, not a list of pieces: a message of 1-byte fragments must
            # cost about its size in memory (what max_payload bounds), not ~40x that in
            # per-object overhead.
            if self._joined is None:
                self._joined = bytearray(payload)
            else:
                self._joined += payload

    def _validate_partial(self, chunk: Any) -> Any:
        # Autobahn 6.4.3/6.4.4 send one invalid text frame in pieces: refuse it on the piece that
        # breaks UTF-8, before the rest of the frame arrives (fail-fast, RFC 6455 8.1).
        # Returns the piece to keep: with _KEEP_VALIDATED, the unmasked copy made to check it.
        if self._compressed or self.skip_utf8_validation:
            return chunk
        plain = chunk
        if self._masked:
            shift = self._validated & 3
            plain = unmasked(chunk, self._mask[shift:] + self._mask[:shift])
        self._validated += len(plain)
        self._validate_fragment(plain, False)
        return plain if _KEEP_VALIDATED else chunk

    def _validate_fragment(self, payload: Any, final: bool) -> None:
        if self.skip_utf8_validation:
            return
        validator = self._utf8
        if validator is None:
            validator = self._utf8 = Utf8Validator()
        if not validator.feed(payload, final):
            self._utf8 = None
            raise _error(
                "Invalid WebSocket frame: invalid UTF-8 sequence",
                "WS_ERR_INVALID_UTF8",
                1007,
            )

    def _end_message(self, payload: Any, fragments: list[Any]) -> None:
        opcode = self._message_opcode
        self._message_opcode = 0
        self._message_length = 0
        self._compressed = False
        if opcode == OP_TEXT:
            # The fragments seen so far were validated fail-fast; the decode below validates the
            # whole message once more while building the str, which it has to do anyway.
            self._utf8 = None
            data = b"".join(fragments) if fragments else payload
            try:
                text = str(data, "utf-8", "replace" if self.skip_utf8_validation else "strict")
            except UnicodeDecodeError:
                raise _error(
                    "Invalid WebSocket frame: invalid UTF-8 sequence",
                    "WS_ERR_INVALID_UTF8",
                    1007,
                ) from None
            self.on_message(text, False)
            return
        binary_type = self.binary_type
        if binary_type == "fragments":
            message: Any = fragments if fragments else [bytes(payload)]
        elif fragments:
            message = b"".join(fragments)
            if binary_type == "bytearray":
                message = bytearray(message)
        elif binary_type == "bytearray":
            message = payload if type(payload) is bytearray else bytearray(payload)
        else:
            message = payload if type(payload) is bytes else bytes(payload)
        self.on_message(message, True)

    def _control_frame(self, opcode: int, payload: Any) -> None:
        if opcode == OP_CLOSE:
            self.state = DONE
            self._pending = b""
            self._pending_at = 0
            length = len(payload)
            if length == 0:
                self.on_close(1005, "")
                return
            # A length of 1 was refused from the header (_get_info).
            code = (payload[0] << 8) | payload[1]
            if not is_valid_status_code(code):
                raise _error(
                    f"Invalid WebSocket frame: invalid status code {code}",
                    "WS_ERR_INVALID_CLOSE_CODE",
                    1002,
                )
            try:
                reason = str(payload[2:], "utf-8")
            except UnicodeDecodeError:
                raise _error(
                    "Invalid WebSocket frame: invalid UTF-8 sequence",
                    "WS_ERR_INVALID_UTF8",
                    1007,
                ) from None
            self.on_close(code, reason)
            return
        data = payload if type(payload) is bytes else bytes(payload)
        if opcode == OP_PING:
            self.on_ping(data)
        else:
            self.on_pong(data)


def _frame_span(data: bytes, pos: int, size: int) -> int:
    """The whole length of the frame at ``pos`` as its header gives it (7- or 16-bit lengths;
    0 when the header is incomplete or has a 64-bit length, which the scanner leaves alone)."""
    if size - pos < 2:
        return 0
    b1 = data[pos + 1]
    length = b1 & 0x7F
    head = 2
    if length == 126:
        if size - pos < 4:
            return 0
        length = (data[pos + 2] << 8) | data[pos + 3]
        head = 4
    elif length == 127:
        return 0
    return head + length + (4 if b1 & 0x80 else 0)

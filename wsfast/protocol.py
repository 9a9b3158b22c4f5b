"""The WebSocket connection as a state machine, sans-I/O (RFC 6455 sections 5 to 7).

:class:`Protocol` wraps the :class:`~wsfast.receiver.Receiver`, the :class:`~wsfast.sender.Sender`
and the negotiated permessage-deflate, and owns what a connection decides: its :class:`State`,
the closing handshake, automatic pongs and their cap, and failing the connection on a protocol
error. Bytes come in through :meth:`Protocol.receive_data` and :meth:`Protocol.receive_eof`;
bytes go out through the ``write`` sink (or :meth:`Protocol.data_to_send` without one); messages
come out through direct callbacks, so the hot path allocates nothing of its own.

What the transport must do besides writing is data, read by the adapter after each call:
``eof_due`` (half-close the TCP connection now), ``abort_due`` (drop it now), and ``timer``
(arm the close timer for that many seconds, then call :meth:`Protocol.expire`). The adapter owns
the socket and the clock; this module imports neither.

An adapter that queues messages for the application (``recv()``) sets ``backlog``: a protocol
error found while the application still has messages to take is then *held* (``held``): the
receiver stops at the invalid frame, the connection stays OPEN so that the application can
answer what arrived before it, and the adapter calls :meth:`Protocol.release` when the
application asks for the next message; the timer (``HELD_ERROR_TIMEOUT``) bounds a stuck
application. Nothing after the invalid frame is delivered either way.

Keepalive (``options.ping_interval``, ``options.ping_timeout``) needs the adapter's ``clock``
(seconds, monotonic): ``keepalive_wake`` says when to call :meth:`Protocol.tick`, which sends
the pings and drops a connection whose pong is late; ``latency`` is the last round trip.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from .buffer_util import unmasked
from .constants import HELD_ERROR_TIMEOUT
from .exceptions import WebSocketError
from .options import ConnectionOptions
from .permessage_deflate import PerMessageDeflate
from .receiver import Receiver
from .sender import (
    MASK_INLINE,
    SPLIT_SIZE,
    PreparedMessage,
    Sender,
    close_payload,
    pack_16,
    pack_64,
)

__all__ = ["State", "Protocol", "InvalidState"]


class State(enum.IntEnum):
    """ws' ``readyState`` values: CONNECTING, OPEN, CLOSING, CLOSED (0 to 3)."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


CONNECTING = State.CONNECTING
OPEN = State.OPEN
CLOSING = State.CLOSING
CLOSED = State.CLOSED


class InvalidState(WebSocketError):
    """Data was to be sent on a connection that is not OPEN."""

    def __init__(self, state: State) -> None:
        super().__init__(
            f"WebSocket is not open: readyState {int(state)} ({state.name})",
            "WS_ERR_INVALID_STATE",
            1006,
        )
        self.state = state


def _ignore(*args: Any) -> None:
    return None


class Protocol:
    """One WebSocket connection after its opening handshake, on either side.

    ``write(data)`` receives every byte string to send, in order; without it they collect for
    :meth:`data_to_send`. ``on_message(data, is_binary)``, ``on_ping(data)`` and
    ``on_pong(data)`` are called for each message and control frame as it is parsed;
    ``on_close_frame(code, reason)`` when the peer's close frame arrives (after this side's
    answer is written); ``on_error(exc)`` once, when the peer broke the protocol (after this
    side's close frame is written).

    Closing follows RFC 6455 section 7: a close frame is sent at most once and nothing after
    it; the peer's close is echoed; once both are exchanged the server half-closes TCP first
    (``eof_due``) and the client waits for it, each with ``options.close_timeout`` as the bound.
    """

    __slots__ = (
        "is_server",
        "options",
        "state",
        "receiver",
        "sender",
        "deflate",
        "write",
        "on_message",
        "on_ping",
        "on_pong",
        "on_close_frame",
        "on_error",
        "close_sent",
        "close_received",
        "close_code",
        "close_reason",
        "error",
        "eof_received",
        "eof_due",
        "abort_due",
        "aborted",
        "timer",
        "pending",
        "pending_auto_pongs",
        "backlog",
        "held",
        "clock",
        "keepalive_wake",
        "latency",
        "_ping_payload",
        "_ping_sent",
        "_pong_deadline",
        "_next_ping",
        "_pings",
        "_out",
    )

    def __init__(
        self,
        *,
        is_server: bool,
        options: ConnectionOptions,
        deflate: PerMessageDeflate | None = None,
        write: Callable[[Any], Any] | None = None,
        on_message: Callable[[Any, bool], Any] = _ignore,
        on_ping: Callable[[bytes], Any] = _ignore,
        on_pong: Callable[[bytes], Any] = _ignore,
        on_close_frame: Callable[[int, str], Any] = _ignore,
        on_error: Callable[[WebSocketError], Any] = _ignore,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.is_server = is_server
        self.options = options
        self.state = OPEN
        self.deflate = deflate
        # The buffer exists only without a sink: an adapter's connections do not pay for it.
        self._out: list[Any] | None = None
        if write is None:
            self._out = []
            write = self._out.append
        self.write: Callable[[Any], Any] = write
        self.on_message = on_message
        self.on_ping = on_ping
        self.on_pong = on_pong
        self.on_close_frame = on_close_frame
        self.on_error = on_error
        self.receiver = Receiver(
            is_server=is_server,
            max_payload=options.max_payload,
            max_fragments=options.max_fragments,
            deflate=deflate,
            skip_utf8_validation=options.skip_utf8_validation,
            binary_type=options.binary_type,
            on_message=on_message,
            on_ping=self._on_ping,
            on_pong=self._on_pong,
            on_close=self._on_close,
        )
        self.sender = Sender(
            is_client=not is_server, deflate=deflate, generate_mask=options.generate_mask
        )
        #: Whether this side's close frame was written / the peer's was received.
        self.close_sent = False
        self.close_received = False
        #: The code and reason of the peer's close frame (1005 when it had none), or the
        #: close code of the protocol error that failed the connection; None until then.
        self.close_code: int | None = None
        self.close_reason = ""
        #: The protocol error that failed the connection, if one did.
        self.error: WebSocketError | None = None
        self.eof_received = False
        #: The adapter must half-close the TCP connection (then clear this).
        self.eof_due = False
        #: The adapter must drop the TCP connection at once (then clear this).
        self.abort_due = False
        #: The connection is being dropped without a closing handshake (terminate, expire).
        self.aborted = False
        #: Seconds until :meth:`expire` is due; the adapter arms its timer and clears this.
        self.timer: float | None = None
        #: True when any of the three above was set: one check on the hot path.
        self.pending = False
        #: Automatic pongs written since the transport last reported its buffer empty.
        self.pending_auto_pongs = 0
        #: Set by an adapter that queues messages: whether the application still has messages
        #: to take (queued, or taken and not yet answered). A protocol error found while it
        #: says so is held instead of failing the connection at once (see :meth:`release`).
        self.backlog: Callable[[], bool] | None = None
        #: The protocol error being held; the adapter stops reading while it is set.
        self.held: WebSocketError | None = None
        #: Keepalive: seconds until :meth:`tick` is due (the adapter arms its timer and clears
        #: this); the last ping-pong round trip in seconds (0.0 before the first).
        self.clock = clock
        self.keepalive_wake: float | None = None
        self.latency = 0.0
        self._ping_payload: bytes | None = None
        self._ping_sent = 0.0
        self._pong_deadline: float | None = None
        self._next_ping = 0.0
        self._pings = 0
        interval = options.ping_interval
        if interval is not None:
            if clock is None:
                raise ValueError("keepalive (ping_interval) needs a clock")
            self._next_ping = clock() + interval
            self.keepalive_wake = interval
            self.pending = True

    # -- bytes in --------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Parse ``data``: messages and control frames reach the callbacks as they complete.

        A protocol error fails the connection: the close frame with the error's code is
        written, ``eof_due`` is set and ``on_error`` is called; later input is ignored. While
        ``backlog()`` says the application has messages to take, the error is held instead
        (``held`` set, the timer armed; see :meth:`release`).
        """
        try:
            self.receiver.feed(data)
        except WebSocketError as exc:
            self._received_error(exc)

    def payload_buffer(self) -> memoryview | None:
        """Where to read the rest of a large payload in place, or None (see
        :meth:`Receiver.payload_buffer`; the receiver's ``on_in_place`` says when it starts)."""
        return self.receiver.payload_buffer()

    def payload_written(self, count: int) -> None:
        """``count`` bytes were read into :meth:`payload_buffer`'s view: :meth:`receive_data`
        for bytes read in place, with the same callbacks and the same handling of errors."""
        try:
            self.receiver.payload_written(count)
        except WebSocketError as exc:
            self._received_error(exc)

    def _received_error(self, exc: WebSocketError) -> None:
        backlog = self.backlog
        if backlog is not None and self.state is OPEN and backlog():
            self.held = exc
            self.receiver.stop()  # nothing after the invalid frame is parsed
            self.timer = HELD_ERROR_TIMEOUT
            self.pending = True
        else:
            self.fail(exc)

    def receive_eof(self) -> None:
        """The peer half-closed TCP: nothing more will arrive (ws' ``socketOnEnd``)."""
        self.eof_received = True
        self.receiver.stop()
        if self.state is OPEN and self.held is None:
            # (With an error held the connection stays OPEN for the application's answers;
            # the peer can still read them.)
            self.state = CLOSING

    def release(self) -> None:
        """Fail the connection with the held protocol error, if one is held.

        The adapter calls this when the application asks for a message beyond those that
        arrived before the error; :meth:`close` and :meth:`expire` call it too.
        """
        exc = self.held
        if exc is not None:
            self.held = None
            self.fail(exc)

    def connection_lost(self) -> None:
        """The transport is gone: the connection is CLOSED (code 1006 unless one was set)."""
        if self.state is CLOSED:
            return
        self.state = CLOSED
        self.receiver.stop()
        if self.close_code is None:
            self.close_code = 1006
        held = self.held
        if held is not None:
            # Gone before the application released it: no close frame was sent (1006), the
            # error is still what broke the connection.
            self.held = None
            self.error = held
            self.on_error(held)
        if self.deflate is not None:
            self.deflate.cleanup()

    def detach(self) -> None:
        """Drop every callback once the adapter is done with the connection (after
        :meth:`connection_lost`): the callbacks are the adapter's bound methods, so without
        this a closed connection and its adapter keep each other alive until the cycle
        collector runs, with their transport, buffers and zlib contexts. The state (close
        code, reason, error) stays readable."""
        self.receiver.detach()
        self.write = _ignore
        self.on_message = self.on_ping = self.on_pong = _ignore
        self.on_close_frame = _ignore
        self.on_error = _ignore
        self.backlog = None
        self.clock = None

    # -- bytes out -------------------------------------------------------------------------------

    def data_to_send(self) -> list[Any]:
        """What to write, in order, when no ``write`` sink was given; empties the buffer."""
        out = self._out
        if out is None:
            return []
        self._out = []
        self.write = self._out.append
        return out

    def send(
        self,
        data: Any,
        binary: bool | None = None,
        fin: bool = True,
        compress: bool | None = None,
        mask: bool | None = None,
    ) -> None:
        """Frame a data message (or a fragment with ``fin=False``) and write it.

        A ``str`` is text and anything else binary unless ``binary`` says otherwise. Raises
        :class:`InvalidState` unless the connection is OPEN.
        """
        if self.state is not OPEN:
            raise InvalidState(self.state)
        sender = self.sender
        if sender.plain and fin and mask is None and sender.first_fragment:
            # Server side, no compression: a whole message is framed here directly (RFC 6455
            # 5.2: FIN + opcode, then the length), without the general path's calls, up to the
            # size where the payload is written apart from its header (bench_hotpath, 1 KiB
            # at 100 per read, instructions per message: events 17,895 -> 11,926, asyncio
            # 22,014 -> 15,586).
            kind = type(data)
            if kind is str or kind is bytes:
                payload: Any = data.encode("utf-8") if kind is str else data
                length = len(payload)
                if length < 126:
                    text = kind is str if binary is None else not binary
                    self.write(bytes((0x81 if text else 0x82, length)) + payload)
                    return
                if length < SPLIT_SIZE:
                    text = kind is str if binary is None else not binary
                    b0 = 0x81 if text else 0x82
                    if length < 65536:
                        self.write(pack_16(b0, 126, length) + payload)
                    else:
                        self.write(pack_64(b0, 127, length) + payload)
                    return
        elif sender.masking and fin and mask is None and sender.first_fragment:
            # Client side, no compression: the same for a small masked frame (header, key,
            # masked payload), up to the size where masking into a preallocated buffer wins.
            kind = type(data)
            if kind is str or kind is bytes:
                payload = data.encode("utf-8") if kind is str else data
                length = len(payload)
                if length < MASK_INLINE:
                    text = kind is str if binary is None else not binary
                    b0 = 0x81 if text else 0x82
                    key = sender.generate_mask()
                    header = (
                        bytes((b0, 0x80 | length)) if length < 126 else pack_16(b0, 254, length)
                    )
                    self.write(header + key + unmasked(payload, key))
                    return
        if not isinstance(data, (str, bytes, bytearray, memoryview)):
            # Any buffer is sent as its bytes (ws sends any ArrayBuffer view; Sender's
            # _byte_buffer takes array('H') and the like), with ``binary`` given or not: this
            # check ran only with ``binary`` given and refused every buffer but these three.
            try:
                memoryview(data)
            except TypeError:
                raise TypeError(f"cannot send {type(data).__name__}") from None
        if binary is None:
            binary = not isinstance(data, str)
        out = sender.message(data, binary, fin=fin, compress=compress, mask=mask, split=True)
        if type(out) is tuple:
            self.write(out[0])
            self.write(out[1])
        else:
            self.write(out)

    def send_prepared(self, message: PreparedMessage) -> bool:
        """Write a message framed once for many receivers (publish, broadcast).

        Returns False, writing nothing, when the connection is not OPEN or a fragmented
        message (``send(..., fin=False)``) is unfinished: a data frame must not land between
        its fragments (RFC 6455 5.4). With permessage-deflate and no context takeover on our
        side the shared compressed frame is written when the message reaches the threshold
        (ws' rule, as in :meth:`Sender.message`); with context takeover the message goes
        uncompressed, which RFC 7692 6 allows per message (RSV1 clear) and which leaves the
        peer's inflate context untouched: compressing it for this receiver alone would cost
        one deflate per receiver, what a broadcast exists to avoid. A client connection
        masks, so it frames the message itself.
        """
        if self.state is not OPEN:
            return False
        sender = self.sender
        if not sender.first_fragment:
            return False
        if sender.plain:
            self.write(message.frame())
            return True
        if sender.is_client:
            self.send(message.payload, message.binary)
            return True
        deflate = self.deflate
        assert deflate is not None  # not plain, not a client
        key = deflate.message_key
        if key is not None and len(message.payload) >= deflate.threshold:
            self.write(message.deflated(key))
        else:
            self.write(message.frame())
        return True

    def ping(self, data: Any = b"", mask: bool | None = None) -> None:
        """Write a ping (payload at most 125 bytes); InvalidState unless OPEN."""
        if self.state is not OPEN:
            raise InvalidState(self.state)
        self.write(self.sender.ping(data, mask))

    def pong(self, data: Any = b"", mask: bool | None = None) -> None:
        """Write a pong (payload at most 125 bytes); InvalidState unless OPEN."""
        if self.state is not OPEN:
            raise InvalidState(self.state)
        self.write(self.sender.pong(data, mask))

    # -- closing ---------------------------------------------------------------------------------

    def close(self, code: int | None = None, reason: str | bytes = "") -> None:
        """Start the closing handshake (ws' ``close``), or finish it when both frames are out.

        ``code`` must be a valid close code and ``reason`` at most 123 bytes of UTF-8 (checked
        before anything changes). While CLOSING it only repeats the end of a finished exchange
        (ws calls ``socket.end()`` again); otherwise, and once CLOSED, it does nothing.
        """
        state = self.state
        if state is OPEN:
            # The peer's close moves OPEN to CLOSING at once, so none was received yet.
            close_payload(code, reason)  # raises on a bad code or reason
            if self.held is not None:
                # The peer broke the protocol: its error decides the close code, as without
                # the hold.
                self.release()
                return
            self.state = CLOSING
            self._send_close(code, reason)
        elif state is CLOSING and self.close_sent and self.close_received:
            self._end()

    def fail(self, exc: WebSocketError) -> None:
        """Fail the connection (RFC 6455 7.1.7): close frame with the error's code, then EOF."""
        if self.error is not None or self.aborted or self.state is CLOSED:
            # Failed already, or the connection is being dropped (terminate, expire): there is
            # no close frame left to send and nothing to report.
            return
        self.error = exc
        self.receiver.stop()
        if not self.close_received:  # the peer's close, already answered, says how it ended
            self.close_code = exc.status_code
        if self.state is OPEN:
            self.state = CLOSING
        self._send_close(exc.status_code, "")
        self._half_close()
        self.on_error(exc)

    def terminate(self) -> None:
        """Drop the connection at once, without a closing handshake (ws' ``terminate``)."""
        if self.state is CLOSED:
            return
        self.state = CLOSING
        self.receiver.stop()
        self.aborted = self.abort_due = self.pending = True

    def expire(self) -> None:
        """The timer armed from ``timer`` ran out: the peer did not finish closing; drop it.

        With an error held, the application did not ask for its next message in time: the
        error is released (the connection fails as it would have at once)."""
        if self.held is not None and not self.aborted:
            self.release()
            return
        if self.state is not CLOSED:
            self.receiver.stop()  # the transport is being dropped: nothing more is parsed
            self.aborted = self.abort_due = self.pending = True

    def tick(self) -> None:
        """The keepalive timer armed from ``keepalive_wake`` ran out.

        Sends a ping when one is due (a 4-byte counter as payload) and drops the connection
        (1006, ``error`` set, ``on_error`` called) when the pong of the last one did not come
        within ``ping_timeout``. Then sets ``keepalive_wake`` again while the connection is
        OPEN. Nothing happens while an error is held (reading has stopped), and a missing
        pong does not count while the application keeps the receiver paused.
        """
        options = self.options
        interval = options.ping_interval
        clock = self.clock
        if self.state is not OPEN or interval is None or clock is None or self.held is not None:
            return
        now = clock()
        deadline = self._pong_deadline
        timeout = options.ping_timeout
        if deadline is not None and now >= deadline:
            if not self.receiver.paused or timeout is None:
                self._keepalive_expired()
                return
            # The application stopped the parsing (its queue is full, or pause()): the pong
            # may be waiting unread behind the messages it has not taken, which is no sign of
            # a dead peer. Check again one timeout later (a peer that is really gone is found
            # once the application reads again).
            self._pong_deadline = deadline = now + timeout
        if now >= self._next_ping and (deadline is None or timeout is None):
            # Without a timeout a lost pong does not stop the pings (each replaces the last).
            payload = self._pings.to_bytes(4, "big")
            self._pings = (self._pings + 1) & 0xFFFFFFFF
            self.write(self.sender.ping(payload))
            self._ping_payload = payload
            self._ping_sent = now
            self._next_ping = now + interval
            if timeout is not None:
                self._pong_deadline = deadline = now + timeout
        wake = self._next_ping
        if deadline is not None and (wake <= now or deadline < wake):
            # No ping goes out while a pong is awaited: once the next one is overdue only the
            # deadline matters (waking for the overdue ping re-armed a 0 s timer in a loop
            # when ping_timeout > ping_interval).
            wake = deadline
        self.keepalive_wake = max(0.0, wake - now)
        self.pending = True

    def _keepalive_expired(self) -> None:
        timeout = self.options.ping_timeout
        exc = WebSocketError(
            f"keepalive ping timeout: no pong within {timeout:g} s, the connection was dropped",
            "WS_ERR_KEEPALIVE_TIMEOUT",
            1006,
        )
        self.error = exc
        self.close_reason = "keepalive ping timeout"
        self.terminate()
        self.on_error(exc)

    def auto_pongs_flushed(self) -> None:
        """The transport reported its write buffer empty: every automatic pong went out."""
        self.pending_auto_pongs = 0

    def _send_close(self, code: int | None, reason: str | bytes) -> None:
        if self.close_sent:
            return
        self.close_sent = True
        self.write(self.sender.close(code, reason))
        self._arm()

    def _arm(self) -> None:
        self.timer = self.options.close_timeout
        self.pending = True

    def _half_close(self) -> None:
        self.eof_due = self.pending = True
        self._arm()

    def _end(self) -> None:
        # Both close frames are out (RFC 6455 7.1.1): the server closes TCP first; the client
        # waits for that (its timer from sending the close frame still runs).
        self.receiver.stop()
        if self.is_server:
            self._half_close()

    # -- receiver callbacks ----------------------------------------------------------------------

    def _on_ping(self, data: bytes) -> None:
        options = self.options
        if options.auto_pong and self.state is OPEN:
            cap = options.max_pending_auto_pongs
            if cap and self.pending_auto_pongs >= cap:
                # ws 8.23: a peer that sends pings but does not read the pongs is dropped.
                # The ping is still reported: ws' receiverOnPing emits 'ping' after
                # terminate() as after a pong.
                self.terminate()
            else:
                self.pending_auto_pongs += 1
                self.write(self.sender.pong(data))
        self.on_ping(data)

    def _on_pong(self, data: bytes) -> None:
        if data == self._ping_payload:  # the answer to the last keepalive ping
            self._ping_payload = None
            self._pong_deadline = None
            clock = self.clock
            if clock is not None:
                self.latency = clock() - self._ping_sent
        self.on_pong(data)

    def _on_close(self, code: int, reason: str) -> None:
        self.close_received = True
        self.close_code = code
        self.close_reason = reason
        if self.state is OPEN:
            self.state = CLOSING
            # Echo the code and reason, as ws (RFC 6455 5.5.1); a close without a code is
            # answered without one.
            if code == 1005:
                self._send_close(None, "")
            else:
                self._send_close(code, reason)
        self._end()
        self.on_close_frame(code, reason)

"""One WebSocket connection over a blocking socket: the threaded adapter of
:class:`~wsfast.protocol.Protocol`.

Threading model: a reader thread per connection reads the socket, feeds the protocol and queues
the messages; the application's threads call :meth:`Connection.recv`, :meth:`Connection.send`
and :meth:`Connection.close` (any of them, from any thread). One lock guards the protocol and the
message queue (a Condition on it wakes ``recv()``); a second lock serialises writes to the
socket, taken outside the first, so that a writer blocked on a peer that does not read never
stops the reader: bytes the reader produces (pongs, the echo of a close) are queued and written
by whichever thread holds the write lock. The protocol's close timer is a ``threading.Timer``.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..exceptions import ConnectionClosed, WebSocketError
from ..log import CLIENT_LOGGER, SERVER_LOGGER, Logger, TracingProtocol, resolve_logger
from ..options import ConnectionOptions
from ..permessage_deflate import PerMessageDeflate
from ..protocol import CLOSED, OPEN, Protocol, State
from ..receiver import DONE
from ..sender import MaskedFrame
from .transport import Stream

__all__ = ["Connection"]


# Chunks up to this size in total are joined into one write (asyncio adapter's rule).
_JOIN_LIMIT = 65536


class Connection:
    """A WebSocket connection after its opening handshake (client or server side).

    Made by :func:`wsfast.sync.connect` and by :func:`wsfast.sync.serve` for its handler; not
    instantiated directly. ``send``, ``ping``, ``pong``, ``close`` and ``terminate`` may be
    called from any thread; ``recv`` and iteration too (each message goes to one caller).
    """

    def __init__(
        self,
        stream: Stream,
        *,
        is_server: bool,
        options: ConnectionOptions,
        protocol: str = "",
        extensions: dict[str, Any] | None = None,
        deflate: PerMessageDeflate | None = None,
    ) -> None:
        self._stream = stream
        self.options = options
        """The validated options of this connection."""
        self.protocol = protocol
        """The negotiated subprotocol, or ``""``."""
        self.extension_params = dict(extensions or {})
        """The negotiated parameters of each extension."""
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._write_lock = threading.Lock()
        self._out: list[Any] = []
        self._eof_due = False
        self._messages: collections.deque[Any] = collections.deque()
        # The application took a message and has not asked for the next one (Protocol.backlog).
        self._taken = False
        self._unpaused = False  # recv() or close() unpaused the receiver: parse its buffer
        self._closing = False  # close() was called: the queue no longer stops the reader
        self._aborted = False
        self._timer: threading.Timer | None = None
        self._closed = threading.Event()
        self.logger: Logger = resolve_logger(
            options.logger, SERVER_LOGGER if is_server else CLIENT_LOGGER
        )
        """Where this connection logs (``logger=``; ``wsfast.client`` / ``wsfast.server``)."""
        # DEBUG on at open: every frame is traced; off, the plain Protocol runs (wsfast.log).
        make: Callable[..., Protocol] = Protocol
        if self.logger.isEnabledFor(logging.DEBUG):
            make = functools.partial(TracingProtocol, log=self.logger)
        self._proto = make(
            is_server=is_server,
            options=options,
            deflate=deflate,
            write=self._out.append,
            on_message=self._on_message,
            on_error=self._on_error,
            clock=time.monotonic,
        )
        self._proto.backlog = self._backlog
        self._keepalive_timer: threading.Timer | None = None
        with self._lock:
            self._apply()  # arms the keepalive timer when ping_interval is set
        try:
            peer = stream.sock.getpeername()
        except OSError:
            peer = None
        self.remote_address: Any = peer
        """The peer's address (``(host, port)``, or a Unix socket's path)."""
        self._reader = threading.Thread(
            target=self._read, name=f"wsfast.sync reader {peer}", daemon=True
        )

    def _start(self, head: bytes) -> None:
        """Feed the bytes that came with the handshake, then read the socket in the thread."""
        self._head = head
        self._reader.start()

    # -- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """OPEN, CLOSING or CLOSED (:class:`wsfast.protocol.State`)."""
        return self._proto.state

    @property
    def ready_state(self) -> int:
        """ws' ``readyState``: OPEN (1), CLOSING (2) or CLOSED (3)."""
        return int(self._proto.state)

    @property
    def is_server(self) -> bool:
        """True for the server side of a connection."""
        return self._proto.is_server

    @property
    def extensions(self) -> str:
        """The names of the negotiated extensions, comma-separated (ws' ``ws.extensions``)."""
        return ",".join(self.extension_params)

    @property
    def close_code(self) -> int | None:
        """None until closed; then the code received (1005 without one), the code of the
        protocol error that failed the connection, or 1006 (dropped)."""
        if self._proto.state is not CLOSED:
            return None
        code = self._proto.close_code
        return 1006 if code is None else code

    @property
    def close_reason(self) -> str:
        """The close reason received."""
        return self._proto.close_reason

    @property
    def latency(self) -> float:
        """Seconds of the last keepalive ping's round trip (0.0 before the first pong)."""
        return self._proto.latency

    @property
    def local_address(self) -> Any:
        """This side's address."""
        try:
            return self._stream.sock.getsockname()
        except OSError:
            return None

    # -- receiving -----------------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Any:
        """The next message: ``str`` for text, ``bytes`` for binary (as ``binary_type`` says).

        Blocks until one arrives; raises :class:`TimeoutError` after ``timeout`` seconds, and
        :class:`wsfast.ConnectionClosed` once no message can come (its ``__cause__`` is the
        protocol error that failed the connection, if any).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        proto = self._proto
        cond = self._cond
        while True:
            with cond:
                messages = self._messages
                if messages:
                    data = messages.popleft()
                    self._taken = True
                    receiver = proto.receiver
                    if receiver.paused and len(messages) <= self.options.max_queue >> 2:
                        receiver.paused = False
                        self._unpaused = True
                        cond.notify_all()
                    return data
                # The application asks for more than arrived: it is done with what it took.
                self._taken = False
                if proto.held is None:
                    if proto.state is CLOSED or proto.receiver.state == DONE:
                        raise self._connection_closed()
                    if deadline is None:
                        cond.wait()
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError("no message within the timeout")
                    cond.wait(remaining)
                    continue
                # Every message before the protocol error was taken: fail the connection now.
                proto.release()
                self._apply()
                cond.notify_all()
            self._flush(block=False)

    def __iter__(self) -> Iterator[Any]:
        """Messages until the connection closes; a normal close (1000, 1001, 1005) ends the
        loop, any other raises :class:`wsfast.ConnectionClosed`."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosed as exc:
                if exc.code in (1000, 1001, 1005):
                    return
                raise

    def _backlog(self) -> bool:
        return bool(self._messages or self._taken)

    def _on_message(self, data: Any, is_binary: bool) -> None:
        messages = self._messages
        messages.append(data)
        if len(messages) >= self.options.max_queue and not self._closing:
            # Stop parsing: the rest of this read stays raw bytes in the receiver, and the
            # reader stops reading the socket until recv() makes room (backpressure).
            self._proto.receiver.paused = True
        self._cond.notify()

    def _on_error(self, exc: WebSocketError) -> None:
        # A remote peer must not write ERROR lines into the log: the application learns of it
        # as ConnectionClosed.__cause__. A server's "connection closed" line names it.
        if self._proto.is_server:
            self.logger.debug("%r: %s", self, exc)
        else:
            self.logger.info("%r: %s", self, exc)

    def _connection_closed(self) -> ConnectionClosed:
        proto = self._proto
        code = proto.close_code
        exc = ConnectionClosed(1006 if code is None else code, proto.close_reason)
        if proto.error is not None:
            exc.__cause__ = proto.error
        return exc

    # -- sending -------------------------------------------------------------------------------

    def send(self, data: Any, binary: bool | None = None) -> None:
        """Send a message: ``str`` as text, any bytes-like object as binary unless ``binary``
        says otherwise. Returns once written to the socket (blocks while the peer does not
        read); raises :class:`wsfast.ConnectionClosed` unless the connection is open."""
        self._write_frame(self._proto.send, data, binary)

    def ping(self, data: str | bytes = b"") -> None:
        """Send a ping (payload up to 125 bytes)."""
        self._write_frame(self._proto.ping, data)

    def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited pong (payload up to 125 bytes)."""
        self._write_frame(self._proto.pong, data)

    def _write_frame(self, method: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._proto.state is not OPEN:
                raise self._connection_closed()
            method(*args)
        self._flush(block=True)

    def _flush(self, block: bool) -> None:
        """Write what the protocol produced, in order, then the half-close if one is due.

        Non-blocking callers (the reader, the timer) leave the writing to the thread that
        holds the write lock, which drains everything queued before it lets go.
        """
        lock = self._write_lock
        while lock.acquire(blocking=block):
            try:
                self._drain()
            finally:
                lock.release()
            with self._lock:
                if not self._out and not self._eof_due:
                    return
            block = False  # queued while we let go: written by us, or by who holds it now

    def _drain(self) -> None:
        stream = self._stream
        out = self._out
        while True:
            with self._lock:
                chunks = out[:]
                out.clear()
                eof = not chunks and self._eof_due
                if eof:
                    self._eof_due = False
                elif not chunks:
                    self._proto.auto_pongs_flushed()
                    return
            try:
                if eof:
                    stream.shutdown_write()
                elif sum(map(len, chunks)) <= _JOIN_LIMIT:
                    stream.sendall(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                else:
                    for chunk in chunks:
                        stream.sendall(chunk)
                        if type(chunk) is MaskedFrame:
                            # Out of our hands (sendall returned): the sender may build the
                            # next large masked frame in it (Sender.reuse).
                            with self._lock:
                                self._proto.sender.reuse(chunk)
            except OSError:
                # The peer is gone: the reader sees it too and ends the connection.
                with self._lock:
                    out.clear()
                    self._eof_due = False
                stream.abort()
                return

    # -- closing -------------------------------------------------------------------------------

    def close(self, code: int | None = 1000, reason: str | bytes = "") -> None:
        """Run the closing handshake and wait until the connection is closed.

        ``close_timeout`` bounds the wait for the peer; then the connection is dropped. The
        server half-closes TCP first, the client waits for it (RFC 6455 7.1.1). Does nothing
        once closed.
        """
        with self._cond:
            self._closing = True
            proto = self._proto
            proto.close(code, reason)
            # The peer's answer may be behind queued data: read it whatever the queue holds.
            if proto.receiver.paused:
                proto.receiver.paused = False
                self._unpaused = True
            self._apply()
            self._cond.notify_all()
        self._flush(block=True)
        self.wait_closed()

    def terminate(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        with self._cond:
            self._proto.terminate()
            self._apply()
            self._cond.notify_all()
        self.wait_closed()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the connection is closed; False if ``timeout`` passed first."""
        if threading.current_thread() is self._reader:
            return self._closed.is_set()
        return self._closed.wait(timeout)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close(1000)

    def __repr__(self) -> str:
        side = "server" if self.is_server else "client"
        return f"<wsfast.sync.Connection {side} {self.state.name} {self.remote_address}>"

    def _apply(self) -> None:
        """Do what the protocol asked of the transport (the lock is held)."""
        proto = self._proto
        if not proto.pending:
            return
        proto.pending = False
        if proto.abort_due:
            proto.abort_due = False
            self._aborted = True
            self._stream.abort()
            return
        wake = proto.keepalive_wake
        if wake is not None:
            proto.keepalive_wake = None
            if self._keepalive_timer is not None:
                self._keepalive_timer.cancel()
            if not self._closed.is_set():
                self._keepalive_timer = threading.Timer(wake, self._tick)
                self._keepalive_timer.daemon = True
                self._keepalive_timer.start()
        seconds = proto.timer
        if seconds is not None:
            proto.timer = None
            if self._timer is not None:
                self._timer.cancel()
            if not self._closed.is_set():
                self._timer = threading.Timer(seconds, self._expire)
                self._timer.daemon = True
                self._timer.start()
        if proto.eof_due:
            proto.eof_due = False
            self._eof_due = True

    def _tick(self) -> None:
        with self._cond:
            self._keepalive_timer = None
            self._proto.tick()
            self._apply()
            self._cond.notify_all()
        self._flush(block=False)

    def _expire(self) -> None:
        with self._cond:
            self._timer = None
            self._proto.expire()
            self._apply()
            self._cond.notify_all()
        self._flush(block=False)

    # -- the reader thread ---------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        """Parse ``data`` (the lock is held)."""
        proto = self._proto
        try:
            proto.receive_data(data)
        except Exception as exc:  # a bug must not leave a half-parsed connection open
            self.logger.exception("unexpected error while parsing frames")
            proto.fail(WebSocketError(f"internal error: {exc!r}", "WS_ERR_INTERNAL", 1011))
        self._apply()
        self._cond.notify_all()

    def _read(self) -> None:
        proto = self._proto
        receiver = proto.receiver
        cond = self._cond
        stream = self._stream
        try:
            if self._head:
                with cond:
                    self._feed(self._head)
                self._head = b""
                self._flush(block=False)
            while True:
                with cond:
                    # Stop reading while the queue is full or an error is held for the
                    # application's answers (issue 13): recv() wakes us.
                    while (receiver.paused or proto.held is not None) and not self._aborted:
                        cond.wait()
                    if self._aborted:
                        break
                    # Once unpaused, what a full queue held back is parsed first (once: a
                    # stopped receiver keeps its unparsed bytes).
                    parse = self._unpaused and receiver.has_buffered
                    self._unpaused = False
                    if parse:
                        self._feed(b"")
                if parse:
                    self._flush(block=False)
                    continue
                data = stream.recv()
                if not data:
                    with cond:
                        proto.receive_eof()
                        self._apply()
                    # What is queued goes out before the socket closes (asyncio's close()).
                    self._flush(block=True)
                    break
                with cond:
                    self._feed(data)
                self._flush(block=False)
        except OSError:
            pass  # reset, or aborted: the connection is gone either way
        except Exception:  # pragma: no cover - a bug: the connection must still end
            self.logger.exception("the reader thread failed")
        finally:
            self._connection_lost()

    def _connection_lost(self) -> None:
        self._stream.close()
        with self._cond:
            self._proto.connection_lost()
            for timer in (self._timer, self._keepalive_timer):
                if timer is not None:
                    timer.cancel()
            self._timer = self._keepalive_timer = None
            self._aborted = True
            self._out.clear()
            self._cond.notify_all()
        proto = self._proto
        if proto.is_server:
            # One INFO line per connection at its end, as the asyncio server.
            code = proto.close_code
            reason, error = proto.close_reason, proto.error
            self.logger.info(
                "connection closed: %s%s%s",
                1006 if code is None else code,
                f" {reason!r}" if reason else "",
                f" ({error})" if error is not None else "",
            )
        self._closed.set()
        proto.detach()  # its callbacks are this connection's methods: no cycle left behind

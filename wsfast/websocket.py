"""The WebSocket connection (the twin of ws' ``lib/websocket.js``) on asyncio.

One :class:`WebSocket` per connection is both the public object (ws' event API and the asyncio
API) and, once the opening handshake is done, the transport's ``asyncio.Protocol``: bytes from
the socket go straight into the sans-I/O :class:`~wsfast.receiver.Receiver`, whose callbacks
dispatch messages to listeners with no Future or Task per frame.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl as ssl_module
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any

from .constants import CLOSED, CLOSING, CONNECTING, DEFAULT_CLOSE_TIMEOUT, OPEN
from .event_emitter import EventEmitter
from .event_target import EventTarget
from .exceptions import ConnectionClosed, HandshakeError, WebSocketError
from .receiver import Receiver
from .sender import Sender, close_payload

__all__ = ["WebSocket", "connect", "Connect"]

logger = logging.getLogger("wsfast")

_STATES = ("CONNECTING", "OPEN", "CLOSING", "CLOSED")
# Messages buffered for recv() while no 'message' listener exists; at this many the socket stops
# being read (backpressure), as websockets' max_queue does.
DEFAULT_MAX_QUEUE = 16


class _Done:
    """The awaitable that ``send()`` returns when nothing needs waiting for: costs nothing."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]


_DONE = _Done()


class _Raise:
    """An awaitable that raises when awaited and stays silent when it is not."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __await__(self) -> Generator[Any, None, None]:
        raise self.exc
        yield  # pragma: no cover


class WebSocket(EventTarget, EventEmitter, asyncio.Protocol):
    """A WebSocket connection: ws' ``WebSocket`` class with asyncio awaitables on top.

    As a client, ``WebSocket(url, protocols, **options)`` must be created inside a running event
    loop and starts connecting at once; ``'open'`` fires when the handshake is done. Server-side
    objects are made by :class:`~wsfast.WebSocketServer` and handed to ``'connection'``.
    """

    CONNECTING = CONNECTING
    OPEN = OPEN
    CLOSING = CLOSING
    CLOSED = CLOSED

    def __init__(
        self,
        address: str | None = None,
        protocols: str | Iterable[str] | None = None,
        *,
        per_message_deflate: bool | Mapping[str, Any] = True,
        handshake_timeout: float | None = None,
        origin: str | None = None,
        headers: Mapping[str, str] | None = None,
        protocol_version: int = 13,
        max_payload: int = 100 * 1024 * 1024,
        max_fragments: int = 0,
        follow_redirects: bool = False,
        max_redirects: int = 10,
        skip_utf8_validation: bool = False,
        auto_pong: bool = True,
        ssl: ssl_module.SSLContext | bool | None = None,
        proxy: str | None = None,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        generate_mask: Callable[[], bytes] | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        binary_type: str = "bytes",
        create_connection: Callable[..., Any] | None = None,
    ) -> None:
        EventEmitter.__init__(self)
        self._ready_state = CONNECTING
        self._is_server = address is None
        self._transport: asyncio.Transport | None = None
        self._receiver: Receiver | None = None
        self._sender: Sender | None = None
        self._deflate: Any = None
        self._protocol = ""
        self._extensions: dict[str, Any] = {}
        self._binary_type = binary_type
        self._auto_pong = auto_pong
        self._max_payload = max_payload
        self._max_fragments = max_fragments
        self._skip_utf8_validation = skip_utf8_validation
        self._close_timeout = close_timeout
        self._generate_mask = generate_mask
        self._max_queue = max_queue
        self._close_frame_sent = False
        self._close_frame_received = False
        self._close_code = 1006
        self._close_reason = ""
        self._close_timer: asyncio.TimerHandle | None = None
        self._error_emitted = False
        self._close_emitted = False
        self._paused = False
        self._queue_paused = False
        self._write_paused = False
        self._cork: list[Any] | None = None
        self._pong_written = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._drain_callbacks: list[Callable[[BaseException | None], Any]] = []
        self._queue: collections.deque[Any] = collections.deque()
        self._recv_waiter: asyncio.Future[Any] | None = None
        self._message_listeners = False
        self._message_listener: Callable[..., Any] | None = None
        self._loop = asyncio.get_running_loop()
        self._opened: asyncio.Future[None] = self._loop.create_future()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._url: str | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._options: dict[str, Any] = {}
        if address is None:
            return
        if isinstance(protocols, str):
            protocols = [protocols]
        self._options = {
            "protocols": list(protocols or ()),
            "per_message_deflate": per_message_deflate,
            "handshake_timeout": handshake_timeout,
            "origin": origin,
            "headers": dict(headers or {}),
            "protocol_version": protocol_version,
            "follow_redirects": follow_redirects,
            "max_redirects": max_redirects,
            "ssl": ssl,
            "proxy": proxy,
            "create_connection": create_connection,
        }
        from .client import check_options, parse_url

        check_options(self._options)
        self._url = address
        parse_url(address)  # raise at once for a bad URL, as ws' constructor throws
        from .client import run_client

        self._connect_task = self._loop.create_task(run_client(self, address))

    # -- state -------------------------------------------------------------------------------

    @property
    def ready_state(self) -> int:
        """CONNECTING (0), OPEN (1), CLOSING (2) or CLOSED (3)."""
        return self._ready_state

    @property
    def protocol(self) -> str:
        """The subprotocol the server selected, or ``""``."""
        return self._protocol

    @property
    def extensions(self) -> str:
        """The names of the negotiated extensions, comma-separated (ws' ``ws.extensions``)."""
        return ",".join(self._extensions)

    @property
    def extension_params(self) -> dict[str, Any]:
        """The negotiated parameters of each extension."""
        return dict(self._extensions)

    @property
    def url(self) -> str | None:
        """The URL the client connected to (None on the server side)."""
        return self._url

    @property
    def is_server(self) -> bool:
        """True for the server side of a connection."""
        return self._is_server

    @property
    def binary_type(self) -> str:
        """How binary messages are delivered: ``"bytes"``, ``"bytearray"`` or ``"fragments"``."""
        return self._binary_type

    @binary_type.setter
    def binary_type(self, value: str) -> None:
        if value not in ("bytes", "bytearray", "fragments"):
            raise ValueError(f"invalid binary_type {value!r}")
        self._binary_type = value
        if self._receiver is not None:
            self._receiver.binary_type = value

    @property
    def buffered_amount(self) -> int:
        """Bytes queued in the transport and not yet sent."""
        transport = self._transport
        if transport is None or transport.is_closing() and self._ready_state == CLOSED:
            return 0
        return transport.get_write_buffer_size()

    @property
    def is_paused(self) -> bool:
        """Whether :meth:`pause` stopped the reading of the socket."""
        return self._paused

    @property
    def close_code(self) -> int:
        """The close code received (1005 with none, 1006 when the connection dropped)."""
        return self._close_code

    @property
    def close_reason(self) -> str:
        """The close reason received."""
        return self._close_reason

    @property
    def transport(self) -> asyncio.Transport | None:
        """The asyncio transport of the connection once open."""
        return self._transport

    def __repr__(self) -> str:
        side = "server" if self._is_server else "client"
        return f"<wsfast.WebSocket {side} {_STATES[self._ready_state]} {self._url or ''}>"

    # -- opening -----------------------------------------------------------------------------

    def _setup(
        self,
        transport: asyncio.Transport,
        head: bytes,
        protocol: str = "",
        extensions: dict[str, Any] | None = None,
        deflate: Any = None,
    ) -> None:
        """Switch ``transport`` to this connection once the handshake succeeded."""
        self._transport = transport
        self._protocol = protocol
        self._extensions = extensions or {}
        self._deflate = deflate
        self._receiver = Receiver(
            is_server=self._is_server,
            max_payload=self._max_payload,
            max_fragments=self._max_fragments,
            deflate=deflate,
            skip_utf8_validation=self._skip_utf8_validation,
            binary_type=self._binary_type,
            on_message=self._on_message,
            on_ping=self._on_ping,
            on_pong=self._on_pong,
            on_close=self._on_close_frame,
        )
        self._sender = Sender(
            is_client=not self._is_server, deflate=deflate, generate_mask=self._generate_mask
        )
        transport.set_protocol(self)
        self._ready_state = OPEN
        if not self._opened.done():
            self._opened.set_result(None)
        self._update_message_listeners()

    def _start(self, head: bytes) -> None:
        """Feed bytes that arrived with the handshake, once ``'open'`` listeners ran."""
        if head:
            self.data_received(head)

    def _handshake_failed(self, exc: BaseException) -> None:
        """The opening handshake did not complete: emit 'error' then 'close' (1006)."""
        if self._ready_state == CLOSED:
            return
        self._ready_state = CLOSING
        if not self._opened.done():
            self._opened.set_exception(exc)
            self._opened.exception()  # retrieved: recv()/await report it themselves
        self._emit_error(exc)
        self._finish()

    def _handshake_closed(self) -> None:
        """The handshake ended without an error being owed ('unexpected-response' was heard)."""
        if not self._opened.done():
            self._opened.set_exception(HandshakeError("Unexpected server response"))
            self._opened.exception()
        self._ready_state = CLOSING
        self._finish()

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Feed the socket's bytes to the receiver (asyncio callback)."""
        receiver = self._receiver
        if receiver is None:  # pragma: no cover - set_protocol happens after _setup
            return
        # Frames that listeners send while this read is parsed are collected and written once
        # at its end: one write() per read instead of one per message (32 B pipelined echo
        # 78.8k -> 101.5k msg/s in the benchmark's pinned runs).
        if self._cork is not None:
            # Re-entered (resume() from a listener): the outer call owns the batch and its
            # order.
            self._feed(receiver, data)
            return
        cork: list[Any] = []
        self._cork = cork
        try:
            self._feed(receiver, data)
        finally:
            self._cork = None
            if cork:
                self._write_all(cork)
            if self._pong_written:
                self._pong_written = False
                if self._write_paused:
                    # A peer that floods pings without reading our pongs would grow the
                    # write buffer without bound: stop reading until it drains.
                    self._pause_reading()

    def _feed(self, receiver: Receiver, data: bytes) -> None:
        try:
            receiver.feed(data)
        except WebSocketError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug must not leave a half-parsed connection open
            logger.exception("unexpected error while parsing frames")
            self._fail(WebSocketError(f"internal error: {exc!r}", "WS_ERR_INTERNAL", 1011))

    def _write(self, data: Any) -> None:
        cork = self._cork
        if cork is not None:
            cork.append(data)
        else:
            assert self._transport is not None
            self._transport.write(data)

    def _write_all(self, chunks: list[Any]) -> None:
        transport = self._transport
        assert transport is not None
        if transport.is_closing():
            return
        if len(chunks) == 1:
            transport.write(chunks[0])
            return
        if sum(map(len, chunks)) <= 65536:
            transport.write(b"".join(chunks))
            return
        for chunk in chunks:
            transport.write(chunk)

    def _flush(self) -> None:
        """Write what the current read collected now (before a half-close)."""
        cork = self._cork
        if cork:
            self._write_all(cork)
            cork.clear()

    def eof_received(self) -> bool:
        """The peer half-closed: let asyncio close the transport (ws' ``socketOnEnd``)."""
        if self._ready_state == OPEN:
            self._ready_state = CLOSING
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """The transport is closed: emit 'close' exactly once (asyncio callback)."""
        self._finish()

    def pause_writing(self) -> None:
        """The transport's buffer passed its high-water mark (asyncio callback)."""
        self._write_paused = True

    def resume_writing(self) -> None:
        """The transport's buffer drained below its low-water mark (asyncio callback)."""
        self._write_paused = False
        self._release_writers(None)
        if self._queue_paused is False and not self._paused and self._transport is not None:
            # Reading stopped while pongs could not be written (see _on_ping).
            self._resume_reading()

    # -- receiving ---------------------------------------------------------------------------

    def _listeners_changed(self, event: str) -> None:
        if event == "message":
            self._update_message_listeners()

    def _update_message_listeners(self) -> None:
        listeners = self._events.get("message")
        self._message_listeners = bool(listeners)
        # The usual single listener is called directly, without emit()'s copy and loop.
        self._message_listener = listeners[0] if listeners and len(listeners) == 1 else None
        if self._message_listeners:
            # Messages queued for recv() before the listener came go to it first, in order.
            queue = self._queue
            while queue and self._message_listeners:
                data = queue.popleft()
                self.emit("message", data, not isinstance(data, str))
            if self._queue_paused:
                self._unpause_queue()

    def _on_message(self, data: Any, is_binary: bool) -> None:
        listener = self._message_listener
        if listener is not None:
            self._call("message", listener, (data, is_binary))
            return
        if self._message_listeners:
            self.emit("message", data, is_binary)
            return
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            self._recv_waiter = None
            waiter.set_result(data)
            return
        queue = self._queue
        queue.append(data)
        if len(queue) >= self._max_queue and not self._queue_paused:
            self._queue_paused = True
            self._pause_reading()
            # Stop parsing as well: the rest of this read stays raw bytes in the receiver.
            # Pausing the transport alone let one read (up to 256 KiB, thousands of small
            # frames) land in the queue past max_queue.
            if self._receiver is not None:
                self._receiver.paused = True

    def _unpause_queue(self) -> None:
        """The recv() queue has room again: parse what it held back, then read the socket."""
        self._queue_paused = False
        receiver = self._receiver
        if receiver is not None and not self._paused:
            receiver.paused = False
            if receiver.buffered:
                self.data_received(b"")
        self._resume_reading()

    def _on_ping(self, data: bytes) -> None:
        if self._auto_pong and self._ready_state == OPEN:
            assert self._sender is not None
            self._write(self._sender.pong(data))
            self._pong_written = True
        self.emit("ping", data)

    def _on_pong(self, data: bytes) -> None:
        self.emit("pong", data)

    def _on_close_frame(self, code: int, reason: str) -> None:
        self._close_frame_received = True
        self._close_code = code
        self._close_reason = reason
        if code == 1005:
            self.close()
        else:
            self.close(code, reason)

    def _fail(self, exc: WebSocketError) -> None:
        """A protocol error: send its close code, end the connection, emit 'error' (ws)."""
        self._close_code = exc.status_code
        if self._ready_state == OPEN:
            self._ready_state = CLOSING
            self._send_close(exc.status_code, "")
        self._end()
        self._emit_error(exc)

    def _emit_error(self, exc: BaseException) -> None:
        if not self._error_emitted:
            self._error_emitted = True
            self.emit("error", exc)

    # -- flow control --------------------------------------------------------------------------

    def _pause_reading(self) -> None:
        transport = self._transport
        if transport is not None and transport.is_reading():
            transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._paused or self._queue_paused or self._ready_state == CLOSED:
            return
        transport = self._transport
        if transport is not None and not transport.is_reading() and not transport.is_closing():
            transport.resume_reading()

    def pause(self) -> None:
        """Stop reading from the socket and stop emitting messages (ws' ``pause``)."""
        if self._ready_state in (CONNECTING, CLOSED):
            return
        self._paused = True
        if self._receiver is not None:
            self._receiver.paused = True
        self._pause_reading()

    def resume(self) -> None:
        """Undo :meth:`pause`: parse what was buffered, then read the socket again."""
        if self._ready_state in (CONNECTING, CLOSED):
            return
        self._paused = False
        receiver = self._receiver
        if receiver is not None:
            receiver.paused = self._queue_paused
            if receiver.buffered and not receiver.paused:
                self.data_received(b"")
        self._resume_reading()

    def _release_writers(self, exc: BaseException | None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        callbacks, self._drain_callbacks = self._drain_callbacks, []
        for callback in callbacks:
            self._call_back(callback, exc)

    def _call_back(self, callback: Callable[[BaseException | None], Any], exc: Any) -> None:
        def run() -> None:
            try:
                callback(exc)
            except Exception:
                logger.exception("a send callback raised")

        self._loop.call_soon(run)

    def _written(self, callback: Callable[[BaseException | None], Any] | None) -> Any:
        if not self._write_paused:
            if callback is not None:
                self._call_back(callback, None)
            return _DONE
        if callback is not None:
            self._drain_callbacks.append(callback)
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._drain_waiters.append(waiter)
        return waiter

    def _not_open(self, callback: Callable[[BaseException | None], Any] | None) -> Any:
        if self._ready_state == CONNECTING:
            raise WebSocketError("WebSocket is not open: readyState 0 (CONNECTING)", None)
        exc = ConnectionClosed(self._close_code, self._close_reason)
        if callback is not None:
            self._call_back(
                callback,
                WebSocketError(
                    f"WebSocket is not open: readyState {self._ready_state} "
                    f"({_STATES[self._ready_state]})"
                ),
            )
        return _Raise(exc)

    # -- sending -------------------------------------------------------------------------------

    def send(
        self,
        data: str | bytes | bytearray | memoryview,
        binary: bool | None = None,
        compress: bool | None = None,
        fin: bool = True,
        mask: bool | None = None,
        callback: Callable[[BaseException | None], Any] | None = None,
    ) -> Any:
        """Send a message (or a fragment with ``fin=False``) at once.

        A ``str`` is sent as text and anything else as binary unless ``binary`` says otherwise.
        Returns an awaitable that resolves once the frame is handed to the transport under its
        high-water mark; awaiting it after the connection closed raises ConnectionClosed.
        """
        if self._ready_state != OPEN:
            return self._not_open(callback)
        sender = self._sender
        assert sender is not None
        if sender.plain and fin and mask is None and sender._first_fragment:
            # Server side, no compression: a whole small message is framed here directly
            # (RFC 6455 5.2: FIN + opcode, 7-bit length), without the general path's calls.
            kind = type(data)
            if kind is str or kind is bytes:
                payload: Any = data.encode("utf-8") if kind is str else data  # type: ignore[union-attr]
                length = len(payload)
                if length < 126:
                    text = kind is str if binary is None else not binary
                    self._write(bytes((0x81 if text else 0x82, length)) + payload)
                    return self._written(callback)
        if binary is None:
            binary = not isinstance(data, str)
        elif not isinstance(data, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"cannot send {type(data).__name__}")
        out = sender.message(data, binary, fin=fin, compress=compress, mask=mask, split=True)
        if type(out) is tuple:
            self._write(out[0])
            self._write(out[1])
        else:
            self._write(out)
        return self._written(callback)

    def ping(
        self,
        data: str | bytes = b"",
        mask: bool | None = None,
        callback: Callable[[BaseException | None], Any] | None = None,
    ) -> Any:
        """Send a ping (payload up to 125 bytes)."""
        return self._send_control(False, data, mask, callback)

    def pong(
        self,
        data: str | bytes = b"",
        mask: bool | None = None,
        callback: Callable[[BaseException | None], Any] | None = None,
    ) -> Any:
        """Send an unsolicited pong (payload up to 125 bytes)."""
        return self._send_control(True, data, mask, callback)

    def _send_control(
        self,
        pong: bool,
        data: str | bytes,
        mask: bool | None,
        callback: Callable[[BaseException | None], Any] | None,
    ) -> Any:
        if self._ready_state != OPEN:
            return self._not_open(callback)
        sender = self._sender
        assert sender is not None
        self._write(sender.pong(data, mask) if pong else sender.ping(data, mask))
        return self._written(callback)

    # -- closing -------------------------------------------------------------------------------

    def close(self, code: int | None = None, reason: str | bytes = "") -> Any:
        """Start the closing handshake (ws' ``close``); returns an awaitable of the close.

        Before the connection is open this aborts the handshake. ``code`` must be a valid close
        code and ``reason`` at most 123 bytes of UTF-8.
        """
        state = self._ready_state
        if state == CLOSED:
            return _WaitClosed(self)
        if state == CONNECTING:
            self._handshake_failed(
                WebSocketError("WebSocket was closed before the connection was established")
            )
            return _WaitClosed(self)
        if state == CLOSING:
            if self._close_frame_sent and self._close_frame_received:
                self._end()
            return _WaitClosed(self)
        close_payload(code, reason)  # raises on a bad code or reason, before any state changes
        self._ready_state = CLOSING
        self._send_close(code, reason)
        if self._close_frame_received:
            self._end()
        return _WaitClosed(self)

    def _send_close(self, code: int | None, reason: str | bytes) -> None:
        if self._close_frame_sent:
            return
        assert self._sender is not None and self._transport is not None
        self._close_frame_sent = True
        if not self._transport.is_closing():
            self._write(self._sender.close(code, reason))
        self._close_timer = self._loop.call_later(self._close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        if self._transport is not None:
            self._transport.abort()

    def _end(self) -> None:
        """Half-close once both close frames are exchanged (ws' ``socket.end()``)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._flush()
        if self._receiver is not None:
            self._receiver.state = 5  # DONE: nothing after the close is parsed
        if transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:
                # The peer is already gone (ENOTCONN): nothing is left to flush.
                transport.abort()
                return
            if self._close_timer is None:
                self._close_timer = self._loop.call_later(
                    self._close_timeout, self._close_timed_out
                )
        else:
            transport.close()

    def terminate(self) -> None:
        """Destroy the connection at once, without a closing handshake."""
        if self._ready_state == CLOSED:
            return
        if self._ready_state == CONNECTING:
            self._handshake_failed(
                WebSocketError("WebSocket was closed before the connection was established")
            )
            return
        self._ready_state = CLOSING
        if self._transport is not None:
            self._transport.abort()

    def _finish(self) -> None:
        """The transport is gone: release every waiter and emit 'close' once."""
        if self._close_emitted:
            return
        self._close_emitted = True
        self._ready_state = CLOSED
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if self._deflate is not None:
            cleanup = getattr(self._deflate, "cleanup", None)
            if cleanup is not None:
                cleanup()
        self._release_writers(WebSocketError("The socket was closed while data was being sent"))
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionClosed(self._close_code, self._close_reason))
            self._recv_waiter = None
        if not self._closed.done():
            self._closed.set_result(None)
        self.emit("close", self._close_code, self._close_reason)

    async def wait_closed(self) -> None:
        """Wait until the connection is closed and 'close' was emitted."""
        await asyncio.shield(self._closed)

    # -- asyncio API -----------------------------------------------------------------------------

    async def wait_open(self) -> WebSocket:
        """Wait for the opening handshake; raises its error if it failed."""
        await asyncio.shield(self._opened)
        return self

    def __await__(self) -> Generator[Any, None, WebSocket]:
        return self.wait_open().__await__()

    async def __aenter__(self) -> WebSocket:
        return await self.wait_open()

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._ready_state != CLOSED:
            self.close(1000) if self._ready_state == OPEN else self.close()
            await self.wait_closed()

    async def recv(self) -> Any:
        """The next message (``str`` or ``bytes``); raises ConnectionClosed once closed."""
        queue = self._queue
        if queue:
            data = queue.popleft()
            if self._queue_paused and len(queue) < (self._max_queue >> 1) + 1:
                self._unpause_queue()
            return data
        if self._ready_state == CONNECTING:
            await self.wait_open()
            return await self.recv()
        if self._ready_state == CLOSED or self._receiver is None or self._receiver.state == 5:
            raise ConnectionClosed(self._close_code, self._close_reason)
        if self._recv_waiter is not None:
            raise RuntimeError("another coroutine is already waiting in recv()")
        waiter: asyncio.Future[Any] = self._loop.create_future()
        self._recv_waiter = waiter
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # The message arrived in the same loop iteration as the cancellation (a
                # caller's timeout): keep it for the next recv() instead of dropping it.
                self._queue.appendleft(waiter.result())
            raise
        finally:
            if self._recv_waiter is waiter:
                self._recv_waiter = None

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.recv()
        except ConnectionClosed as exc:
            if exc.code in (1000, 1001, 1005):
                raise StopAsyncIteration from None
            raise


class _WaitClosed:
    """What ``close()`` returns: awaiting it waits for the 'close' event."""

    __slots__ = ("ws",)

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    def __await__(self) -> Generator[Any, None, None]:
        return self.ws.wait_closed().__await__()


class Connect:
    """What :func:`connect` returns: ``await`` it or use it with ``async with``."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self._url = url
        self._options = options
        self._ws: WebSocket | None = None

    def _create(self) -> WebSocket:
        if self._ws is None:
            protocols = self._options.pop("protocols", None)
            self._ws = WebSocket(self._url, protocols, **self._options)
        return self._ws

    def __await__(self) -> Generator[Any, None, WebSocket]:
        return self._create().wait_open().__await__()

    async def __aenter__(self) -> WebSocket:
        return await self._create().wait_open()

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self._ws is not None
        await self._ws.__aexit__(*exc_info)


def connect(url: str, **options: Any) -> Connect:
    """Open a client connection: ``ws = await connect(url)`` or ``async with connect(url)``."""
    return Connect(url, options)


# -- the server's handoff: the API the connection module gives websocket_server.py ---------------

from typing import TYPE_CHECKING  # noqa: E402 (at the bottom: this block merges as one hunk)

if TYPE_CHECKING:
    from .options import ConnectionOptions
    from .permessage_deflate import PerMessageDeflate


def accept(
    transport: asyncio.Transport,
    protocol: str,
    extensions: dict[str, Any],
    deflate: PerMessageDeflate | None,
    options: ConnectionOptions,
    keep_alive: object = None,
) -> WebSocket:
    """A server-side WebSocket, OPEN, attached to transport (reading stays paused until start()).

    ``keep_alive`` is kept as long as the connection (a ``StreamWriter`` whose garbage collection
    would close the transport, Python 3.11.5+).
    """
    ws = WebSocket(
        None,
        max_payload=options.max_payload,
        max_fragments=options.max_fragments,
        skip_utf8_validation=options.skip_utf8_validation,
        auto_pong=options.auto_pong,
        close_timeout=options.close_timeout,
        generate_mask=options.generate_mask,
        max_queue=options.max_queue,
        binary_type=options.binary_type,
    )
    ws._setup(transport, b"", protocol, extensions, deflate)
    if keep_alive is not None:
        ws._keep_alive = keep_alive  # type: ignore[attr-defined]
    return ws


def start(ws: WebSocket, head: bytes) -> None:
    """Feed the bytes that followed the request head, then read the socket (unless paused)."""
    ws._start(head)
    if ws.ready_state != CLOSED and not ws.is_paused:
        ws._resume_reading()

"""The WebSocket connection (the twin of ws' ``lib/websocket.js``): the asyncio adapter.

One :class:`WebSocket` per connection is both the public object (ws' event API and the asyncio
API) and, once the opening handshake is done, the transport's ``asyncio.Protocol``. What the
connection decides (state, closing handshake, auto-pong, failing on protocol errors) lives in
the sans-I/O :class:`~wsfast.protocol.Protocol`; this module feeds it the socket's bytes, writes
what it produces, runs its close timer, and maps its callbacks to ws' events and to the asyncio
API, with no Future or Task per frame.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import heapq
import itertools
import logging
import ssl as ssl_module
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .client import UnexpectedResponse, open_connection
from .constants import (
    BINARY_TYPES,
    CLOSED,
    CLOSING,
    CONNECTING,
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_PAYLOAD,
    DEFAULT_MAX_PENDING_AUTO_PONGS,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    OPEN,
)
from .event_emitter import EventEmitter
from .event_target import EventTarget
from .exceptions import ConnectionClosed, HandshakeError, WebSocketError
from .log import CLIENT_LOGGER, SERVER_LOGGER, Logger, TracingProtocol, resolve_logger
from .options import ClientOptions, ClientOptionsDict, ConnectionOptions
from .protocol import CLOSED as STATE_CLOSED
from .protocol import OPEN as STATE_OPEN
from .protocol import Protocol
from .read_in_place import PayloadReader, switch_protocol
from .receiver import DONE
from .sender import MaskedFrame, PreparedMessage, coalesce
from .url import parse_url

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["WebSocket", "connect", "Connect", "accept", "start"]

_STATES = ("CONNECTING", "OPEN", "CLOSING", "CLOSED")


#: A batch of frames (see ``WebSocket._write``) is written at once when it reaches this size:
#: the transport's high-water mark, and so ``send()``'s backpressure, apply from there on;
#: ``_write_all`` joins chunks into one write up to the same size.
_BATCH_LIMIT = 65536


class _Raise:
    """An awaitable that raises when awaited and stays silent when it is not."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __await__(self) -> Generator[Any, None, None]:
        raise self.exc
        yield  # pragma: no cover


class _Keepalive:
    """One timer per event loop for the keepalive of every connection on it.

    A ``call_later`` handle per connection was 0.4 to 0.9 KiB of each idle connection with
    keepalive on (``serve()``'s default; RSS over 500 idle connections, uvloop); an entry here
    is ``[when, seq, ws]``, about 150 B. The loop's timer is armed for the earliest entry; a
    cancelled entry drops its connection at once (a closed connection is not kept alive until
    its deadline) and leaves the heap when it comes up or when most entries are cancelled.

    The loop's pending timer is what keeps the object alive (``_KEEPALIVES`` holds it weakly):
    with no connection waiting it goes, and it never keeps a discarded loop alive.
    """

    __slots__ = ("loop", "time", "heap", "handle", "due", "seq", "cancelled", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: The clock of the loop's connections (``Protocol(clock=)``): one bound method.
        self.time = loop.time
        self.heap: list[list[Any]] = []
        self.handle: asyncio.TimerHandle | None = None
        self.due = 0.0
        self.seq = itertools.count()
        self.cancelled = 0

    def add(self, ws: WebSocket, delay: float) -> list[Any]:
        """Call ``ws._tick()`` in ``delay`` seconds; returns the entry for :meth:`cancel`."""
        when = self.loop.time() + delay
        entry = [when, next(self.seq), ws]
        heapq.heappush(self.heap, entry)
        if self.handle is None or when < self.due:
            self._arm(when)
        return entry

    def _arm(self, when: float) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.handle = self.loop.call_at(when, self._run)
        self.due = when

    def cancel(self, entry: list[Any]) -> None:
        """Forget ``entry``'s connection (it is closed, or its deadline moved)."""
        entry[2] = None
        self.cancelled += 1
        heap = self.heap
        if self.cancelled > 64 and self.cancelled * 2 > len(heap):
            heap[:] = [e for e in heap if e[2] is not None]
            heapq.heapify(heap)
            self.cancelled = 0

    def _run(self) -> None:
        self.handle = None
        heap = self.heap
        now = self.loop.time()
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            ws = entry[2]
            if ws is None:
                self.cancelled -= 1
                continue
            entry[2] = None
            try:
                ws._tick()
            except Exception:
                ws.logger.exception("keepalive failed")
        # (A tick may have armed the timer already, for its new entry.)
        if heap and (self.handle is None or heap[0][0] < self.due):
            self._arm(heap[0][0])


#: id(loop) -> its _Keepalive, while the loop's timer holds it.
_KEEPALIVES: weakref.WeakValueDictionary[int, _Keepalive] = weakref.WeakValueDictionary()


def _keepalive(loop: asyncio.AbstractEventLoop) -> _Keepalive:
    wheel = _KEEPALIVES.get(id(loop))
    if wheel is None or wheel.loop is not loop:
        wheel = _KEEPALIVES[id(loop)] = _Keepalive(loop)
    return wheel


def _cancel_keepalive(loop: asyncio.AbstractEventLoop, entry: list[Any]) -> None:
    """Cancel a :meth:`_Keepalive.add` entry, if it is still waiting."""
    if entry[2] is not None:
        _keepalive(loop).cancel(entry)  # a waiting entry is in its loop's heap


def _peer_caused(exc: BaseException) -> bool:
    """Errors a remote peer or the network can cause, as opposed to bugs in code."""
    return isinstance(exc, (WebSocketError, OSError, asyncio.TimeoutError))


class WebSocket(EventTarget, EventEmitter, asyncio.Protocol):
    """A WebSocket connection: ws' ``WebSocket`` class with asyncio awaitables on top.

    As a client, ``WebSocket(url, protocols, **options)`` must be created inside a running event
    loop and starts connecting at once; ``'open'`` fires when the handshake is done. Server-side
    objects are made by :class:`~wsfast.WebSocketServer` and handed to ``'connection'``.
    """

    # Slots instead of a per-instance dict: the dict of ~30 attributes was 1.5 KiB of each
    # idle connection's ~7 KiB (tracemalloc, 200 idle server connections). "__dict__" stays
    # in the list so that code may still hang its own attributes on a connection
    # (``ws.is_alive = True``, as ws' README does); the dict is only made when one does.
    __slots__ = (
        "_state",
        "_proto",
        "_transport",
        "_subprotocol",
        "_extensions",
        "_error_emitted",
        "_close_emitted",
        "_close_timer",
        "_keepalive_timer",
        "_paused",
        "_queue_paused",
        "_write_paused",
        "_cork",
        "_reader",
        "_batch",
        "_batch_bytes",
        "_drain_waiters",
        "_drain_callbacks",
        "_queue",
        "_recv_waiter",
        "_sent",
        "_taken",
        "_held_paused",
        "_message_listeners",
        "_message_listener",
        "_keep_alive",
        "_loop",
        "_opened",
        "_closed",
        "_url",
        "_connect_task",
        "_options",
        "_log",
        "_topics",
        "__dict__",
    )

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
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        max_fragments: int = 0,
        follow_redirects: bool = False,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        skip_utf8_validation: bool = False,
        auto_pong: bool = True,
        max_pending_auto_pongs: int = DEFAULT_MAX_PENDING_AUTO_PONGS,
        ssl: ssl_module.SSLContext | bool | None = None,
        proxy: str | bool | None = None,
        proxy_ssl: ssl_module.SSLContext | None = None,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        generate_mask: Callable[[], bytes] | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        binary_type: str = "bytes",
        create_connection: Callable[..., Any] | None = None,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        logger: logging.Logger | logging.LoggerAdapter[Any] | str | None = None,
        _server_options: ConnectionOptions | None = None,
        _client_options: ClientOptions | None = None,
    ) -> None:
        EventEmitter.__init__(self)
        self._state = CONNECTING
        self._proto: Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._subprotocol = ""
        self._extensions: dict[str, Any] = {}
        self._error_emitted = False
        self._close_emitted = False
        self._close_timer: asyncio.TimerHandle | None = None
        self._keepalive_timer: list[Any] | None = None  # an entry of _Keepalive
        # Reading stops for three independent reasons: pause() (the user), a full recv() queue,
        # and a full write buffer while auto-pongs pile up; it resumes when none holds.
        self._paused = False
        self._queue_paused = False
        self._write_paused = False
        self._cork: list[Any] | None = None
        self._reader: PayloadReader | None = None
        # Frames the application sends while more received messages wait in the recv() queue
        # (a pipelined burst) are written together at the next loop turn (_flush_batch).
        self._batch: list[Any] | None = None
        self._batch_bytes = 0
        # The lists, the recv() queue and the two futures below are made on first use: most
        # connections never wait for a drain, and a handler that awaits recv() gets each
        # message straight from the receiver without the queue (an empty deque is 0.6 KiB).
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._drain_callbacks: list[Callable[[BaseException | None], Any]] | None = None
        self._queue: collections.deque[str | bytes] | None = None
        self._topics: set[str] | None = None  # made by the first subscribe (topics)
        self._recv_waiter: asyncio.Future[str | bytes] | None = None
        # What send() returns when nothing needs waiting for: a future done once and for all,
        # made by the first send. Awaiting a done C future costs no Python frame; the _Done
        # object it replaced cost one call of its __await__ (asyncio API echo, 100 messages per
        # read: 376 fewer instructions per message, bench_hotpath).
        self._sent: asyncio.Future[None] | None = None
        # The application took a message from recv() and has not asked for the next one: it
        # may still be answering it (Protocol.backlog).
        self._taken = False
        # Reading stopped while the protocol holds an error for the application (the fourth
        # reason to stop reading; see _apply).
        self._held_paused = False
        self._message_listeners = False
        self._message_listener: Callable[..., Any] | None = None
        self._keep_alive: object = None
        self._loop = asyncio.get_running_loop()
        self._opened: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._url: str | None = address
        self._connect_task: asyncio.Task[None] | None = None
        if address is None:
            self._options: ConnectionOptions = _server_options or ConnectionOptions(
                binary_type=binary_type
            )
            self._log: Logger = resolve_logger(self._options.logger, SERVER_LOGGER)
            return
        options = _client_options or ClientOptions.build(
            protocols,
            per_message_deflate=per_message_deflate,
            handshake_timeout=handshake_timeout,
            origin=origin,
            headers=headers,
            protocol_version=protocol_version,
            max_payload=max_payload,
            max_fragments=max_fragments,
            follow_redirects=follow_redirects,
            max_redirects=max_redirects,
            skip_utf8_validation=skip_utf8_validation,
            auto_pong=auto_pong,
            max_pending_auto_pongs=max_pending_auto_pongs,
            ssl=ssl,
            proxy=proxy,
            proxy_ssl=proxy_ssl,
            close_timeout=close_timeout,
            generate_mask=generate_mask,
            max_queue=max_queue,
            binary_type=binary_type,
            create_connection=create_connection,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            logger=logger,
        )
        self._options = options
        self._log = resolve_logger(options.logger, CLIENT_LOGGER)
        parse_url(address)  # raise at once for a bad URL, as ws' constructor throws
        self._connect_task = self._loop.create_task(self._connect(address, options))

    # -- state -------------------------------------------------------------------------------

    @property
    def ready_state(self) -> int:
        """CONNECTING (0), OPEN (1), CLOSING (2) or CLOSED (3)."""
        proto = self._proto
        return int(proto.state) if proto is not None else self._state

    @property
    def protocol(self) -> str:
        """The subprotocol the server selected, or ``""``."""
        return self._subprotocol

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
        return self._connect_task is None and self._url is None

    @property
    def options(self) -> ConnectionOptions:
        """The validated options of this connection."""
        return self._options

    @property
    def binary_type(self) -> str:
        """How binary messages are delivered: ``"bytes"``, ``"bytearray"`` or ``"fragments"``."""
        proto = self._proto
        return proto.receiver.binary_type if proto is not None else self._options.binary_type

    @binary_type.setter
    def binary_type(self, value: str) -> None:
        if value not in BINARY_TYPES:
            raise ValueError(f"invalid binary_type {value!r} (one of {', '.join(BINARY_TYPES)})")
        self._options = dataclasses.replace(self._options, binary_type=value)
        if self._proto is not None:
            self._proto.receiver.binary_type = value

    @property
    def logger(self) -> Logger:
        """Where this connection logs: the ``logger=`` option, or ``wsfast.client`` /
        ``wsfast.server``."""
        return self._log

    @property
    def latency(self) -> float:
        """Seconds of the last keepalive ping's round trip (0.0 before the first pong)."""
        proto = self._proto
        return proto.latency if proto is not None else 0.0

    @property
    def buffered_amount(self) -> int:
        """Bytes queued in the transport and not yet sent."""
        transport = self._transport
        if transport is None or transport.is_closing() and self.ready_state == CLOSED:
            return 0
        return transport.get_write_buffer_size() + self._batch_bytes

    @property
    def topics(self) -> set[str]:
        """The topics this connection is subscribed to (``WebSocketServer.subscribe``).

        The set is the registry's own: read it, and change it only through the server's
        ``subscribe()`` / ``unsubscribe()``; a closed connection leaves every topic.
        """
        topics = self._topics
        if topics is None:
            topics = self._topics = set()
        return topics

    @property
    def is_paused(self) -> bool:
        """Whether :meth:`pause` stopped the reading of the socket."""
        return self._paused

    @property
    def close_code(self) -> int | None:
        """None until the connection is closed; then the close code received (1005 when the
        frame had none), the code of the protocol error that failed it, or 1006 (dropped)."""
        if self.ready_state != CLOSED:
            return None
        proto = self._proto
        code = proto.close_code if proto is not None else None
        return 1006 if code is None else code

    @property
    def was_clean(self) -> bool:
        """Whether close frames were both sent and received (the DOM's ``wasClean``)."""
        proto = self._proto
        return proto is not None and proto.close_sent and proto.close_received

    @property
    def close_reason(self) -> str:
        """The close reason received."""
        proto = self._proto
        return proto.close_reason if proto is not None else ""

    @property
    def transport(self) -> asyncio.Transport | None:
        """The asyncio transport of the connection once open."""
        return self._transport

    def __repr__(self) -> str:
        side = "server" if self.is_server else "client"
        return f"<wsfast.WebSocket {side} {_STATES[self.ready_state]} {self._url or ''}>"

    # -- opening -----------------------------------------------------------------------------

    def _attach(
        self,
        transport: asyncio.Transport,
        is_server: bool,
        subprotocol: str,
        extensions: dict[str, Any],
        deflate: Any,
    ) -> None:
        """Switch ``transport`` to this connection once the handshake succeeded."""
        self._transport = transport
        self._subprotocol = subprotocol
        self._extensions = extensions
        # DEBUG on at open: every frame is traced (wsfast.log); off, the plain class runs and
        # the trace costs nothing.
        make: Callable[..., Protocol] = Protocol
        if self._log.isEnabledFor(logging.DEBUG):
            make = functools.partial(TracingProtocol, log=self._log)
        self._proto = make(
            is_server=is_server,
            options=self._options,
            deflate=deflate,
            write=self._write,
            on_message=self._on_message,
            on_ping=self._on_ping,
            on_pong=self._on_pong,
            on_error=self._on_protocol_error,
            clock=(
                _keepalive(self._loop).time if self._options.ping_interval is not None else None
            ),
        )
        self._proto.backlog = self._backlog
        # Large payloads are read in place (wsfast.read_in_place), on both sides: one allocation
        # of the payload's size per message. Collecting the reads (a new bytes each, then the
        # joined copy) allocates about twice that, and in some runs glibc then trims the heap
        # and faults it in again for every message: 1 MiB through a socketpair, recv(256 KiB)
        # and concat_unmasked 1,175 us against 159 us read in place; the event API server fell
        # to 634 msg/s at 1 MiB in a full benchmark run (1,616 for serve() in the same run).
        self._proto.receiver.on_in_place = self._read_in_place
        transport.set_protocol(self)
        if self._proto.pending:  # the keepalive timer
            self._apply(self._proto)
        opened = self._opened
        if opened is not None and not opened.done():
            opened.set_result(None)
        self._update_message_listeners()

    def _start(self, head: bytes) -> None:
        """Feed bytes that arrived with the handshake, then read the socket."""
        if head:
            self.data_received(head)
        if self.ready_state != CLOSED and not self._paused:
            self._resume_reading()

    async def _connect(self, address: str, options: ClientOptions) -> None:
        """Run the client's opening handshake; every failure becomes 'error' then 'close'."""
        try:
            upgraded = await open_connection(address, options, self, self._redirected)
        except UnexpectedResponse:
            # An 'unexpected-response' listener took the answer: no 'error' is owed.
            self._handshake_failed(None)
            return
        except (
            OSError,
            WebSocketError,
            ValueError,
            asyncio.TimeoutError,
            # A socks*:// proxy without python-socks; wss:// through https:// on Python 3.10.
            ImportError,
            NotImplementedError,
        ) as exc:
            self._handshake_failed(exc)
            return
        if self._state != CONNECTING:  # closed by a listener meanwhile
            upgraded.transport.abort()
            return
        self._url = upgraded.url
        self._attach(
            upgraded.transport, False, upgraded.protocol, upgraded.extensions, upgraded.deflate
        )
        self.emit("upgrade", upgraded.response)
        self.emit("open")
        self._start(upgraded.head)

    def _redirected(self, url: str) -> None:
        self._url = url

    def _handshake_failed(self, exc: BaseException | None) -> None:
        """The opening handshake did not complete: emit 'error' (if owed) then 'close' (1006)."""
        if self._state != CONNECTING:
            return
        self._state = CLOSING
        task = self._connect_task
        if task is not None and not task.done():
            task.cancel()  # close()/terminate() before 'open' ends the attempt (ws aborts it)
        opened = self._opened
        if opened is None:
            opened = self._opened = self._loop.create_future()
        if not opened.done():
            failure = exc if exc is not None else HandshakeError("Unexpected server response")
            opened.set_exception(failure)
            opened.exception()  # retrieved: recv()/await report it themselves
        if exc is not None:
            self._emit_error(exc)
        self._finish()

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Feed the socket's bytes to the protocol (asyncio callback)."""
        proto = self._proto
        assert proto is not None  # set_protocol happens after _attach
        # Frames that listeners send while this read is parsed are collected and written once
        # at its end: one write() per read instead of one per message (32 B pipelined echo
        # 78.8k -> 101.5k msg/s in the benchmark's pinned runs).
        if self._cork is not None:
            # Re-entered (resume() from a listener): the outer call owns the batch and its
            # order.
            self._feed(proto, data)
            return
        cork: list[Any] = []
        self._cork = cork
        try:
            self._feed(proto, data)
        finally:
            self._cork = None
            if cork:
                self._write_all(cork)
            if proto.pending:
                self._apply(proto)
            if proto.pending_auto_pongs:
                self._check_auto_pongs(proto)

    def _feed(self, proto: Protocol, data: bytes) -> None:
        try:
            proto.receive_data(data)
        except Exception as exc:  # a bug must not leave a half-parsed connection open
            self._parser_failed(proto, exc)

    def _parser_failed(self, proto: Protocol, exc: Exception) -> None:
        self._log.exception("unexpected error while parsing frames")
        proto.fail(WebSocketError(f"internal error: {exc!r}", "WS_ERR_INTERNAL", 1011))

    # -- large payloads, read in place ---------------------------------------------------------

    def _read_in_place(self) -> None:
        """The receiver started a large payload (``receiver.on_in_place``): the socket reads the
        rest of it straight into the message's buffer, through a ``BufferedProtocol``."""
        reader = self._reader
        if reader is None:
            proto = self._proto
            assert proto is not None
            reader = self._reader = PayloadReader(
                self, proto.payload_buffer, self._payload_read, self._read_usual_way
            )
        self._switch_protocol(reader)

    def _read_usual_way(self, data: bytes) -> None:
        """A read the ``PayloadReader`` took when nothing was left to read in place."""
        self._switch_protocol(self)
        self.data_received(data)

    def _switch_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        transport = self._transport
        if transport is not None:
            switch_protocol(transport, protocol)

    def _payload_read(self, count: int) -> None:
        """``count`` bytes were read in place (``PayloadReader``): ``data_received`` for them."""
        proto = self._proto
        assert proto is not None
        # No cork: a read in place completes one message at most, so listeners' answers are
        # written as they come, which is what a cork of one frame would do.
        try:
            proto.payload_written(count)
        except Exception as exc:
            self._parser_failed(proto, exc)
        if proto.pending:
            self._apply(proto)
        if proto.payload_buffer() is None:
            self._switch_protocol(self)

    def _check_auto_pongs(self, proto: Protocol) -> None:
        transport = self._transport
        assert transport is not None
        if transport.get_write_buffer_size() == 0:
            proto.auto_pongs_flushed()
        elif self._write_paused:
            # A peer that floods pings without reading our pongs would grow the write buffer
            # without bound when the cap is off: stop reading until it drains.
            self._pause_reading()

    def _write(self, data: Any) -> None:
        cork = self._cork
        if cork is not None:
            cork.append(data)
            return
        batch = self._batch
        if batch is not None:
            size = self._batch_bytes + len(data)
            if size < _BATCH_LIMIT:
                batch.append(data)
                self._batch_bytes = size
            else:
                self._batch_full(batch, data, size)
            return
        transport = self._transport
        assert transport is not None
        if transport.is_closing():
            return
        if self._queue:
            # More received messages wait for the application (asyncio API, pipelining
            # peer): its answers to them come in this same task step. Write them together
            # at the next loop turn, one write() for the burst instead of one per message, as
            # data_received does for listeners. A lone answer is written at once.
            self._batch = [data]
            self._batch_bytes = len(data)
            self._loop.call_soon(self._flush_batch)
            return
        transport.write(data)
        if type(data) is MaskedFrame:
            self._written_masked(transport, data)

    def _written_masked(self, transport: asyncio.Transport, data: MaskedFrame) -> None:
        # Written through and not held by the transport: the sender builds the next large
        # masked frame in it (Sender.reuse).
        proto = self._proto
        if proto is not None and transport.get_write_buffer_size() == 0:
            proto.sender.reuse(data)

    def _batch_full(self, batch: list[Any], data: Any, size: int) -> None:
        """``data`` takes the batch to its limit (``size`` bytes with it) or past it."""
        if size > _BATCH_LIMIT and batch and len(data) < _BATCH_LIMIT:
            # Write the batch (one write of at most the limit) and start the next one with
            # the frame.
            self._batch = None
            self._write_all(batch)
            self._batch = [data]
            self._batch_bytes = len(data)
            return
        batch.append(data)
        self._batch_bytes = size
        self._flush_batch()

    def _flush_batch(self) -> None:
        batch = self._batch
        if batch is not None:
            self._batch = None
            self._batch_bytes = 0
            if batch:
                self._write_all(batch)

    def _write_all(self, chunks: list[Any]) -> None:
        if self._batch is not None:
            self._flush_batch()  # frames batched earlier go first
        transport = self._transport
        assert transport is not None
        if transport.is_closing():
            return
        if len(chunks) == 1:
            only = chunks[0]
            transport.write(only)
            if type(only) is MaskedFrame:
                self._written_masked(transport, only)
            return
        if sum(map(len, chunks)) <= _BATCH_LIMIT:
            transport.write(b"".join(chunks))
            return
        for chunk in coalesce(chunks, _BATCH_LIMIT):
            if transport.is_closing():
                # A write failed (reset): the transport is closed. Writing on would only make
                # asyncio warn "socket.send() raised exception." for each chunk left.
                return
            transport.write(chunk)
            if type(chunk) is MaskedFrame:
                self._written_masked(transport, chunk)

    def _apply(self, proto: Protocol) -> None:
        """Do what the protocol asked of the transport: abort, arm the timer, half-close."""
        proto.pending = False
        transport = self._transport
        assert transport is not None
        if proto.held is not None:
            # An error is held for the application's answers: read nothing more meanwhile.
            self._held_paused = True
            self._pause_reading()
        elif self._held_paused:
            # Released: read again, to see the peer's close frame or its EOF.
            self._held_paused = False
            self._resume_reading()
        if proto.abort_due:
            proto.abort_due = False
            transport.abort()
            return
        wake = proto.keepalive_wake
        if wake is not None:
            proto.keepalive_wake = None
            if self._keepalive_timer is not None:
                _cancel_keepalive(self._loop, self._keepalive_timer)
            self._keepalive_timer = _keepalive(self._loop).add(self, wake)
        seconds = proto.timer
        if seconds is not None:
            proto.timer = None
            if self._close_timer is not None:
                self._close_timer.cancel()
            self._close_timer = self._loop.call_later(seconds, self._expire)
        if proto.eof_due:
            proto.eof_due = False
            cork = self._cork
            if cork:  # what this read produced goes out before the EOF
                self._write_all(cork)
                cork.clear()
            elif self._batch is not None:
                self._flush_batch()
            if transport.is_closing():
                return
            if transport.can_write_eof():
                try:
                    transport.write_eof()
                except OSError:
                    # The peer is already gone (ENOTCONN): nothing is left to flush.
                    transport.abort()
            else:
                transport.close()

    def _tick(self) -> None:
        self._keepalive_timer = None
        proto = self._proto
        if proto is not None:
            proto.tick()
            if proto.pending:
                self._apply(proto)

    def _expire(self) -> None:
        self._close_timer = None
        proto = self._proto
        if proto is not None:
            proto.expire()
            self._apply(proto)

    def eof_received(self) -> bool:
        """The peer half-closed: let asyncio close the transport (ws' ``socketOnEnd``)."""
        proto = self._proto
        if proto is not None:
            proto.receive_eof()
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
        if not self._queue_paused and not self._paused and self._transport is not None:
            # Reading stopped while pongs could not be written (see _check_auto_pongs).
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
            waiter = self._recv_waiter
            if waiter is not None and not waiter.done():
                # A recv() waiting now would never get a message: the listener takes them all.
                self._recv_waiter = None
                waiter.set_exception(
                    RuntimeError(
                        "a 'message' listener was attached while recv() was waiting: the "
                        "listener receives every message"
                    )
                )
            # Messages queued for recv() before the listener came go to it first, in order.
            queue = self._queue
            while queue and self._message_listeners:
                data = queue.popleft()
                self.emit("message", data, not isinstance(data, str))
            if self._queue_paused:
                self._unpause_queue()

    def _backlog(self) -> bool:
        """Whether the application still has messages to take or answer (Protocol.backlog)."""
        return not self._message_listeners and bool(self._queue or self._taken)

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
            self._taken = True
            waiter.set_result(data)
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = collections.deque()
        queue.append(data)
        if len(queue) >= self._options.max_queue and not self._queue_paused:
            self._queue_paused = True
            self._pause_reading()
            # Stop parsing as well: the rest of this read stays raw bytes in the receiver.
            # Pausing the transport alone let one read (up to 256 KiB, thousands of small
            # frames) land in the queue past max_queue.
            proto = self._proto
            assert proto is not None
            proto.receiver.paused = True

    def _unpause_queue(self) -> None:
        """The recv() queue has room again: parse what it held back, then read the socket."""
        self._queue_paused = False
        proto = self._proto
        if proto is not None and not self._paused:
            receiver = proto.receiver
            receiver.paused = False
            if receiver.has_buffered:
                self.data_received(b"")
        self._resume_reading()

    def _on_ping(self, data: bytes) -> None:
        self.emit("ping", data)

    def _on_pong(self, data: bytes) -> None:
        self.emit("pong", data)

    def _on_protocol_error(self, exc: WebSocketError) -> None:
        self._emit_error(exc)

    def _emit_error(self, exc: BaseException) -> None:
        if self._error_emitted:
            return
        self._error_emitted = True
        if self.listener_count("error"):
            self.emit("error", exc)
        elif _peer_caused(exc):
            # A remote peer must not be able to write ERROR lines into the log: what it broke
            # is reported to the application (ConnectionClosed.__cause__), not logged loudly.
            # On a server the "connection closed" INFO line names the error: this is DEBUG.
            proto = self._proto
            if proto is not None and proto.is_server:
                self._log.debug("%r: %s", self, exc)
            else:
                self._log.info("%r: %s", self, exc)
        else:
            self.emit("error", exc)  # a bug: EventEmitter logs it at ERROR

    # -- flow control --------------------------------------------------------------------------

    def _pause_reading(self) -> None:
        transport = self._transport
        if transport is not None and transport.is_reading():
            transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._paused or self._queue_paused or self.ready_state == CLOSED:
            return
        transport = self._transport
        if transport is not None and not transport.is_reading() and not transport.is_closing():
            transport.resume_reading()

    def pause(self) -> None:
        """Stop reading from the socket and stop emitting messages (ws' ``pause``)."""
        proto = self._proto
        if proto is None or proto.state is STATE_CLOSED:
            return
        self._paused = True
        proto.receiver.paused = True
        self._pause_reading()

    def resume(self) -> None:
        """Undo :meth:`pause`: parse what was buffered, then read the socket again."""
        proto = self._proto
        if proto is None or proto.state is STATE_CLOSED:
            return
        self._paused = False
        receiver = proto.receiver
        receiver.paused = self._queue_paused
        if receiver.has_buffered and not receiver.paused:
            self.data_received(b"")
        self._resume_reading()

    def _release_writers(self, exc: BaseException | None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, None
        if waiters is not None:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        callbacks, self._drain_callbacks = self._drain_callbacks, None
        if callbacks is not None:
            for callback in callbacks:
                self._call_back(callback, exc)

    def _call_back(self, callback: Callable[[BaseException | None], Any], exc: Any) -> None:
        def run() -> None:
            try:
                callback(exc)
            except Exception:
                self._log.exception("a send callback raised")

        self._loop.call_soon(run)

    def _written(self, callback: Callable[[BaseException | None], Any] | None) -> Awaitable[None]:
        if not self._write_paused:
            if callback is not None:
                self._call_back(callback, None)
            return self._sent or self._make_sent()
        if callback is not None:
            if self._drain_callbacks is None:
                self._drain_callbacks = []
            self._drain_callbacks.append(callback)
        waiter: asyncio.Future[None] = self._loop.create_future()
        if self._drain_waiters is None:
            self._drain_waiters = []
        self._drain_waiters.append(waiter)
        return waiter

    def _not_open(self, callback: Callable[[BaseException | None], Any] | None) -> Awaitable[None]:
        state = self.ready_state
        if state == CONNECTING:
            raise WebSocketError("WebSocket is not open: readyState 0 (CONNECTING)", None)
        if callback is not None:
            self._call_back(
                callback,
                WebSocketError(f"WebSocket is not open: readyState {state} ({_STATES[state]})"),
            )
        return _Raise(self._connection_closed())

    def _connection_closed(self) -> ConnectionClosed:
        """The exception for an API call on a closing or closed connection; its cause is the
        protocol error that failed the connection, if one did."""
        proto = self._proto
        code = proto.close_code if proto is not None else None
        exc = ConnectionClosed(1006 if code is None else code, self.close_reason)
        if proto is not None and proto.error is not None:
            exc.__cause__ = proto.error
        return exc

    # -- sending -------------------------------------------------------------------------------

    def send(
        self,
        data: str | bytes | bytearray | memoryview,
        binary: bool | None = None,
        compress: bool | None = None,
        fin: bool = True,
        mask: bool | None = None,
        callback: Callable[[BaseException | None], Any] | None = None,
    ) -> Awaitable[None]:
        """Send a message (or a fragment with ``fin=False``) at once.

        A ``str`` is sent as text and anything else as binary unless ``binary`` says otherwise.
        Returns an awaitable that resolves once the frame is handed to the transport under its
        high-water mark; awaiting it after the connection closed raises ConnectionClosed.
        """
        proto = self._proto
        if proto is None or proto.state is not STATE_OPEN:
            return self._not_open(callback)
        proto.send(data, binary, fin, compress, mask)
        if self._write_paused or callback is not None:
            return self._written(callback)
        return self._sent or self._make_sent()

    def _make_sent(self) -> asyncio.Future[None]:
        """The done future that send(), ping() and pong() return when nothing needs waiting
        for (``_sent``), made on first use."""
        sent = self._sent = self._loop.create_future()
        sent.set_result(None)
        return sent

    def send_prepared(
        self, message: PreparedMessage, opened: list[WebSocket] | None = None
    ) -> bool:
        """Write a message framed once for many receivers (:func:`wsfast.broadcast` and
        ``publish`` call this); False when nothing was written: the connection is not OPEN or
        is in the middle of a fragmented message.

        What this writes joins the connection's batch (see ``_write``), written by
        :meth:`flush` at the next loop turn, or at once past 64 KiB: a burst of publishes
        costs one ``transport.write`` (one ``send()``) per connection, not one per message
        (uWebSockets' corking), and a single frame is still written as the shared bytes
        object. Frames that a listener of this connection sends while its read is parsed go
        with the read's own batch, in order. With ``opened``, a connection whose batch this
        call opened is appended to it and the caller schedules :meth:`flush` (one loop
        callback for a whole broadcast instead of one per connection).
        """
        proto = self._proto
        if proto is None:
            return False
        if self._cork is None and self._batch is None:
            self._batch = []
            self._batch_bytes = 0
            if opened is None:
                self._loop.call_soon(self._flush_batch)
            else:
                opened.append(self)
        return proto.send_prepared(message)

    def flush(self) -> None:
        """Write what :meth:`send_prepared` batched (a no-op when nothing is batched)."""
        self._flush_batch()

    def ping(
        self,
        data: str | bytes = b"",
        mask: bool | None = None,
        callback: Callable[[BaseException | None], Any] | None = None,
    ) -> Awaitable[None]:
        """Send a ping (payload up to 125 bytes)."""
        return self._send_control(False, data, mask, callback)

    def pong(
        self,
        data: str | bytes = b"",
        mask: bool | None = None,
        callback: Callable[[BaseException | None], Any] | None = None,
    ) -> Awaitable[None]:
        """Send an unsolicited pong (payload up to 125 bytes)."""
        return self._send_control(True, data, mask, callback)

    def _send_control(
        self,
        pong: bool,
        data: str | bytes,
        mask: bool | None,
        callback: Callable[[BaseException | None], Any] | None,
    ) -> Awaitable[None]:
        proto = self._proto
        if proto is None or proto.state is not STATE_OPEN:
            return self._not_open(callback)
        if pong:
            proto.pong(data, mask)
        else:
            proto.ping(data, mask)
        return self._written(callback)

    # -- closing -------------------------------------------------------------------------------

    def close(self, code: int | None = None, reason: str | bytes = "") -> Awaitable[None]:
        """Start the closing handshake (ws' ``close``); returns an awaitable of the close.

        Before the connection is open this aborts the handshake. ``code`` must be a valid close
        code and ``reason`` at most 123 bytes of UTF-8.
        """
        proto = self._proto
        if proto is None:
            if self._state == CONNECTING:
                self._handshake_failed(
                    WebSocketError("WebSocket was closed before the connection was established")
                )
            return _WaitClosed(self)
        proto.close(code, reason)
        if proto.pending:
            self._apply(proto)
        return _WaitClosed(self)

    def terminate(self) -> None:
        """Destroy the connection at once, without a closing handshake."""
        proto = self._proto
        if proto is None:
            if self._state == CONNECTING:
                self._handshake_failed(
                    WebSocketError("WebSocket was closed before the connection was established")
                )
            return
        proto.terminate()
        if proto.pending:
            self._apply(proto)

    def _finish(self) -> None:
        """The transport is gone: release every waiter and emit 'close' once."""
        if self._close_emitted:
            return
        self._close_emitted = True
        self._state = CLOSED
        proto = self._proto
        if proto is not None:
            proto.connection_lost()
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if self._keepalive_timer is not None:
            _cancel_keepalive(self._loop, self._keepalive_timer)
            self._keepalive_timer = None
        self._release_writers(WebSocketError("The socket was closed while data was being sent"))
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._connection_closed())
            self._recv_waiter = None
        closed = self._closed
        if closed is not None and not closed.done():
            closed.set_result(None)
        self._keep_alive = None
        self._reader = None  # it holds this connection's methods
        code = self.close_code
        if proto is not None and proto.is_server:
            # One INFO line per connection at its end, whatever ended it (DESIGN: a peer
            # cannot fill the log).
            reason = self.close_reason
            error = proto.error
            self._log.info(
                "connection closed: %s%s%s",
                1006 if code is None else code,
                f" {reason!r}" if reason else "",
                f" ({error})" if error is not None else "",
            )
        self.emit("close", 1006 if code is None else code, self.close_reason)
        if proto is not None:
            proto.detach()
        # No event follows 'close': drop the listeners. The usual one names its connection
        # (``ws.on("message", lambda data, b: ws.send(data))``), a cycle through
        # ``self._events`` that would keep the connection, its transport and its buffers
        # alive until the next full collection.
        self._events.clear()
        self._message_listener = None
        self._message_listeners = False

    async def wait_closed(self) -> None:
        """Wait until the connection is closed and 'close' was emitted."""
        closed = self._closed
        if closed is None:
            if self._close_emitted:
                return
            closed = self._closed = self._loop.create_future()
        await asyncio.shield(closed)

    # -- asyncio API -----------------------------------------------------------------------------

    async def wait_open(self) -> WebSocket:
        """Wait for the opening handshake; raises its error if it failed."""
        opened = self._opened
        if opened is None:
            if self._proto is not None:
                return self  # open already (or opened, then closed: as a resolved future)
            opened = self._opened = self._loop.create_future()
        await asyncio.shield(opened)
        return self

    def __await__(self) -> Generator[Any, None, WebSocket]:
        return self.wait_open().__await__()

    async def __aenter__(self) -> WebSocket:
        return await self.wait_open()

    async def __aexit__(self, *exc_info: Any) -> None:
        state = self.ready_state
        if state != CLOSED:
            self.close(1000) if state == OPEN else self.close()
            await self.wait_closed()

    async def recv(self, *, _iterating: bool = False) -> str | bytes:
        """The next message: ``str`` for text, ``bytes`` for binary.

        With ``binary_type="bytearray"`` binary messages are ``bytearray`` (which type checkers
        accept as ``bytes``); with ``"fragments"`` they are a ``list`` of the frames' payloads.

        Raises ConnectionClosed once the connection is closed (its ``__cause__`` is the protocol
        error that failed it, if any), and RuntimeError while a ``'message'`` listener takes
        the messages: the two ways of receiving do not mix.
        """
        # One coroutine serves recv() and async for (``_iterating``: a normal close ends the
        # iteration): an __anext__ coroutine around recv() was a second frame held by every
        # idle connection of a serve() handler (0.2 KiB), and a second call per message.
        try:
            queue = self._queue
            if queue:
                data = queue.popleft()
                self._taken = True
                # Parsing resumes at a quarter of max_queue (websockets' low-water mark): each
                # resume then refills 12 of 16, not 8 (bench_hotpath, asyncio API, 100
                # messages per read: 366 fewer instructions per message).
                if self._queue_paused and len(queue) <= self._options.max_queue >> 2:
                    self._unpause_queue()
                return data
            # The application asks for more than arrived: it is done with what it took.
            self._taken = False
            if self._message_listeners:
                raise RuntimeError(
                    "recv() cannot be used while a 'message' listener is attached: the listener "
                    "receives every message"
                )
            proto = self._proto
            if proto is None:
                if self._state == CONNECTING:
                    await self.wait_open()
                    return await self.recv(_iterating=_iterating)
                raise self._connection_closed()
            if proto.held is not None:
                # Every message before the protocol error was taken: fail the connection now.
                proto.release()
                if proto.pending:
                    self._apply(proto)
            if proto.state is STATE_CLOSED or proto.receiver.state == DONE:
                raise self._connection_closed()
            if self._recv_waiter is not None:
                raise RuntimeError("another coroutine is already waiting in recv()")
            waiter: asyncio.Future[str | bytes] = self._loop.create_future()
            self._recv_waiter = waiter
            try:
                return await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    # The message arrived in the same loop iteration as the cancellation (a
                    # caller's timeout): keep it for the next recv() instead of dropping it.
                    if self._queue is None:
                        self._queue = collections.deque()
                    self._queue.appendleft(waiter.result())
                raise
            finally:
                if self._recv_waiter is waiter:
                    self._recv_waiter = None
                # The waiter's exception (ConnectionClosed) holds this frame in its traceback:
                # without the del, frame -> waiter -> exception -> frame is a cycle that keeps
                # the connection alive until the next full collection.
                del waiter
        except ConnectionClosed as exc:
            if _iterating and exc.code in (1000, 1001, 1005):
                raise StopAsyncIteration from None
            raise

    def __aiter__(self) -> WebSocket:
        return self

    def __anext__(self) -> Coroutine[Any, Any, str | bytes]:
        return self.recv(_iterating=True)


def accept(
    transport: asyncio.Transport,
    protocol: str,
    extensions: dict[str, Any],
    deflate: Any,
    options: ConnectionOptions,
    keep_alive: object = None,
) -> WebSocket:
    """A server-side WebSocket, OPEN, attached to ``transport`` once the 101 was written.

    Reading stays paused until :func:`start`. ``keep_alive`` is held as long as the connection
    (a ``StreamWriter`` whose garbage collection would close the transport).
    """
    ws = WebSocket(None, _server_options=options)
    ws._keep_alive = keep_alive
    ws._attach(transport, True, protocol, extensions, deflate)
    return ws


def start(ws: WebSocket, head: bytes) -> None:
    """Feed the bytes that followed the request head, then read the socket (unless paused)."""
    ws._start(head)


class _WaitClosed:
    """What ``close()`` returns: awaiting it waits for the 'close' event."""

    __slots__ = ("ws",)

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    def __await__(self) -> Generator[Any, None, None]:
        return self.ws.wait_closed().__await__()


class Connect:
    """What :func:`connect` returns: ``await`` it or use it with ``async with``."""

    def __init__(self, url: str, options: Mapping[str, Any]) -> None:
        self._url = url
        # Validated here, at the call, not only when awaited: a bad option raises at once.
        # The asyncio API has keepalive on by default, as websockets (ws' WebSocket has none),
        # and reads the proxy from the environment by default, as websockets >= 14 (ws never
        # does; WebSocket keeps its proxy=None).
        options = {
            "ping_interval": DEFAULT_PING_INTERVAL,
            "ping_timeout": DEFAULT_PING_TIMEOUT,
            "proxy": True,
            **options,
        }
        self._options = ClientOptions.build(**options)
        parse_url(url)
        self._ws: WebSocket | None = None

    def _create(self) -> WebSocket:
        if self._ws is None:
            self._ws = WebSocket(self._url, _client_options=self._options)
        return self._ws

    def __await__(self) -> Generator[Any, None, WebSocket]:
        return self._create().wait_open().__await__()

    async def __aenter__(self) -> WebSocket:
        return await self._create().wait_open()

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self._ws is not None
        await self._ws.__aexit__(*exc_info)


def connect(url: str, **options: Unpack[ClientOptionsDict]) -> Connect:
    """Open a client connection: ``ws = await connect(url)`` or ``async with connect(url)``.

    The options are :class:`WebSocket`'s, with the defaults of websockets' ``connect`` where
    the two differ: keepalive on (``ping_interval=20.0``, ``ping_timeout=20.0``) and
    ``proxy=True``: the proxy comes from the environment (``HTTPS_PROXY`` for ``wss://``,
    ``HTTP_PROXY`` for ``ws://``, ``ALL_PROXY``, ``NO_PROXY``; never for localhost or a loopback
    address), as websockets >= 14, requests and curl do, so code moved from websockets behaves
    the same behind a corporate proxy. ``proxy=None`` connects directly; a URL string
    (``http://``, ``https://``, ``socks4://``, ``socks4a://``, ``socks5://``, ``socks5h://``,
    with ``user:password@``) picks the proxy.
    """
    return Connect(url, options)

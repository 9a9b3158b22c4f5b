"""The WebSocket server (the twin of ws' ``lib/websocket-server.js``) on asyncio.

In port mode the server owns a listening socket and reads each request head itself; with
``no_server=True`` another asyncio server hands upgrade requests to
:meth:`WebSocketServer.handle_upgrade`. What to answer is decided sans-I/O by
:class:`wsfast.handshake.ServerHandshake` (the request in ws' order, then ``verify_client``'s
result, ``handle_protocols`` and the 101); this module only awaits ``verify_client``, writes the
answer, runs the handshake timer and hands the transport to the connection. It also counts
connections and handshakes in flight for ``max_connections`` and ``max_handshakes`` (the caps
for the whole process, docs/limits.md) and refuses past them with a 503 before reading.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import ssl as ssl_module
import stat
from collections.abc import Callable, Coroutine, Generator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from . import handshake
from .backplane import Backplane, RedisBackplane
from .constants import (
    DEFAULT_BACKLOG,
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_BROADCAST_BUFFER,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HANDSHAKES,
    DEFAULT_MAX_PAYLOAD,
    DEFAULT_MAX_PENDING_AUTO_PONGS,
    DEFAULT_MAX_QUEUE,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_SERVER_HANDSHAKE_TIMEOUT,
)
from .event_emitter import EventEmitter
from .exceptions import ConnectionClosed, HandshakeError
from .handshake import Refusal, Request, RequestError, ServerHandshake, Upgrade
from .log import SERVER_LOGGER, Logger, format_peer, resolve_logger
from .options import ServerOptions, deflate_options
from .sender import PreparedMessage
from .topics import Delivery, FanoutStats, Topics
from .websocket import WebSocket, accept, start

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .options import ServerOptionsDict

__all__ = ["WebSocketServer", "serve", "Serve", "VerifyInfo", "ServerStats"]

logger = logging.getLogger(SERVER_LOGGER)

RUNNING, CLOSING_SERVER, CLOSED_SERVER = 0, 1, 2

#: The answer when ``max_connections`` or ``max_handshakes`` is reached. No ``Retry-After``:
#: the server cannot know when a slot frees (a handshake slot within ``handshake_timeout``, a
#: connection slot at the application's pace), and one fixed figure sent to every refused
#: client would bring them back together; clients retry with their own jittered backoff.
_AT_CAPACITY_RESPONSE = handshake.SERVICE_UNAVAILABLE.response()


class ServerStats(NamedTuple):
    """A snapshot of a server's counters (:attr:`WebSocketServer.stats`)."""

    connections: int
    """Open WebSocket connections (101 written, ``'close'`` not yet emitted)."""
    handshakes_in_flight: int
    """Accepted connections (or upgrades handed to ``handle_upgrade``) that are neither open
    nor gone yet: reading the request head, awaiting ``verify_client``, or refused and not yet
    closed."""
    opened: int
    """Connections that became open since the server started (101 responses written)."""
    refused_503: int
    """Connections answered ``503 Service Unavailable``: a cap was reached
    (``max_connections``, ``max_handshakes``) or the server was closing."""


class _Slots:
    """A server's counters and its caps: what :attr:`WebSocketServer.stats` reports and what
    ``max_connections`` and ``max_handshakes`` are checked against."""

    __slots__ = (
        "max_connections",
        "max_handshakes",
        "handshakes",
        "connections",
        "opened",
        "refused_503",
        "log",
    )

    def __init__(self, max_connections: int | None, max_handshakes: int | None) -> None:
        self.max_connections = max_connections
        self.max_handshakes = max_handshakes
        self.handshakes = 0
        self.connections = 0
        self.opened = 0
        self.refused_503 = 0
        self.log: Logger = logger

    def full(self) -> bool:
        """Whether one more connection would exceed ``max_handshakes`` or ``max_connections``
        (which counts handshakes in flight too: each holds a socket)."""
        cap = self.max_handshakes
        if cap is not None and self.handshakes >= cap:
            return True
        cap = self.max_connections
        return cap is not None and self.handshakes + self.connections >= cap

    def refuse(self, transport: asyncio.Transport) -> None:
        """Answer 503 at once and close, without reading the request."""
        # DEBUG at most: the whole point is to stay quiet and cheap under a flood.
        self.refused_503 += 1
        self.log.debug(
            "at capacity (%d open, %d in handshake): 503 to %s",
            self.connections,
            self.handshakes,
            transport.get_extra_info("peername"),
        )
        if not transport.is_closing():
            transport.write(_AT_CAPACITY_RESPONSE)
            transport.close()

    def handshake_done(self, task: asyncio.Task[None]) -> None:
        """An upgrade handed to ``handle_upgrade`` was answered (its verify task ended)."""
        self.handshakes -= 1


class VerifyInfo:
    """What ``verify_client`` receives (ws' ``info``): ``origin``, ``secure``, ``request``."""

    __slots__ = ("origin", "secure", "request", "req")

    def __init__(self, origin: str | None, secure: bool, request: Request) -> None:
        self.origin = origin
        self.secure = secure
        self.request = request
        self.req = request

    def __repr__(self) -> str:
        return f"VerifyInfo(origin={self.origin!r}, secure={self.secure!r})"


class _ServerConnection(asyncio.Protocol):
    """A fresh connection in port mode until its handshake ends: reads the request head
    through :class:`ServerHandshake` and drops the connection when ``handshake_timeout``
    passes first (the timer runs until the 101 is written or the connection is gone)."""

    __slots__ = (
        "server",
        "slots",
        "handshake",
        "transport",
        "timer",
        "done",
        "verifying",
        "counted",
    )

    def __init__(self, server: WebSocketServer, slots: _Slots) -> None:
        self.server = server
        self.slots = slots
        self.handshake = ServerHandshake(server.options)
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.done = False
        self.verifying: asyncio.Task[None] | None = None
        # Whether this connection holds one of the server's handshake slots.
        self.counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        slots = self.slots
        if slots.full():
            # Refused before a byte is read: a flood of silent clients holds no more than
            # max_handshakes slots, and each refused one is closed in this loop iteration.
            self.done = True
            slots.refuse(self.transport)
            return
        self.counted = True
        slots.handshakes += 1
        timeout = self.server.options.handshake_timeout
        if timeout:
            self.timer = asyncio.get_running_loop().call_later(timeout, self._timed_out)

    def _timed_out(self) -> None:
        self.timer = None
        if self.transport is not None:
            self.server.logger.debug(
                "opening handshake timed out: %s", self.transport.get_extra_info("peername")
            )
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if self.done:
            # Bytes behind the head (reading is paused from now on): the connection's.
            self.handshake.reader.feed(data)
            return
        outcome = self.handshake.receive_data(
            data,
            transport.get_extra_info("peername"),
            transport.get_extra_info("sslcontext") is not None,
        )
        if outcome is None:
            return
        self.done = True
        if isinstance(outcome, Refusal):
            self.server._write_refusal(transport, outcome, None)
            return
        transport.pause_reading()
        self.verifying = self.server._upgrade(
            outcome, transport, self, self.server._emit_connection, True, None
        )

    def finish(self) -> bytes:
        """The handshake is over (101 written, or a listener owns the answer): stop the timer
        and hand over the bytes that followed the head."""
        self._cancel_timer()
        return self.handshake.take_rest()

    def release(self) -> None:
        """Give back the handshake slot: the connection is open, or gone."""
        if self.counted:
            self.counted = False
            self.slots.handshakes -= 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()
        self._cancel_timer()
        if self.verifying is not None:
            # Nobody is left to answer: a verify_client still running is abandoned.
            self.verifying.cancel()
            self.verifying = None

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class WebSocketServer(EventEmitter):
    """A WebSocket server: ws' ``WebSocketServer`` with the same options in snake_case.

    In port mode it must be created inside a running event loop; it starts listening at once
    and emits ``'listening'`` once bound (``await server.wait_listening()`` waits for that).
    The options are validated once, here, into :attr:`options` (a
    :class:`~wsfast.options.ServerOptions`).
    """

    def __init__(
        self,
        port: int | None = None,
        host: str | None = None,
        *,
        backlog: int = DEFAULT_BACKLOG,
        per_message_deflate: bool | Mapping[str, Any] = False,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        max_fragments: int = 0,
        verify_client: Callable[..., Any] | None = None,
        handle_protocols: Callable[..., Any] | None = None,
        client_tracking: bool = True,
        path: str | None = None,
        no_server: bool = False,
        ssl: ssl_module.SSLContext | None = None,
        skip_utf8_validation: bool = False,
        auto_pong: bool = True,
        max_pending_auto_pongs: int = DEFAULT_MAX_PENDING_AUTO_PONGS,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        handshake_timeout: float | None = DEFAULT_SERVER_HANDSHAKE_TIMEOUT,
        max_head_size: int = handshake.MAX_HEAD_SIZE,
        max_headers: int = handshake.MAX_HEADERS,
        max_queue: int = DEFAULT_MAX_QUEUE,
        binary_type: str = "bytes",
        generate_mask: Callable[[], bytes] | None = None,
        reuse_port: bool | None = None,
        unix_path: str | None = None,
        sock: Any = None,
        max_connections: int | None = DEFAULT_MAX_CONNECTIONS,
        max_handshakes: int | None = DEFAULT_MAX_HANDSHAKES,
        max_broadcast_buffer: int = DEFAULT_MAX_BROADCAST_BUFFER,
        backplane: str | Backplane | None = None,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        logger: logging.Logger | logging.LoggerAdapter[Any] | str | None = None,
        callback: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__()
        self.options = ServerOptions(
            port=port,
            host=host,
            backlog=backlog,
            per_message_deflate=deflate_options(per_message_deflate),
            max_payload=max_payload,
            max_fragments=max_fragments,
            verify_client=verify_client,
            handle_protocols=handle_protocols,
            client_tracking=client_tracking,
            path=path,
            no_server=no_server,
            ssl=ssl,
            skip_utf8_validation=skip_utf8_validation,
            auto_pong=auto_pong,
            max_pending_auto_pongs=max_pending_auto_pongs,
            close_timeout=close_timeout,
            handshake_timeout=handshake_timeout,
            max_head_size=max_head_size,
            max_headers=max_headers,
            max_queue=max_queue,
            binary_type=binary_type,
            generate_mask=generate_mask,
            reuse_port=reuse_port,
            unix_path=unix_path,
            sock=sock,
            max_connections=max_connections,
            max_handshakes=max_handshakes,
            max_broadcast_buffer=max_broadcast_buffer,
            backplane=backplane,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            logger=logger,
        )
        """The validated options (a frozen :class:`~wsfast.options.ServerOptions`)."""
        self._connection_options = self.options.connection()
        self._verify_arity = handshake.arity(verify_client) if verify_client else 0
        self.clients: set[WebSocket] = set()
        self.logger: Logger = resolve_logger(self.options.logger, SERVER_LOGGER)
        """Where the server and its connections log (``logger=``, default ``wsfast.server``)."""
        self._slots = _Slots(max_connections, max_handshakes)
        self._topics = Topics(max_broadcast_buffer)
        self._backplane: Backplane | None = None
        self._slots.log = self.logger
        # Every task the server starts (verify_client, async 'connection' listeners) is held
        # here until done: the loop keeps only weak references to tasks, and an exception of
        # a forgotten one surfaces as "Task exception was never retrieved".
        self._tasks: set[asyncio.Task[Any]] = set()
        self._state = RUNNING
        self._server: asyncio.Server | None = None
        self._loop = asyncio.get_running_loop()
        self._listening: asyncio.Future[None] = self._loop.create_future()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        if callback is not None:
            self.once("listening", callback)
        if backplane is not None:
            self._attach_backplane(
                RedisBackplane(backplane) if isinstance(backplane, str) else backplane
            )
        if not no_server:
            self._spawn(self._listen())
        else:
            self._listening.set_result(None)

    @property
    def stats(self) -> ServerStats:
        """The server's counters now (a :class:`ServerStats` snapshot): open connections,
        handshakes in flight, connections opened and 503 refusals."""
        slots = self._slots
        return ServerStats(slots.connections, slots.handshakes, slots.opened, slots.refused_503)

    @property
    def fanout_stats(self) -> FanoutStats:
        """The fan-out counters now (a :class:`~wsfast.topics.FanoutStats` snapshot):
        messages published, written to local subscribers, dropped for slow subscribers, and the
        number of topics with local subscribers."""
        return self._topics.stats

    # -- topics ------------------------------------------------------------------------------

    @property
    def backplane(self) -> Backplane | None:
        """The backplane joining this server's topics to other servers' (``backplane=``)."""
        return self._backplane

    def _attach_backplane(self, backplane: Backplane) -> None:
        self._backplane = backplane
        topics = self._topics
        topics.on_first = backplane.subscribe
        topics.on_last = backplane.unsubscribe
        backplane.attach(self._from_backplane, self._backplane_state)

    def _from_backplane(self, topic: str, payload: memoryview, binary: bool) -> None:
        self._topics.deliver(topic, PreparedMessage(payload, binary))

    def _backplane_state(self, connected: bool, error: BaseException | None) -> None:
        self.emit("backplane", connected, error)

    def subscribe(self, ws: WebSocket, topic: str) -> bool:
        """Subscribe ``ws`` to ``topic`` (a str); False if it already was or it is closed.

        A connection leaves all its topics when it closes; ``ws.topics`` lists them.
        """
        return self._topics.subscribe(ws, topic)

    def unsubscribe(self, ws: WebSocket, topic: str) -> bool:
        """Unsubscribe ``ws`` from ``topic``; False if it was not subscribed."""
        return self._topics.unsubscribe(ws, topic)

    def subscribers(self, topic: str) -> frozenset[WebSocket]:
        """The connections of this server subscribed to ``topic``."""
        return self._topics.subscribers(topic)

    def publish(
        self, topic: str, data: str | bytes | bytearray | memoryview, binary: bool | None = None
    ) -> Delivery:
        """Send a message to every subscriber of ``topic``, framed once (see
        :func:`wsfast.broadcast`).

        ``str`` is text and anything else binary unless ``binary`` says otherwise. A subscriber
        whose ``buffered_amount`` exceeds ``max_broadcast_buffer`` is skipped and counted
        (:attr:`fanout_stats`). Returns what happened locally.
        """
        topics = self._topics
        topics.published += 1
        message = PreparedMessage(data, binary)
        result = topics.deliver(topic, message)
        backplane = self._backplane
        if backplane is not None:
            backplane.publish(topic, message.payload, message.binary)
        return result

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- listening ---------------------------------------------------------------------------

    async def _listen(self) -> None:
        options = self.options
        # The handshake timeout covers the TLS handshake too: asyncio's default would leave a
        # silent TLS client connected for 60 s whatever handshake_timeout says.
        tls_timeout = (options.handshake_timeout or None) if options.ssl else None
        try:
            if options.unix_path is not None:
                self._server = await self._loop.create_unix_server(
                    lambda: _ServerConnection(self, self._slots),
                    options.unix_path,
                    backlog=options.backlog,
                    ssl=options.ssl,
                    ssl_handshake_timeout=tls_timeout,
                )
            elif options.sock is None and options.host is None:
                # Node listens on one dual-stack socket when no host is given; asyncio would
                # open one socket per address family, each with its own port when port is 0,
                # and address() could only report one of them.
                sock = _any_address_socket(options.port or 0, options.reuse_port, options.backlog)
                self._server = await self._loop.create_server(
                    lambda: _ServerConnection(self, self._slots),
                    sock=sock,
                    backlog=options.backlog,
                    ssl=options.ssl,
                    ssl_handshake_timeout=tls_timeout,
                )
            else:
                self._server = await self._loop.create_server(
                    lambda: _ServerConnection(self, self._slots),
                    options.host,
                    options.port,
                    sock=options.sock,
                    backlog=options.backlog,
                    ssl=options.ssl,
                    ssl_handshake_timeout=tls_timeout,
                    reuse_port=options.reuse_port,
                    reuse_address=True,
                )
        except OSError as exc:
            if not self._listening.done():
                self._listening.set_exception(exc)
                self._listening.exception()
            self.emit("error", exc)
            return
        self._listening.set_result(None)
        self.emit("listening")

    async def wait_listening(self) -> WebSocketServer:
        """Wait until the server is bound; raises the bind error if binding failed."""
        await asyncio.shield(self._listening)
        return self

    def __await__(self) -> Generator[Any, None, WebSocketServer]:
        return self.wait_listening().__await__()

    def address(self) -> Any:
        """``(host, port)`` of the listening socket, the path of a Unix socket, or None."""
        if self._server is None or not self._server.sockets:
            return None
        name = self._server.sockets[0].getsockname()
        if isinstance(name, tuple):
            return name[0], name[1]
        return name

    @property
    def sockets(self) -> tuple[Any, ...]:
        """The listening sockets."""
        return tuple(self._server.sockets) if self._server is not None else ()

    def close(self, callback: Callable[[BaseException | None], Any] | None = None) -> Any:
        """Stop accepting connections (ws' ``close``); open clients are left alone, as in ws.

        Returns an awaitable that resolves once the listening socket is closed and ``'close'``
        was emitted.
        """
        if callback is not None:
            if self._state == CLOSED_SERVER:
                self._loop.call_soon(callback, RuntimeError("The server is not running"))
            else:
                self.once("close", lambda: callback(None))
        if self._state == RUNNING:
            self._state = CLOSING_SERVER
            self._spawn(self._close())
        return asyncio.shield(self._closed)

    async def _close(self) -> None:
        if not self._listening.done():
            try:
                await self._listening
            except OSError:
                pass
        if self._server is not None:
            # close() closes the listening sockets at once. Not awaiting wait_closed(): since
            # Python 3.12.1 it waits for every accepted connection to end, and ws 8's close()
            # leaves open connections alone (on 3.11 it returned at once anyway).
            self._server.close()
            path = self.options.unix_path
            if path is not None and _is_socket(path):
                # Node's server.close() unlinks its socket file; asyncio before 3.13 does not.
                os.unlink(path)
        if self._backplane is not None:
            await self._backplane.close()
        self._state = CLOSED_SERVER
        self._closed.set_result(None)
        self.emit("close")

    async def serve_forever(self) -> None:
        """Wait until the server is closed."""
        await self.wait_listening()
        await asyncio.shield(self._closed)

    # -- upgrades ----------------------------------------------------------------------------

    def should_handle(self, request: Request) -> bool:
        """Whether this server answers ``request`` (ws' ``shouldHandle``: the ``path`` option)."""
        return handshake.path_matches(request, self.options.path)

    def handle_upgrade(
        self,
        request: Request,
        transport: asyncio.Transport | asyncio.StreamWriter,
        head: bytes | asyncio.StreamReader,
        callback: Callable[[WebSocket, Request], Any],
    ) -> None:
        """Complete an upgrade for a request read by another server (``no_server`` mode).

        ws' ``handleUpgrade``: ``callback(ws, request)`` runs once the connection is open; a
        refused request gets its error answer and is closed. The WebSocket becomes the
        transport's protocol; reading is paused here until it takes over. A callback that
        raises is logged and its connection closed with 1011.

        From an ``asyncio.Protocol``: pass its transport and the bytes it received after the
        request head (a client may send frames right behind its request), and stop using the
        transport. From an :func:`asyncio.start_server` handler, pass the streams themselves;
        one port then serves plain HTTP and WebSocket upgrades::

            async def handle(reader, writer):
                request = await WebSocketServer.read_request(reader, writer)
                if request.headers.get("upgrade", "").lower() == "websocket":
                    wss.handle_upgrade(request, writer, reader, on_open)
                    return  # the WebSocket owns the connection now: leave the streams alone
                writer.write(page)  # any plain HTTP answer
                writer.close()

        The bytes the ``StreamReader`` buffered past the head are the head, and the
        ``StreamWriter`` is kept alive with the WebSocket, because asyncio closes a transport
        when its ``StreamWriter`` is garbage collected (Python 3.11.5+).
        """
        writer: asyncio.StreamWriter | None = None
        if isinstance(transport, asyncio.StreamWriter):
            writer = transport
            transport = cast(asyncio.Transport, writer.transport)
        if not transport.is_closing():
            # Bytes arriving before the WebSocket is the protocol would reach the old one.
            transport.pause_reading()
        if isinstance(head, asyncio.StreamReader):
            buffered = getattr(head, "_buffer", bytearray())  # no public way to drain it
            head = bytes(buffered)
            buffered.clear()
        slots = self._slots
        if slots.full():
            slots.refuse(transport)
            return
        # The upgrade holds a handshake slot until it is answered (verify_client included).
        slots.handshakes += 1
        verifying = self._upgrade(request, transport, bytes(head or b""), callback, False, writer)
        if verifying is None:
            slots.handshakes -= 1
        else:
            verifying.add_done_callback(slots.handshake_done)

    @staticmethod
    async def read_request(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter | None = None,
        *,
        max_head_size: int = handshake.MAX_HEAD_SIZE,
        max_headers: int = handshake.MAX_HEADERS,
    ) -> Request:
        """Read one request head from a ``StreamReader`` (for :meth:`handle_upgrade`).

        ``remote_address`` and ``secure`` come from ``writer`` when given. Raises
        :class:`~wsfast.handshake.RequestError` (431 or 400, with ``status`` and ``message``) for
        a head that is too large or malformed, as soon as it is, and
        ``asyncio.IncompleteReadError`` at EOF. Nothing past the head is read.
        """
        head = handshake.HeadReader(max_head_size, max_headers)
        try:
            # Line by line through the one head reader: a bare LF is refused on its line, and
            # the bytes after the head stay in the StreamReader for handle_upgrade.
            while not head.feed(await reader.readuntil(b"\n")):
                pass
        except asyncio.LimitOverrunError:
            raise RequestError(431, "Request Header Fields Too Large") from None
        remote = secure = None
        if writer is not None:
            remote = writer.get_extra_info("peername")
            secure = writer.get_extra_info("sslcontext") is not None
        return head.request(remote, bool(secure))

    def _upgrade(
        self,
        request: Request,
        transport: asyncio.Transport,
        head: bytes | _ServerConnection,
        callback: Callable[[WebSocket, Request], Any],
        plain_http: bool,
        keep_alive: object,
    ) -> asyncio.Task[None] | None:
        """Answer ``request``; the task awaiting ``verify_client``, if one runs."""
        decision = handshake.check_request(
            request, self.options, plain_http=plain_http, should_handle=self.should_handle
        )
        if isinstance(decision, Refusal):
            self._refuse(transport, request, decision, head)
            return None
        if self.options.verify_client is None:
            self._complete(decision, transport, head, callback, keep_alive)
            return None
        return self._spawn(
            self._verify_then_complete(decision, transport, head, callback, keep_alive)
        )

    async def _verify_then_complete(
        self,
        upgrade: Upgrade,
        transport: asyncio.Transport,
        head: bytes | _ServerConnection,
        callback: Callable[[WebSocket, Request], Any],
        keep_alive: object,
    ) -> None:
        request = upgrade.request
        info = VerifyInfo(upgrade.origin, request.secure, request)
        try:
            result = await self._verify(info)
        except asyncio.CancelledError:
            transport.abort()
            raise
        except Exception as exc:
            self._server_error(exc, "verify_client raised")
            self._refuse(transport, request, handshake.SERVER_ERROR, head)
            return
        refusal = handshake.verify_refusal(result)
        if refusal is not None:
            self._refuse(transport, request, refusal, head)
            return
        self._complete(upgrade, transport, head, callback, keep_alive)

    async def _verify(self, info: VerifyInfo) -> Any:
        verify = self.options.verify_client
        assert verify is not None
        if self._verify_arity >= 2:
            future: asyncio.Future[Any] = self._loop.create_future()

            def done(
                ok: bool, code: int = 401, message: str | None = None, headers: Any = None
            ) -> None:
                if not future.done():
                    future.set_result((ok, code, message, headers))

            verify(info, done)
            return await future
        result = verify(info)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _server_error(self, exc: Exception, what: str) -> None:
        """A bug on the server's side (not the peer's): one ERROR line with its traceback;
        ``'error'`` listeners hear of it too."""
        self.logger.error("%s", what, exc_info=exc)
        if self.listener_count("error"):
            self.emit("error", exc)

    def _refuse(
        self,
        transport: asyncio.Transport,
        request: Request | None,
        refusal: Refusal,
        head: bytes | _ServerConnection,
    ) -> None:
        if refusal.reportable and request is not None and self.listener_count("wsClientError"):
            _rest(head)  # the listener owns the connection and its timing from here
            error = HandshakeError(refusal.message, "WS_ERR_HANDSHAKE", http_status=refusal.status)
            self.emit("wsClientError", error, transport, request)
            return
        self._write_refusal(transport, refusal, request)

    def _write_refusal(
        self, transport: asyncio.Transport, refusal: Refusal, request: Request | None
    ) -> None:
        # DEBUG at most: a remote peer must not be able to write ERROR lines into the log.
        self.logger.debug(
            "opening handshake refused with %d %s: %s %s",
            refusal.status,
            refusal.message,
            transport.get_extra_info("peername"),
            request.path if request is not None else "(malformed head)",
        )
        if not transport.is_closing():
            transport.write(refusal.response())
            transport.close()

    def _complete(
        self,
        upgrade: Upgrade,
        transport: asyncio.Transport,
        head: bytes | _ServerConnection,
        callback: Callable[[WebSocket, Request], Any],
        keep_alive: object,
    ) -> None:
        request = upgrade.request
        if transport.is_closing():
            return
        if self._state != RUNNING and not self.options.no_server:
            self._slots.refused_503 += 1
            self._refuse(transport, request, handshake.SERVICE_UNAVAILABLE, head)
            return
        try:
            protocol = upgrade.select_protocol(self.options.handle_protocols)
        except Exception as exc:
            self._server_error(exc, "handle_protocols raised")
            self._refuse(transport, request, handshake.SERVER_ERROR, head)
            return
        lines = upgrade.headers(protocol)
        self.emit("headers", lines, request)
        transport.write(Upgrade.response(lines))
        rest = _rest(head)
        if isinstance(head, _ServerConnection):
            head.release()  # from a handshake slot to a connection slot
        ws = accept(
            transport,
            protocol,
            upgrade.extensions,
            upgrade.deflate,
            self._connection_options,
            keep_alive,
        )
        slots = self._slots
        slots.connections += 1
        slots.opened += 1
        clients = self.clients if self.options.client_tracking else None
        if clients is not None:
            clients.add(ws)
        ws.on("close", _Untrack(slots, clients, ws))
        log = self.logger
        if log.isEnabledFor(logging.INFO):
            log.info("connection open: %s %s", format_peer(request.remote_address), request.path)
        try:
            self._open(ws, request, callback)
        finally:
            start(ws, rest)

    def _emit_connection(self, ws: WebSocket, request: Request) -> None:
        self.emit("connection", ws, request)

    def _open(
        self, ws: WebSocket, request: Request, callback: Callable[[WebSocket, Request], Any]
    ) -> None:
        if callback is self._emit_connection:
            self.emit("connection", ws, request)  # each listener runs through _call below
        else:
            self._run_listener(callback, ws, request)

    def _call(self, event: str, listener: Callable[..., Any], args: tuple[Any, ...]) -> None:
        # emit() runs each listener through _call (keeping Node's once() and snapshot rules);
        # for 'connection' a listener that raises must not leave an OPEN connection that
        # nobody serves.
        if event == "connection" and len(args) == 2 and isinstance(args[0], WebSocket):
            self._run_listener(listener, args[0], args[1])
        else:
            super()._call(event, listener, args)

    def _run_listener(self, listener: Callable[..., Any], ws: WebSocket, request: Request) -> None:
        try:
            result = listener(ws, request)
        except Exception:
            self.logger.exception("a 'connection' listener raised")
            _fail(ws)
            return
        if inspect.iscoroutine(result):
            self._spawn(_serve_connection(result, ws))


class _Untrack:
    """A connection's one ``'close'`` listener from its server: the connection count and
    ``clients`` (ws' ``ws.on('close', () => this.clients.delete(ws))``). One small object
    registered with ``on`` (``'close'`` comes once, and the connection drops its listeners
    after it): the two ``once`` wrappers, a lambda and a bound method it replaces cost 0.5 KiB
    of each idle connection (tracemalloc)."""

    __slots__ = ("slots", "clients", "ws")

    def __init__(self, slots: _Slots, clients: set[WebSocket] | None, ws: WebSocket) -> None:
        self.slots = slots
        self.clients = clients
        self.ws = ws

    def __call__(self, *args: Any) -> None:
        self.slots.connections -= 1
        if self.clients is not None:
            self.clients.discard(self.ws)


def _rest(head: bytes | _ServerConnection) -> bytes:
    """The bytes after the request head; ends the port-mode handshake's timer."""
    return head.finish() if isinstance(head, _ServerConnection) else head


def _fail(ws: WebSocket) -> None:
    """Close a connection whose server code raised: 1011, RFC 6455 7.4.1's "unexpected
    condition"."""
    if ws.ready_state == WebSocket.OPEN:
        ws.close(1011)


async def _serve_connection(coro: Coroutine[Any, Any, Any], ws: WebSocket) -> None:
    """Run an async 'connection' listener: its exceptions are logged, never left in a task."""
    try:
        await coro
    except ConnectionClosed as exc:
        # The peer went away while the listener waited on it: the normal end of a connection.
        ws.logger.debug("connection closed under its listener: %s %s", exc.code, exc.reason)
    except Exception:
        ws.logger.exception("an async 'connection' listener raised")
        _fail(ws)


def _is_socket(path: Any) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _any_address_socket(port: int, reuse_port: bool | None, backlog: int) -> socket.socket:
    """A listening socket on every address: IPv6 dual-stack where the system has it."""
    if socket.has_dualstack_ipv6():
        return socket.create_server(
            ("", port),
            family=socket.AF_INET6,
            dualstack_ipv6=True,
            reuse_port=bool(reuse_port),
            backlog=backlog,
        )
    return socket.create_server(("", port), reuse_port=bool(reuse_port), backlog=backlog)


class Serve:
    """What :func:`serve` returns: ``await`` it or ``async with`` it to get the server.

    Every task of an ``async def`` handler is held in :attr:`tasks` until it ends. Leaving the
    ``async with`` block closes the server, closes each client with 1001 (going away), then
    cancels and awaits the handlers still running.
    """

    def __init__(
        self,
        handler: Callable[..., Any] | None,
        host: str | None,
        port: int | None,
        options: ServerOptionsDict,
    ) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        # The asyncio API has keepalive on by default, as websockets (ws' server has none).
        options = {
            "ping_interval": DEFAULT_PING_INTERVAL,
            "ping_timeout": DEFAULT_PING_TIMEOUT,
            **options,
        }
        self._options = options
        # Validated here, at the call, not only when awaited: serve(..., binary_type="x")
        # raises at once, as WebSocketServer(...) does.
        args: dict[str, Any] = dict(options)
        args["host"], args["port"] = self._address(args)
        ServerOptions.build(**args)
        self._server: WebSocketServer | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        """The running tasks of an ``async def`` handler."""

    def _address(self, options: dict[str, Any]) -> tuple[str | None, int | None]:
        """(host, port), from the positional arguments or the options (which lose them)."""
        host, port = options.pop("host", None), options.pop("port", None)
        host = self._host if self._host is not None else host
        port = self._port if self._port is not None else port
        if port is None and not any(k in options for k in ("unix_path", "sock", "no_server")):
            port = 0
        return host, port

    async def _start(self) -> WebSocketServer:
        options: dict[str, Any] = dict(self._options)
        host, port = self._address(options)
        server = WebSocketServer(port, host, **options)
        handler = self._handler
        if handler is not None:
            if inspect.iscoroutinefunction(handler):
                loop = asyncio.get_running_loop()

                def on_connection(ws: WebSocket, request: Request) -> None:
                    # The handler's coroutine is the task, without a wrapping coroutine; what
                    # the wrapper did at its end is done by one done callback (_HandlerDone),
                    # which also replaces tasks.discard: 0.4 KiB less per connection.
                    task = loop.create_task(handler(ws, request))
                    self.tasks.add(task)
                    task.add_done_callback(_HandlerDone(self.tasks, ws))

                server.on("connection", on_connection)
            else:
                server.on("connection", handler)
        self._server = server
        await server.wait_listening()
        return server

    def __await__(self) -> Generator[Any, None, WebSocketServer]:
        return self._start().__await__()

    async def __aenter__(self) -> WebSocketServer:
        return await self._start()

    async def __aexit__(self, *exc_info: Any) -> None:
        server = self._server
        assert server is not None
        await server.close()
        clients = list(server.clients)
        for ws in clients:
            if ws.ready_state == WebSocket.OPEN:
                ws.close(1001)
        if clients:
            await asyncio.wait(
                [asyncio.ensure_future(ws.wait_closed()) for ws in clients],
                timeout=server.options.close_timeout,
            )
        await asyncio.sleep(0)  # handlers woken by the closes end in this turn
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class _HandlerDone:
    """The end of an ``async def`` handler's task: the connection ends with its handler (1000,
    as in websockets; 1001 when cancelled, 1011 when it raised), and the task leaves
    :attr:`Serve.tasks`."""

    __slots__ = ("tasks", "ws")

    def __init__(self, tasks: set[asyncio.Task[None]], ws: WebSocket) -> None:
        self.tasks = tasks
        self.ws = ws

    def __call__(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        ws = self.ws
        if task.cancelled():
            if ws.ready_state == WebSocket.OPEN:
                ws.close(1001)
            return
        exc = task.exception()
        if exc is None:
            if ws.ready_state == WebSocket.OPEN:
                ws.close(1000)
        elif isinstance(exc, ConnectionClosed):
            # recv() or async for saw the peer vanish (1006) or misbehave: the handler's normal
            # end. The connection's own INFO line ("connection closed: ...", with the protocol
            # error if there was one) says so already: this one is DEBUG.
            ws.logger.debug("connection closed under its handler: %s %s", exc.code, exc.reason)
        elif isinstance(exc, Exception):
            ws.logger.error("connection handler raised", exc_info=exc)
            _fail(ws)


def serve(
    handler: Callable[..., Any] | None,
    host: str | None = None,
    port: int | None = None,
    /,
    **options: Unpack[ServerOptionsDict],
) -> Serve:
    """Start a server: ``async with serve(handler, host, port) as server``.

    ``handler(ws, request)`` runs for every connection; an ``async def`` handler owns its
    connection, which is closed with 1000 when the handler returns (1011 if it raises). The
    options are :class:`WebSocketServer`'s keyword options; ``host`` and ``port`` may be given
    by keyword too.
    """
    return Serve(handler, host, port, options)

"""The WebSocket server (the twin of ws' ``lib/websocket-server.js``) on asyncio.

In port mode the server owns a listening socket and reads each request head itself with
explicit limits; with ``no_server=True`` another asyncio server hands upgrade requests to
:meth:`WebSocketServer.handle_upgrade`. Either way the request is validated in ws' order
(:mod:`wsfast.handshake`), then ``verify_client``, ``handle_protocols`` and the ``'headers'``
event run before the 101 answer is written.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import ssl as ssl_module
import stat
from collections.abc import Callable, Generator, Mapping
from typing import Any, cast

from . import handshake
from .constants import DEFAULT_CLOSE_TIMEOUT, DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_QUEUE
from .event_emitter import EventEmitter
from .exceptions import HandshakeError
from .handshake import Request, RequestError
from .options import ConnectionOptions
from .websocket import WebSocket, accept, start

__all__ = ["WebSocketServer", "serve", "Serve", "VerifyInfo"]

logger = logging.getLogger("wsfast")

RUNNING, CLOSING_SERVER, CLOSED_SERVER = 0, 1, 2


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


class _RequestReader(asyncio.Protocol):
    """Reads one request head on a fresh connection, then hands it to the server."""

    def __init__(self, server: WebSocketServer) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        timeout = self.server.options["handshake_timeout"]
        if timeout:
            self.timer = asyncio.get_running_loop().call_later(
                timeout, cast(asyncio.Transport, transport).abort
            )

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.done:
            return
        transport = self.transport
        assert transport is not None
        try:
            parsed = handshake.parse_head(
                self.buffer,
                self.server.options["max_head_size"],
                self.server.options["max_headers"],
            )
            if parsed is None:
                return
            start, headers, consumed = parsed
            method, target, version = handshake.parse_request_line(start)
        except RequestError as exc:
            self.done = True
            self._cancel_timer()
            transport.write(handshake.abort_response(exc.status, exc.message, exc.headers))
            transport.close()
            return
        self.done = True
        self._cancel_timer()
        transport.pause_reading()
        del self.buffer[:consumed]
        request = Request(
            method,
            target,
            handshake.Headers(headers),
            version,
            transport.get_extra_info("peername"),
            transport.get_extra_info("sslcontext") is not None,
        )
        self.server._on_request(request, transport, self)

    def take_head(self) -> bytes:
        """The bytes that followed the request head, now owned by the caller."""
        head = bytes(self.buffer)
        self.buffer.clear()
        return head

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class WebSocketServer(EventEmitter):
    """A WebSocket server: ws' ``WebSocketServer`` with the same options in snake_case.

    In port mode it must be created inside a running event loop; it starts listening at once
    and emits ``'listening'`` once bound (``await server.wait_listening()`` waits for that).
    """

    def __init__(
        self,
        port: int | None = None,
        host: str | None = None,
        *,
        backlog: int = 511,
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
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        handshake_timeout: float | None = 60.0,
        max_head_size: int = handshake.MAX_HEAD_SIZE,
        max_headers: int = handshake.MAX_HEADERS,
        max_queue: int = DEFAULT_MAX_QUEUE,
        reuse_port: bool | None = None,
        unix_path: str | None = None,
        sock: Any = None,
        callback: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__()
        modes = (port is not None) + bool(no_server) + (unix_path is not None) + (sock is not None)
        if modes != 1:
            raise TypeError(
                'One and only one of the "port", "no_server", "unix_path" or "sock" options '
                "must be specified"
            )
        self.options: dict[str, Any] = {
            "port": port,
            "host": host,
            "backlog": backlog,
            "per_message_deflate": per_message_deflate,
            "max_payload": max_payload,
            "max_fragments": max_fragments,
            "verify_client": verify_client,
            "handle_protocols": handle_protocols,
            "client_tracking": client_tracking,
            "path": path,
            "no_server": no_server,
            "ssl": ssl,
            "skip_utf8_validation": skip_utf8_validation,
            "auto_pong": auto_pong,
            "close_timeout": close_timeout,
            "handshake_timeout": handshake_timeout,
            "max_head_size": max_head_size,
            "max_headers": max_headers,
            "max_queue": max_queue,
            "reuse_port": reuse_port,
            "unix_path": unix_path,
            "sock": sock,
        }
        self._verify_arity = _arity(verify_client) if verify_client else 0
        self.clients: set[WebSocket] = set()
        self._state = RUNNING
        self._server: asyncio.Server | None = None
        self._loop = asyncio.get_running_loop()
        self._listening: asyncio.Future[None] = self._loop.create_future()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        if callback is not None:
            self.once("listening", callback)
        if not no_server:
            self._loop.create_task(self._listen())
        else:
            self._listening.set_result(None)

    # -- listening ---------------------------------------------------------------------------

    async def _listen(self) -> None:
        options = self.options
        # The handshake timeout covers the TLS handshake too: asyncio's default would leave a
        # silent TLS client connected for 60 s whatever handshake_timeout says.
        tls_timeout = options["handshake_timeout"] if options["ssl"] else None
        try:
            if options["unix_path"] is not None:
                self._server = await self._loop.create_unix_server(
                    lambda: _RequestReader(self),
                    options["unix_path"],
                    backlog=options["backlog"],
                    ssl=options["ssl"],
                    ssl_handshake_timeout=tls_timeout,
                )
            elif options["sock"] is None and options["host"] is None:
                # Node listens on one dual-stack socket when no host is given; asyncio would
                # open one socket per address family, each with its own port when port is 0,
                # and address() could only report one of them.
                sock = _any_address_socket(
                    options["port"], options["reuse_port"], options["backlog"]
                )
                self._server = await self._loop.create_server(
                    lambda: _RequestReader(self),
                    sock=sock,
                    backlog=options["backlog"],
                    ssl=options["ssl"],
                    ssl_handshake_timeout=tls_timeout,
                )
            else:
                self._server = await self._loop.create_server(
                    lambda: _RequestReader(self),
                    options["host"],
                    options["port"],
                    sock=options["sock"],
                    backlog=options["backlog"],
                    ssl=options["ssl"],
                    ssl_handshake_timeout=tls_timeout,
                    reuse_port=options["reuse_port"],
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
            self._loop.create_task(self._close())
        return asyncio.shield(self._closed)

    async def _close(self) -> None:
        if not self._listening.done():
            try:
                await self._listening
            except OSError:
                pass
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            path = self.options["unix_path"]
            if path is not None and _is_socket(path):
                # Node's server.close() unlinks its socket file; asyncio before 3.13 does not.
                os.unlink(path)
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
        path = self.options["path"]
        if path is None:
            return True
        return bool(request.path.split("?", 1)[0] == path)

    def _on_request(self, request: Request, transport: asyncio.Transport, reader: Any) -> None:
        def emit_connection(ws: WebSocket, req: Request) -> None:
            self.emit("connection", ws, req)

        self._upgrade(request, transport, reader, emit_connection)

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
        transport's protocol; reading is paused here until it takes over.

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
        self._upgrade(request, transport, head, callback, writer)

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
        a head that is too large or malformed, and ``asyncio.IncompleteReadError`` at EOF.
        """
        try:
            data = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise RequestError(431, "Request Header Fields Too Large") from None
        parsed = handshake.parse_head(data, max_head_size, max_headers)
        assert parsed is not None  # readuntil returned a complete head
        start, headers, _ = parsed
        method, target, version = handshake.parse_request_line(start)
        remote = secure = None
        if writer is not None:
            remote = writer.get_extra_info("peername")
            secure = writer.get_extra_info("sslcontext") is not None
        return Request(method, target, handshake.Headers(headers), version, remote, bool(secure))

    def _upgrade(
        self,
        request: Request,
        transport: asyncio.Transport,
        head: Any,
        callback: Callable[[WebSocket, Request], Any],
        keep_alive: object = None,
    ) -> None:
        try:
            key, version = handshake.validate_request(request)
            if not self.should_handle(request):
                # ws answers a path it does not serve with a bare 400 (abortHandshake), never
                # with 'wsClientError'.
                self._abort(transport, request, RequestError(400, "Bad Request"), emit=False)
                return
            protocols = handshake.request_protocols(request)
            deflate, negotiated = self._negotiate(request)
        except RequestError as exc:
            self._abort(transport, request, exc)
            return
        if self.options["verify_client"] is None:
            self._complete(
                key, protocols, deflate, negotiated, request, transport, head, callback, keep_alive
            )
            return

        async def verify() -> None:
            origin = request.headers.get("origin" if version == 13 else "sec-websocket-origin")
            info = VerifyInfo(origin, request.secure, request)
            try:
                ok, status, message, headers = await self._verify(info)
            except Exception as exc:
                logger.exception("verify_client raised")
                self._abort(transport, request, RequestError(500, "Internal Server Error"))
                self.emit("error", exc)
                return
            if not ok:
                self._abort(transport, request, RequestError(status, message or "", headers))
                return
            self._complete(
                key, protocols, deflate, negotiated, request, transport, head, callback, keep_alive
            )

        self._loop.create_task(verify())

    async def _verify(self, info: VerifyInfo) -> tuple[bool, int, str | None, Any]:
        verify = self.options["verify_client"]
        assert verify is not None
        if self._verify_arity >= 2:
            future: asyncio.Future[Any] = self._loop.create_future()

            def done(
                ok: bool, code: int = 401, message: str | None = None, headers: Any = None
            ) -> None:
                if not future.done():
                    future.set_result((ok, code, message, headers))

            verify(info, done)
            return await future  # type: ignore[no-any-return]
        result = verify(info)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, tuple):
            ok = bool(result[0])
            status = result[1] if len(result) > 1 else 401
            message = result[2] if len(result) > 2 else None
            headers = result[3] if len(result) > 3 else None
            return ok, status, message, headers
        return bool(result), 401, None, None

    def _negotiate(self, request: Request) -> tuple[Any, dict[str, Any]]:
        option = self.options["per_message_deflate"]
        if not option and not isinstance(option, Mapping):
            # As ws: Sec-WebSocket-Extensions is only parsed (and refused with 400 when
            # malformed) by a server that offers permessage-deflate.
            return None, {}
        offers = handshake.request_extensions(request)
        if "permessage-deflate" not in offers:
            return None, {}
        from .permessage_deflate import PerMessageDeflate

        deflate = PerMessageDeflate(
            option if isinstance(option, Mapping) else {},
            is_server=True,
            max_payload=self.options["max_payload"],
        )
        try:
            params = deflate.accept(offers["permessage-deflate"])
        except ValueError:
            raise RequestError(
                400, "Invalid or unacceptable Sec-WebSocket-Extensions header"
            ) from None
        return deflate, {"permessage-deflate": params}

    def _abort(
        self, transport: asyncio.Transport, request: Request, exc: RequestError, emit: bool = True
    ) -> None:
        if emit and self.listener_count("wsClientError"):
            error = HandshakeError(exc.message, "WS_ERR_HANDSHAKE", http_status=exc.status)
            self.emit("wsClientError", error, transport, request)
            return
        if not transport.is_closing():
            transport.write(handshake.abort_response(exc.status, exc.message, exc.headers))
            transport.close()

    def _complete(
        self,
        key: str,
        protocols: list[str],
        deflate: Any,
        negotiated: dict[str, Any],
        request: Request,
        transport: asyncio.Transport,
        head: Any,
        callback: Callable[[WebSocket, Request], Any],
        keep_alive: object = None,
    ) -> None:
        if transport.is_closing():
            return
        if self._state != RUNNING and not self.options["no_server"]:
            self._abort(transport, request, RequestError(503, "Service Unavailable"))
            return
        lines = [
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {handshake.accept_key(key)}",
        ]
        protocol = ""
        if protocols:
            chooser = self.options["handle_protocols"]
            chosen = chooser(list(protocols), request) if chooser else protocols[0]
            if chosen:
                protocol = str(chosen)
                lines.append(f"Sec-WebSocket-Protocol: {protocol}")
        if negotiated:
            from . import extension

            lines.append(f"Sec-WebSocket-Extensions: {extension.format(negotiated)}")
        self.emit("headers", lines, request)
        transport.write(handshake.build_response(101, lines))
        options = self.options
        connection_options = ConnectionOptions(
            max_payload=options["max_payload"],
            max_fragments=options["max_fragments"],
            skip_utf8_validation=options["skip_utf8_validation"],
            auto_pong=options["auto_pong"],
            close_timeout=options["close_timeout"],
            max_queue=options["max_queue"],
        )
        if isinstance(head, _RequestReader):
            head = head.take_head()
        ws = accept(transport, protocol, negotiated, deflate, connection_options, keep_alive)
        if options["client_tracking"]:
            self.clients.add(ws)
            ws.once("close", lambda *args: self.clients.discard(ws))
        try:
            callback(ws, request)
        finally:
            start(ws, bytes(head or b""))


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


def _arity(func: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return 1
    # As JavaScript's Function.length, which ws reads: parameters with defaults do not count.
    return sum(
        1
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    )


class Serve:
    """What :func:`serve` returns: ``await`` it or ``async with`` it to get the server."""

    def __init__(
        self, handler: Callable[..., Any] | None, args: tuple[Any, ...], options: dict[str, Any]
    ) -> None:
        self._handler = handler
        self._args = args
        self._options = options
        self._server: WebSocketServer | None = None

    async def _start(self) -> WebSocketServer:
        host = self._args[0] if len(self._args) > 0 else self._options.pop("host", None)
        port = self._args[1] if len(self._args) > 1 else self._options.pop("port", None)
        if port is None and not any(k in self._options for k in ("unix_path", "sock", "no_server")):
            port = 0
        server = WebSocketServer(port, host, **self._options)
        handler = self._handler
        if handler is not None:
            if inspect.iscoroutinefunction(handler):

                async def run(ws: WebSocket, request: Request) -> None:
                    try:
                        await handler(ws, request)
                    except Exception:
                        logger.exception("connection handler raised")
                        if ws.ready_state == WebSocket.OPEN:
                            ws.close(1011)
                        return
                    # As in websockets: the connection ends with its handler.
                    if ws.ready_state == WebSocket.OPEN:
                        ws.close(1000)

                server.on(
                    "connection", lambda ws, request: server._loop.create_task(run(ws, request))
                )
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
                timeout=server.options["close_timeout"],
            )


def serve(handler: Callable[..., Any] | None, *args: Any, **options: Any) -> Serve:
    """Start a server: ``async with serve(handler, host, port) as server``.

    ``handler(ws, request)`` runs for every connection; an ``async def`` handler owns its
    connection, which is closed with 1000 when the handler returns (1011 if it raises).
    """
    return Serve(handler, args, options)

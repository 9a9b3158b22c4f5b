"""uvicorn's WebSocket engine on wsfast's protocol core: ``uvicorn app:app --ws
wsfast.uvicorn:WebSocketProtocol``.

uvicorn's HTTP protocol parses the request, sees an upgrade, builds a ``--ws`` class with
``(config, server_state, app_state)``, calls :meth:`WebSocketProtocol.connection_made` with its
transport, hands the transport over and feeds the request head back through
:meth:`WebSocketProtocol.data_received`. From there this module is an asyncio adapter like
``websocket.py``: :class:`~wsfast.handshake.ServerHandshake` reads the head,
:class:`~wsfast.protocol.Protocol` runs the connection, and the ASGI application sees the
WebSocket spec's events (``websocket.connect`` / ``receive`` / ``disconnect`` in,
``websocket.accept`` / ``send`` / ``close`` and the denial response out).

uvicorn's options apply as its own engines read them: ``ws_max_size`` (the largest message,
else 1009), ``ws_max_queue`` (messages waiting for ``receive()`` before reading pauses),
``ws_ping_interval`` / ``ws_ping_timeout`` (keepalive; a missed pong closes with 1011) and
``ws_per_message_deflate`` (ws' server defaults).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)

from .exceptions import WebSocketError
from .handshake import (
    SERVER_ERROR,
    Refusal,
    Request,
    ServerHandshake,
    Upgrade,
    build_response,
)
from .options import ConnectionOptions, ServerOptions
from .protocol import CLOSED, OPEN, Protocol
from .sender import coalesce

if TYPE_CHECKING:
    from uvicorn._types import WebSocketScope
    from uvicorn.config import Config
    from uvicorn.server import ServerState

__all__ = ["WebSocketProtocol", "CLOSE_TIMEOUT"]

logger = logging.getLogger("uvicorn.error")

#: Seconds the peer gets to finish a closing handshake: uvicorn's own engines wait 10 s, and a
#: graceful shutdown waits for every connection to leave.
CLOSE_TIMEOUT = 10.0

#: Corked frames are written at once past this many bytes (one write per loop turn otherwise).
_FLUSH_AT = 65536

_HANDSHAKE, _OPEN, _DENYING, _DONE = range(4)


def _keepalive_expired() -> WebSocketError:
    return WebSocketError("keepalive ping timeout", "WS_ERR_KEEPALIVE_TIMEOUT", 1011)


class WebSocketProtocol(asyncio.Protocol):
    """One upgraded connection under uvicorn, serving one ASGI WebSocket application call.

    Frames the application sends while it runs are corked and written once per loop turn (or
    as soon as it waits in ``receive()``), so a burst of answers costs one ``write()``.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.app_state = app_state
        self.loop = _loop or asyncio.get_event_loop()
        self.connections: set[Any] = server_state.connections
        self.tasks: set[asyncio.Task[None]] = server_state.tasks
        self.default_headers: list[tuple[bytes, bytes]] = server_state.default_headers
        deflate: dict[str, Any] | None = {} if config.ws_per_message_deflate else None
        self.server_options = ServerOptions(
            no_server=True,
            max_payload=config.ws_max_size,
            per_message_deflate=deflate,
            handshake_timeout=None,
        )
        self.options = ConnectionOptions(
            max_payload=config.ws_max_size,
            max_queue=max(1, config.ws_max_queue),
            close_timeout=CLOSE_TIMEOUT,
        )
        self.transport: asyncio.Transport | None = None
        self.scope: dict[str, Any] = {}
        self.client: tuple[str, int] | None = None
        self.phase = _HANDSHAKE
        self.handshake: ServerHandshake | None = ServerHandshake(
            self.server_options, plain_http=False
        )
        self.upgrade: Upgrade | None = None
        self.early = b""  # bytes after the head, parsed once the application accepts
        self.proto: Protocol | None = None
        self.denial: tuple[int, list[tuple[bytes, bytes]], list[bytes]] | None = None
        # What receive() hands out, and the one coroutine waiting for it.
        self.queue: deque[dict[str, Any]] = deque()
        self.waiter: asyncio.Future[dict[str, Any]] | None = None
        self.taken = False
        self.queue_paused = False
        self.held_paused = False
        self.disconnected = False  # the application was told (websocket.disconnect)
        self.app_closed = False  # the application sent websocket.close
        # Writes: corked until the loop turn ends or receive() waits.
        self.out: list[Any] = []
        self.out_size = 0
        self.flush_scheduled = False
        self.write_paused = False
        self.drain: asyncio.Future[None] | None = None
        self.close_timer: asyncio.TimerHandle | None = None
        self.ping_timer: asyncio.TimerHandle | None = None
        self.pong_timer: asyncio.TimerHandle | None = None
        self.lost = False

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """uvicorn hands over the transport of an upgrade request (asyncio callback)."""
        # uvloop's transports are no asyncio.Transport subclasses: no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)
        self.client = get_remote_addr(self.transport)  # a closed transport has no peer any more
        self.connections.add(self)
        if logger.isEnabledFor(TRACE_LOG_LEVEL):
            logger.log(TRACE_LOG_LEVEL, "%sWebSocket connection made", self._trace_prefix())

    def data_received(self, data: bytes) -> None:
        """The request head first (uvicorn feeds it back), then frames (asyncio callback)."""
        proto = self.proto
        if proto is not None:
            try:
                proto.receive_data(data)
            except Exception as exc:  # a bug must not leave a half-parsed connection open
                logger.exception("unexpected error while parsing frames")
                proto.fail(WebSocketError(f"internal error: {exc!r}", "WS_ERR_INTERNAL", 1011))
            if proto.pending:
                self._apply(proto)
            if proto.pending_auto_pongs and self.transport is not None:
                if self.transport.get_write_buffer_size() == 0 and not self.out:
                    proto.auto_pongs_flushed()
            return
        handshake = self.handshake
        if handshake is None:
            # Before the application accepts: keep the frames (reading is paused meanwhile).
            self.early += data
            return
        result = handshake.receive_data(data, secure=self._scheme() == "wss")
        if result is None:
            return
        self.handshake = None
        if isinstance(result, Refusal):
            self._refuse(result)
            return
        decision = handshake.check(result)
        if isinstance(decision, Refusal):
            self._refuse(decision)
            return
        self.upgrade = decision
        self.early = handshake.take_rest()
        assert self.transport is not None
        self.transport.pause_reading()
        self._start_app(result, decision)

    def eof_received(self) -> bool:
        """The peer half-closed: asyncio closes the transport (asyncio callback)."""
        if self.proto is not None:
            self.proto.receive_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """The transport is closed: tell the application, leave uvicorn's connection set."""
        self.lost = True
        self.connections.discard(self)
        if logger.isEnabledFor(TRACE_LOG_LEVEL):
            logger.log(TRACE_LOG_LEVEL, "%sWebSocket connection lost", self._trace_prefix())
        self._stop_keepalive()
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        proto = self.proto
        code = 1006
        if proto is not None:
            proto.connection_lost()
            code = proto.close_code if proto.close_code is not None else 1006
        self.phase = _DONE
        self._disconnect(code, proto.close_reason if proto is not None else "")
        drain = self.drain
        if drain is not None and not drain.done():
            drain.set_result(None)
        if proto is not None:
            proto.detach()  # its callbacks are this object's methods: no cycle left behind

    def pause_writing(self) -> None:
        """The transport's buffer passed its high-water mark (asyncio callback)."""
        self.write_paused = True

    def resume_writing(self) -> None:
        """The transport's buffer drained (asyncio callback)."""
        self.write_paused = False
        drain = self.drain
        if drain is not None and not drain.done():
            drain.set_result(None)
        proto = self.proto
        if proto is not None:
            proto.auto_pongs_flushed()

    def shutdown(self) -> None:
        """uvicorn is shutting down: close with 1012 (Service Restart), or refuse with 503."""
        self._stop_keepalive()
        if self.phase == _HANDSHAKE and self.transport is not None:
            self._refuse(Refusal(503, "Service Unavailable"))
            self._disconnect(1012, "")
            return
        proto = self.proto
        if proto is not None and proto.state is OPEN:
            self.app_closed = True
            proto.close(1012, "")
            self._disconnect(1012, "")
            self._flush()
            if proto.pending:
                self._apply(proto)
            self._resume_reading()  # to see the peer's close frame

    # -- the opening handshake -------------------------------------------------------------------

    def _trace_prefix(self) -> str:
        client = self.client
        return f"{client[0]}:{client[1]} - " if client else ""

    def _log_handshake(self, outcome: str) -> None:
        """uvicorn's INFO line for a WebSocket handshake, as its own engines write it:
        ``127.0.0.1:50000 - "WebSocket /path" [accepted]`` (or 403, or the denial's status)."""
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                '%s - "WebSocket %s" %s',
                get_client_addr(cast("WebSocketScope", self.scope)),
                get_path_with_query_string(cast("WebSocketScope", self.scope)),
                outcome,
            )

    def _scheme(self) -> str:
        assert self.transport is not None
        return "wss" if is_ssl(self.transport) else "ws"

    def _start_app(self, request: Request, upgrade: Upgrade) -> None:
        transport = self.transport
        assert transport is not None
        raw_path, _, query = request.path.partition("?")
        root_path = self.config.root_path
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.4"},
            "http_version": request.http_version.partition("/")[2] or "1.1",
            "scheme": self._scheme(),
            "server": get_local_addr(transport),
            "client": self.client,
            "root_path": root_path,
            "path": root_path + unquote(raw_path),
            "raw_path": root_path.encode("ascii") + raw_path.encode("ascii"),
            "query_string": query.encode("ascii"),
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in request.headers.raw
            ],
            "subprotocols": list(upgrade.protocols),
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        self.queue.append({"type": "websocket.connect"})
        task = self.loop.create_task(self._run_asgi())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _refuse(self, refusal: Refusal) -> None:
        self.phase = _DONE
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(refusal.response())
            transport.close()

    def _accept(self, message: dict[str, Any]) -> None:
        upgrade = self.upgrade
        transport = self.transport
        assert upgrade is not None and transport is not None
        subprotocol = message.get("subprotocol") or ""
        lines = upgrade.headers(subprotocol)
        for name, value in self.default_headers:
            lines.append(f"{name.decode('latin-1')}: {value.decode('latin-1')}")
        for name, value in message.get("headers") or ():
            lines.append(f"{bytes(name).decode('latin-1')}: {bytes(value).decode('latin-1')}")
        self._log_handshake("[accepted]")
        transport.write(Upgrade.response(lines))
        self.phase = _OPEN
        proto = Protocol(
            is_server=True,
            options=self.options,
            deflate=upgrade.deflate,
            write=self._write,
            on_message=self._on_message,
            on_pong=self._on_pong,
            on_close_frame=self._on_close_frame,
            on_error=self._on_error,
        )
        proto.backlog = self._backlog
        self.proto = proto
        self.upgrade = None
        self._start_keepalive()
        early, self.early = self.early, b""
        if early:
            self.data_received(early)
        self._resume_reading()

    def _deny(self) -> None:
        """Write the denial response the application built (websocket.http.response)."""
        assert self.denial is not None
        status, headers, body = self.denial
        payload = b"".join(body)
        names = {bytes(name).lower() for name, _ in headers}
        lines = [
            f"{bytes(name).decode('latin-1')}: {bytes(value).decode('latin-1')}"
            for name, value in headers
        ]
        for name, value in self.default_headers:
            if name.lower() not in names:
                lines.append(f"{name.decode('latin-1')}: {value.decode('latin-1')}")
        if b"content-length" not in names:
            lines.append(f"Content-Length: {len(payload)}")
        if b"connection" not in names:
            lines.append("Connection: close")
        self.phase = _DONE
        transport = self.transport
        assert transport is not None
        if not transport.is_closing():
            transport.write(build_response(status, lines) + payload)
            transport.close()
        self._disconnect(1006, "")

    # -- the application -------------------------------------------------------------------------

    async def _run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            logger.exception("Exception in ASGI application\n")
            if self.phase == _HANDSHAKE:
                self._refuse(SERVER_ERROR)
            elif self.proto is not None and self.proto.state is OPEN:
                self._close(1011, "")
        else:
            if result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
            if self.phase == _HANDSHAKE:
                logger.error("ASGI callable returned without completing handshake.")
                self._refuse(SERVER_ERROR)
            elif self.phase == _DENYING:
                logger.error("ASGI callable returned without completing the denial response.")
                self._refuse(SERVER_ERROR)
            elif self.proto is not None and self.proto.state is OPEN:
                # The ASGI spec: an application that returns closes the connection.
                self._close(1000, "")
        self._flush()

    async def receive(self) -> dict[str, Any]:
        """The ASGI ``receive`` callable: connect, then each message, then disconnect."""
        queue = self.queue
        if queue:
            event = queue.popleft()
            self.taken = True
            # Reading resumes at a quarter of max_queue, as WebSocket.recv.
            if self.queue_paused and len(queue) <= self.options.max_queue >> 2:
                self._unpause_queue()
            return event
        # The application asks for more than arrived: it is done with what it took.
        self.taken = False
        self._flush()
        proto = self.proto
        if proto is not None and proto.held is not None:
            proto.release()
            if proto.pending:
                self._apply(proto)
            if queue:
                return queue.popleft()
        if self.waiter is not None:
            raise RuntimeError("another coroutine is already waiting in receive()")
        waiter: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self.waiter = waiter
        try:
            return await waiter
        finally:
            self.waiter = None

    async def send(self, message: dict[str, Any]) -> None:
        """The ASGI ``send`` callable."""
        kind = message["type"]
        phase = self.phase
        if phase == _OPEN:
            proto = self.proto
            assert proto is not None
            if self.app_closed or proto.state is not OPEN:
                if kind in ("websocket.send", "websocket.close"):
                    raise ClientDisconnected()
                raise RuntimeError(f"Unexpected ASGI message '{kind}' after the handshake.")
            if kind == "websocket.send":
                data = message.get("bytes")
                if data is None:
                    data = message.get("text")
                    if data is None:
                        raise RuntimeError("websocket.send needs 'bytes' or 'text'")
                proto.send(data)
                if proto.pending:
                    self._apply(proto)
                if self.write_paused and not self.lost:
                    await self._drain()
                return
            if kind == "websocket.close":
                self._close(message.get("code") or 1000, message.get("reason") or "")
                return
            raise RuntimeError(
                f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{kind}'."
            )
        if phase == _HANDSHAKE:
            if self.lost:
                raise ClientDisconnected()
            if kind == "websocket.accept":
                self._accept(message)
                return
            if kind == "websocket.close":
                # Closing before accepting is refusing: 403, as the ASGI spec asks.
                self._log_handshake("403")
                self._refuse(Refusal(403, "Forbidden"))
                self._disconnect(1006, "")
                return
            if kind == "websocket.http.response.start":
                status = message["status"]
                if not 100 <= status < 600:
                    raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
                self._log_handshake(str(status))
                self.denial = (status, list(message.get("headers") or ()), [])
                self.phase = _DENYING
                return
            raise RuntimeError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                f"'websocket.http.response.start', but got '{kind}'."
            )
        if phase == _DENYING:
            if kind != "websocket.http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.http.response.body', but got '{kind}'."
                )
            assert self.denial is not None
            self.denial[2].append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                self._deny()
            return
        # _DONE: refused, denied, or the transport is gone.
        if kind in ("websocket.send", "websocket.close", "websocket.accept"):
            raise ClientDisconnected()
        raise RuntimeError(f"Unexpected ASGI message '{kind}' after the connection ended.")

    async def _drain(self) -> None:
        drain = self.drain
        if drain is None or drain.done():
            drain = self.drain = self.loop.create_future()
        await drain

    def _close(self, code: int, reason: str) -> None:
        proto = self.proto
        assert proto is not None
        self.app_closed = True
        proto.close(code, reason)
        self._disconnect(code, reason)
        if proto.pending:
            self._apply(proto)
        # Read on, whatever the queue holds, to see the peer's close frame.
        self.queue_paused = False
        proto.receiver.paused = False
        self._resume_reading()

    def _disconnect(self, code: int, reason: str) -> None:
        """Queue ``websocket.disconnect`` once."""
        if self.disconnected:
            return
        self.disconnected = True
        event = {"type": "websocket.disconnect", "code": code, "reason": reason}
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self.waiter = None
            waiter.set_result(event)
        else:
            self.queue.append(event)

    # -- protocol callbacks ----------------------------------------------------------------------

    def _backlog(self) -> bool:
        """Protocol.backlog: the application still has messages to take or answer."""
        return bool(self.queue) or self.taken

    def _on_message(self, data: Any, is_binary: bool) -> None:
        if self.app_closed:
            return  # past websocket.close: the application reads nothing more
        if is_binary:
            event = {"type": "websocket.receive", "bytes": data}
        else:
            event = {"type": "websocket.receive", "text": data}
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self.waiter = None
            self.taken = True
            waiter.set_result(event)
            return
        queue = self.queue
        queue.append(event)
        if len(queue) >= self.options.max_queue and not self.queue_paused:
            self.queue_paused = True
            self._pause_reading()
            proto = self.proto
            assert proto is not None
            proto.receiver.paused = True  # the rest of this read stays raw bytes

    def _on_close_frame(self, code: int, reason: str) -> None:
        self._disconnect(code, reason)

    def _on_error(self, exc: WebSocketError) -> None:
        logger.info("WebSocket protocol error: %s", exc)
        self._disconnect(exc.status_code, "")

    def _on_pong(self, data: bytes) -> None:
        timer = self.pong_timer
        if timer is not None:
            timer.cancel()
            self.pong_timer = None

    # -- keepalive -------------------------------------------------------------------------------

    def _start_keepalive(self) -> None:
        interval = self.config.ws_ping_interval
        if interval is not None and interval > 0:
            self.ping_timer = self.loop.call_later(interval, self._send_ping)

    def _stop_keepalive(self) -> None:
        for timer in (self.ping_timer, self.pong_timer):
            if timer is not None:
                timer.cancel()
        self.ping_timer = self.pong_timer = None

    def _send_ping(self) -> None:
        self.ping_timer = None
        proto = self.proto
        if proto is None or proto.state is not OPEN or self.app_closed:
            return
        proto.ping(b"")
        self._flush()
        timeout = self.config.ws_ping_timeout
        if timeout is not None and self.pong_timer is None:
            self.pong_timer = self.loop.call_later(timeout, self._pong_missed)
        interval = self.config.ws_ping_interval
        assert interval is not None
        self.ping_timer = self.loop.call_later(interval, self._send_ping)

    def _pong_missed(self) -> None:
        self.pong_timer = None
        proto = self.proto
        if proto is None or proto.state is CLOSED:
            return
        self._stop_keepalive()
        proto.fail(_keepalive_expired())
        self._flush()
        if proto.pending:
            self._apply(proto)
        if self.transport is not None:
            self.transport.close()  # the peer is unresponsive: do not wait for its close

    # -- writing and flow control ----------------------------------------------------------------

    def _write(self, data: Any) -> None:
        out = self.out
        size = self.out_size + len(data)
        if size > _FLUSH_AT and out and len(data) < _FLUSH_AT:
            # This frame would take the batch past the limit: write the batch (one write of
            # at most the limit) and start the next one with the frame.
            self._flush()
            out = self.out
            size = len(data)
        out.append(data)
        self.out_size = size
        if size > _FLUSH_AT:
            self._flush()
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self.flush_scheduled = False
        self._flush()

    def _flush(self) -> None:
        out = self.out
        if not out:
            return
        self.out = []
        size = self.out_size
        self.out_size = 0
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if len(out) == 1:
            transport.write(out[0])
        elif size <= _FLUSH_AT:
            transport.write(b"".join(out))
        else:
            for chunk in coalesce(out, _FLUSH_AT):
                if transport.is_closing():
                    return
                transport.write(chunk)

    def _apply(self, proto: Protocol) -> None:
        """Do what the protocol asked of the transport: abort, arm the timer, half-close."""
        proto.pending = False
        transport = self.transport
        assert transport is not None
        if proto.held is not None:
            self.held_paused = True
            self._pause_reading()
        elif self.held_paused:
            self.held_paused = False
            self._resume_reading()
        if proto.abort_due:
            proto.abort_due = False
            self.out = []
            self.out_size = 0
            transport.abort()
            return
        seconds = proto.timer
        if seconds is not None:
            proto.timer = None
            if self.close_timer is not None:
                self.close_timer.cancel()
            self.close_timer = self.loop.call_later(seconds, self._expire)
        if proto.eof_due:
            proto.eof_due = False
            self._flush()
            if transport.is_closing():
                return
            if transport.can_write_eof():
                try:
                    transport.write_eof()
                except OSError:
                    transport.abort()
            else:
                transport.close()

    def _expire(self) -> None:
        self.close_timer = None
        proto = self.proto
        if proto is not None:
            proto.expire()
            self._flush()
            if proto.pending:
                self._apply(proto)

    def _pause_reading(self) -> None:
        transport = self.transport
        if transport is not None and transport.is_reading():
            transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.queue_paused or self.held_paused or self.lost:
            return
        transport = self.transport
        if transport is not None and not transport.is_reading() and not transport.is_closing():
            transport.resume_reading()

    def _unpause_queue(self) -> None:
        self.queue_paused = False
        proto = self.proto
        if proto is not None:
            receiver = proto.receiver
            receiver.paused = False
            if receiver.has_buffered:
                self.data_received(b"")
        self._resume_reading()

"""The threaded server: :func:`serve` listens, and each accepted connection gets a thread that
runs the opening handshake, then the handler.

The decisions are the sans-I/O ones of :mod:`wsfast.handshake` (:class:`ServerHandshake`,
``check_request`` in ws' order, ``verify_refusal``, :class:`Upgrade`); this module reads the
request from the socket, calls ``verify_client`` and ``handle_protocols`` and writes the answer.
"""

from __future__ import annotations

import inspect
import logging
import os
import selectors
import socket
import stat
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..constants import DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT
from ..exceptions import ConnectionClosed
from ..handshake import (
    SERVER_ERROR,
    SERVICE_UNAVAILABLE,
    Refusal,
    Request,
    ServerHandshake,
    Upgrade,
    arity,
    verify_refusal,
)
from ..log import SERVER_LOGGER, Logger, format_peer, resolve_logger
from ..options import ConnectionOptions, ServerOptions, ServerOptionsDict
from ..protocol import OPEN
from ..websocket_server import VerifyInfo
from .connection import Connection
from .transport import Stream, TLSStream

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ServerConnection", "Server", "serve"]

logger = logging.getLogger(SERVER_LOGGER)


class ServerConnection(Connection):
    """The server side of a connection (what the handler gets)."""

    def __init__(
        self,
        stream: Stream,
        options: ConnectionOptions,
        upgrade: Upgrade,
        protocol: str,
        head: bytes,
    ) -> None:
        super().__init__(
            stream,
            is_server=True,
            options=options,
            protocol=protocol,
            extensions=upgrade.extensions,
            deflate=upgrade.deflate,
        )
        self.request: Request = upgrade.request
        """The upgrade request: ``method``, ``path``, ``headers``, ``remote_address``."""
        self._start(head)


class Server:
    """A listening WebSocket server; one thread per connection runs ``handler(ws)``.

    ``handler(ws)`` (or ``handler(ws, request)``) owns its connection, which is closed with
    1000 when it returns, 1011 when it raises. :meth:`serve_forever` accepts connections until
    :meth:`shutdown`; leaving a ``with`` block shuts down and closes open connections with 1001.
    """

    def __init__(self, handler: Callable[..., Any], options: ServerOptions) -> None:
        if options.no_server:
            raise ValueError("wsfast.sync.serve listens itself: no_server is not supported")
        self.options = options
        """The validated options."""
        self.logger: Logger = resolve_logger(options.logger, SERVER_LOGGER)
        """Where the server and its connections log (``logger=``, default ``wsfast.server``)."""
        self._handler = handler
        self._handler_arity = arity(handler)
        self._verify_arity = arity(options.verify_client) if options.verify_client else 0
        self._connection_options = options.connection()
        self._lock = threading.Lock()
        self._connections: set[ServerConnection] = set()
        self._threads: set[threading.Thread] = set()
        self._handshakes = 0
        self._running = True
        self._closing = False
        self._serving = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self.socket = self._listen()
        """The listening socket."""

    def _listen(self) -> socket.socket:
        options = self.options
        if options.sock is not None:
            sock: socket.socket = options.sock
        elif options.unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(options.unix_path)
                sock.listen(options.backlog)
            except BaseException:
                sock.close()
                raise
        else:
            host = options.host or ""
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.create_server(
                (host, options.port or 0),
                family=family,
                backlog=options.backlog,
                reuse_port=bool(options.reuse_port),
            )
        sock.setblocking(False)
        return sock

    def address(self) -> Any:
        """``(host, port)`` of the listening socket, or the path of a Unix socket."""
        name = self.socket.getsockname()
        return (name[0], name[1]) if isinstance(name, tuple) else name

    @property
    def connections(self) -> set[ServerConnection]:
        """The open connections (a copy)."""
        with self._lock:
            return set(self._connections)

    # -- accepting -----------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown` (from another thread or a handler)."""
        with self._serving, selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while self._running:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r or not self._running:
                        return
                    try:
                        sock, address = self.socket.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as exc:  # EMFILE and the like: keep serving the others
                        self.logger.warning("accept failed: %s", exc)
                        continue
                    self._spawn(sock, address)

    def _spawn(self, sock: socket.socket, address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(sock, address),
            name=f"wsfast.sync handler {address}",
            daemon=True,
        )
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def shutdown(self) -> None:
        """Stop accepting connections and close the listening socket (open connections are
        left alone, as ws' ``close()``); waits for :meth:`serve_forever` to return."""
        if self._running:
            self._running = False
            try:
                self._wake_w.send(b"x")
            except OSError:  # pragma: no cover
                pass
        with self._serving:  # serve_forever has returned
            if self.socket.fileno() == -1:
                return
            path = self.options.unix_path
            self.socket.close()
            self._wake_r.close()
            self._wake_w.close()
        if path is not None and _is_socket(path):
            os.unlink(path)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown()
        with self._lock:
            self._closing = True
        for ws in self.connections:
            if ws.state is OPEN:
                threading.Thread(target=ws.close, args=(1001,), daemon=True).start()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(self.options.close_timeout)

    # -- one connection ------------------------------------------------------------------------

    def _full(self) -> bool:
        options = self.options
        cap = options.max_handshakes
        if cap is not None and self._handshakes >= cap:
            return True
        cap = options.max_connections
        return cap is not None and self._handshakes + len(self._connections) >= cap

    def _serve_connection(self, sock: socket.socket, address: Any) -> None:
        try:
            with self._lock:
                full = self._full()
                if not full:
                    self._handshakes += 1
            if full:
                _answer(Stream(sock), SERVICE_UNAVAILABLE)
                return
            try:
                ws = self._handshake(sock, address)
            finally:
                with self._lock:
                    self._handshakes -= 1
            if ws is None:
                return
            with self._lock:
                self._connections.add(ws)
                closing = self._closing
            try:
                if closing:  # opened while the server was leaving its with block
                    ws.close(1001)
                self._run_handler(ws)
            finally:
                with self._lock:
                    self._connections.discard(ws)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _handshake(self, sock: socket.socket, address: Any) -> ServerConnection | None:
        options = self.options
        stream: Stream | None = None
        try:
            sock.settimeout(options.handshake_timeout or None)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if options.ssl is not None:
                stream = TLSStream(sock, options.ssl, server_side=True)
            else:
                stream = Stream(sock)
            handshake = ServerHandshake(options)
            outcome: Request | Refusal | None = None
            while outcome is None:
                data = stream.recv()
                if not data:
                    stream.close()
                    return None
                outcome = handshake.receive_data(data, address, stream.secure)
            if isinstance(outcome, Refusal):
                _answer(stream, outcome)
                return None
            decision = handshake.check(outcome)
            if isinstance(decision, Upgrade):
                decision, protocol = self._decide(decision)
            if isinstance(decision, Refusal):
                _answer(stream, decision)
                return None
            stream.sendall(Upgrade.response(decision.headers(protocol)))
            stream.settimeout(None)
        except Exception as exc:  # the peer's doing (reset, timeout, TLS): nothing to report
            self.logger.debug("opening handshake failed with %s: %s", address, exc)
            (stream or Stream(sock)).close()
            return None
        ws = ServerConnection(
            stream, self._connection_options, decision, protocol, handshake.take_rest()
        )
        log = ws.logger
        if log.isEnabledFor(logging.INFO):
            log.info(
                "connection open: %s %s", format_peer(ws.remote_address), decision.request.path
            )
        return ws

    def _decide(self, upgrade: Upgrade) -> tuple[Upgrade | Refusal, str]:
        """``verify_client``, the server's state and ``handle_protocols``, in ws' order."""
        options = self.options
        request = upgrade.request
        if options.verify_client is not None:
            try:
                refusal = verify_refusal(
                    self._verify(VerifyInfo(upgrade.origin, request.secure, request))
                )
            except Exception:
                self.logger.exception("verify_client raised")
                return SERVER_ERROR, ""
            if refusal is not None:
                return refusal, ""
        if not self._running:
            return SERVICE_UNAVAILABLE, ""
        try:
            return upgrade, upgrade.select_protocol(options.handle_protocols)
        except Exception:
            self.logger.exception("handle_protocols raised")
            return SERVER_ERROR, ""

    def _verify(self, info: VerifyInfo) -> Any:
        verify = self.options.verify_client
        assert verify is not None
        if self._verify_arity < 2:
            result = verify(info)
            if inspect.isawaitable(result):
                raise TypeError("wsfast.sync: verify_client must not return an awaitable")
            return result
        answer: list[Any] = []
        done = threading.Event()

        def callback(
            ok: bool, code: int = 401, message: str | None = None, headers: Any = None
        ) -> None:
            if not done.is_set():
                answer.append((ok, code, message, headers))
                done.set()

        verify(info, callback)
        if not done.wait(self.options.handshake_timeout or None):
            raise TimeoutError("verify_client did not answer within handshake_timeout")
        return answer[0]

    def _run_handler(self, ws: ServerConnection) -> None:
        try:
            if self._handler_arity >= 2:
                self._handler(ws, ws.request)
            else:
                self._handler(ws)
        except ConnectionClosed as exc:
            self.logger.debug("connection closed under its handler: %s %s", exc.code, exc.reason)
        except Exception:
            self.logger.exception("connection handler raised")
            ws.close(1011)
        # As in the asyncio API: the connection ends with its handler.
        ws.close(1000)


def _answer(stream: Stream, refusal: Refusal) -> None:
    """Write a refusal and close the connection."""
    logger.debug("opening handshake refused with %d %s", refusal.status, refusal.message)
    try:
        stream.sendall(refusal.response())
        stream.shutdown_write()
    except OSError:
        pass
    finally:
        stream.close()


def _is_socket(path: Any) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def serve(
    handler: Callable[..., Any],
    host: str | None = None,
    port: int | None = None,
    /,
    **options: Unpack[ServerOptionsDict],
) -> Server:
    """Listen at once and return the :class:`Server`; ``with serve(...) as server:`` then
    ``server.serve_forever()``.

    The options are :func:`wsfast.serve`'s (``no_server`` excepted; ``unix_path`` and ``sock``
    work). ``port`` 0 or no port picks a free one (see :meth:`Server.address`).
    """
    # Keepalive on by default, as wsfast.serve (and websockets).
    args: dict[str, Any] = {
        "ping_interval": DEFAULT_PING_INTERVAL,
        "ping_timeout": DEFAULT_PING_TIMEOUT,
        **options,
    }
    host = host if host is not None else args.pop("host", None)
    port = port if port is not None else args.pop("port", None)
    args.pop("host", None)
    args.pop("port", None)
    if port is None and not any(k in args for k in ("unix_path", "sock", "no_server")):
        port = 0
    return Server(handler, ServerOptions.build(host=host, port=port, **args))

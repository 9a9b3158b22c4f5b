"""The blocking client: :func:`connect` runs the opening handshake over a socket.

The handshake itself is the sans-I/O :class:`~wsfast.handshake.ClientHandshake` (redirects,
extensions, the checks of the 101); this module opens the socket (TCP, TLS, a Unix socket, or a
tunnel through an HTTP proxy), writes the request and feeds it the answer.
"""

from __future__ import annotations

import socket
import ssl as ssl_module
import time
from typing import TYPE_CHECKING, Any

from ..constants import DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT, MAX_PROXY_HEAD
from ..handshake import ClientHandshake, HeadReader, Response
from ..options import ClientOptions, ClientOptionsDict
from ..proxy import ProxyError, connect_request, parse_proxy_url, tunnel_answer
from ..url import ParsedURL
from .connection import Connection
from .transport import Stream, TLSStream

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ClientConnection", "connect"]


class ClientConnection(Connection):
    """The client side of a connection (what :func:`connect` returns)."""

    def __init__(
        self, stream: Stream, options: ClientOptions, handshake: ClientHandshake, head: bytes
    ) -> None:
        super().__init__(
            stream,
            is_server=False,
            options=options,
            protocol=handshake.protocol,
            extensions=handshake.extensions,
            deflate=handshake.deflate,
        )
        self.url = handshake.address
        """The URL connected to, after redirects."""
        assert handshake.response is not None
        self.response: Response = handshake.response
        """The 101 response."""
        self._start(head)


class _Deadline:
    """``handshake_timeout`` over the whole attempt: each blocking call gets what is left."""

    def __init__(self, timeout: float | None) -> None:
        self.end = None if timeout is None else time.monotonic() + timeout

    def left(self) -> float | None:
        if self.end is None:
            return None
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("Opening handshake has timed out")
        return left


def _tunnel(proxy: str, url: ParsedURL, deadline: _Deadline) -> tuple[socket.socket, bytes]:
    """A socket tunnelled to ``url`` through an HTTP proxy (CONNECT), and the bytes that
    followed the proxy's answer."""
    host, port, userinfo = parse_proxy_url(proxy)
    sock = socket.create_connection((host, port), timeout=deadline.left())
    try:
        sock.sendall(connect_request(url.host, url.port, userinfo))
        reader = HeadReader(MAX_PROXY_HEAD, 256)
        data = b""
        while True:
            sock.settimeout(deadline.left())
            rest = tunnel_answer(reader, data)
            if rest is not None:
                return sock, rest
            data = sock.recv(65536)
            if not data:
                raise ProxyError("The proxy closed the connection before the tunnel was open")
    except BaseException:
        sock.close()
        raise


def _open(url: ParsedURL, options: ClientOptions, deadline: _Deadline) -> Stream:
    sock: socket.socket
    rest = b""
    if url.unix_path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(deadline.left())
            sock.connect(url.unix_path)
        except BaseException:
            sock.close()
            raise
    elif options.proxy:
        sock, rest = _tunnel(options.proxy, url, deadline)
    else:
        sock = socket.create_connection((url.host, url.port), timeout=deadline.left())
    try:
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not url.secure:
            stream = Stream(sock)
            if rest:  # pragma: no cover - a proxy speaks no further before the server does
                raise ProxyError("Unexpected bytes after the proxy's answer")
            return stream
        given = options.ssl
        context = given if isinstance(given, ssl_module.SSLContext) else None
        context = context or ssl_module.create_default_context()
        sock.settimeout(deadline.left())
        return TLSStream(sock, context, server_side=False, server_hostname=url.host, initial=rest)
    except BaseException:
        sock.close()
        raise


def connect(url: str, **options: Unpack[ClientOptionsDict]) -> ClientConnection:
    """Open a client connection; use it with ``with`` to close it at the end.

    The options are :func:`wsfast.connect`'s. ``handshake_timeout`` bounds each attempt
    (connecting, TLS, the answer's head). Raises :class:`wsfast.HandshakeError` (a refused or
    invalid answer; ``http_status`` set), :class:`wsfast.InvalidURL`, :class:`wsfast.ProxyError`,
    :class:`TimeoutError`, :class:`OSError` or :class:`ssl.SSLError`, with the socket closed.
    """
    # Keepalive on by default, as wsfast.connect (and websockets).
    args: dict[str, Any] = {
        "ping_interval": DEFAULT_PING_INTERVAL,
        "ping_timeout": DEFAULT_PING_TIMEOUT,
        **options,
    }
    built = ClientOptions.build(**args)
    if built.create_connection is not None:
        raise ValueError("create_connection is an asyncio hook; wsfast.sync does not take it")
    handshake = ClientHandshake(url, built)
    while True:
        headers = handshake.prepare_headers()
        deadline = _Deadline(built.handshake_timeout)
        stream = _open(handshake.url, built, deadline)
        try:
            stream.sendall(handshake.request(headers))
            while handshake.state == handshake.HEAD:
                stream.settimeout(deadline.left())
                data = stream.recv()
                if data:
                    handshake.receive_data(data)
                else:
                    handshake.receive_eof()
        except BaseException:
            stream.close()
            raise
        if handshake.state == handshake.OPEN:
            stream.settimeout(None)
            return ClientConnection(stream, built, handshake, handshake.take_rest())
        stream.close()
        if handshake.state == handshake.REDIRECT:
            handshake.follow()
            continue
        if handshake.state == handshake.FAILED:
            assert handshake.error is not None
            raise handshake.error
        raise handshake.unexpected_error()

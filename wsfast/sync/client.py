"""The blocking client: :func:`connect` runs the opening handshake over a socket.

The handshake itself is the sans-I/O :class:`~wsfast.handshake.ClientHandshake` (redirects,
extensions, the checks of the 101); this module opens the socket (TCP, TLS, a Unix socket, or a
way through a proxy: HTTP CONNECT over TCP or TLS, or SOCKS through python-socks' sync API),
writes the request and feeds it the answer.
"""

from __future__ import annotations

import socket
import ssl as ssl_module
import time
from typing import TYPE_CHECKING, Any

from ..constants import DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT, MAX_PROXY_HEAD
from ..handshake import ClientHandshake, HeadReader, Response
from ..options import ClientOptions, ClientOptionsDict
from ..proxy import (
    SOCKS_TIMEOUT,
    ProxyError,
    ProxyURL,
    connect_request,
    default_ssl_context,
    parse_proxy_url,
    proxy_unreachable,
    select_proxy,
    socks_error,
    socks_proxy,
    tunnel_answer,
)
from ..url import ParsedURL
from .connection import Connection
from .transport import Stream, StreamSocket, TLSStream

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


def _via_proxy(
    proxy: ProxyURL, url: ParsedURL, options: ClientOptions, deadline: _Deadline
) -> tuple[Stream, bytes]:
    """A stream connected to ``url`` through ``proxy``, and the bytes that followed an HTTP
    proxy's answer to CONNECT."""
    if proxy.is_socks:
        socks = socks_proxy(proxy, blocking=True)
        try:
            sock = socks.connect(url.host, url.port, timeout=deadline.left() or SOCKS_TIMEOUT)
        except Exception as exc:
            raise socks_error(proxy, exc) from exc
        return Stream(sock), b""
    try:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=deadline.left())
    except OSError as exc:
        raise proxy_unreachable(proxy, exc) from exc
    stream = Stream(sock)
    try:
        if proxy.scheme == "https":
            context = options.proxy_ssl or default_ssl_context()
            try:
                stream = TLSStream(sock, context, server_side=False, server_hostname=proxy.host)
            except OSError as exc:
                raise proxy_unreachable(proxy, exc) from exc
        stream.sendall(connect_request(url.host, url.port, proxy.userinfo))
        reader = HeadReader(MAX_PROXY_HEAD, 256)
        data = b""
        while True:
            stream.settimeout(deadline.left())
            rest = tunnel_answer(reader, data)
            if rest is not None:
                return stream, rest
            data = stream.recv()
            if not data:
                raise ProxyError("The proxy closed the connection before the tunnel was open")
    except BaseException:
        stream.close()
        raise


def _open(url: ParsedURL, options: ClientOptions, deadline: _Deadline) -> Stream:
    rest = b""
    proxy = select_proxy(options.proxy, url)
    if url.unix_path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(deadline.left())
            sock.connect(url.unix_path)
        except BaseException:
            sock.close()
            raise
        stream = Stream(sock)
    elif proxy is not None:
        stream, rest = _via_proxy(parse_proxy_url(proxy), url, options, deadline)
    else:
        stream = Stream(socket.create_connection((url.host, url.port), timeout=deadline.left()))
    try:
        if stream.sock.family != socket.AF_UNIX:
            stream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not url.secure:
            if rest:  # pragma: no cover - a proxy speaks no further before the server does
                raise ProxyError("Unexpected bytes after the proxy's answer")
            return stream
        given = options.ssl
        context = given if isinstance(given, ssl_module.SSLContext) else None
        context = context or default_ssl_context()
        stream.settimeout(deadline.left())
        # TLS inside the TLS to an https:// proxy runs over that stream, else over the socket.
        inner = StreamSocket.over(stream)
        return TLSStream(inner, context, server_side=False, server_hostname=url.host, initial=rest)
    except BaseException:
        stream.close()
        raise


def connect(url: str, **options: Unpack[ClientOptionsDict]) -> ClientConnection:
    """Open a client connection; use it with ``with`` to close it at the end.

    The options are :func:`wsfast.connect`'s, with its defaults: keepalive on, and
    ``proxy=True`` (the proxy comes from the environment; see :func:`wsfast.connect`;
    ``proxy=None`` connects directly). ``handshake_timeout`` bounds each attempt (connecting,
    the proxy, TLS, the answer's head). Raises :class:`wsfast.HandshakeError` (a refused or
    invalid answer; ``http_status`` set), :class:`wsfast.InvalidURL`, :class:`wsfast.ProxyError`,
    :class:`TimeoutError`, :class:`OSError` or :class:`ssl.SSLError`, with the socket closed.
    """
    # Keepalive on by default, as wsfast.connect (and websockets).
    args: dict[str, Any] = {
        "ping_interval": DEFAULT_PING_INTERVAL,
        "ping_timeout": DEFAULT_PING_TIMEOUT,
        "proxy": True,
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

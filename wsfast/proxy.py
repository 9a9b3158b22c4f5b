"""Client connections through an HTTP proxy with a CONNECT tunnel (RFC 9110 section 9.3.6).

ws has no proxy option of its own: its users pass an ``agent`` such as ``https-proxy-agent``,
which does what :func:`open_via_proxy` does here. The client asks the proxy for a tunnel to the
WebSocket server (with ``Proxy-Authorization: Basic`` when the proxy URL carries credentials),
upgrades the tunnel to TLS with ``loop.start_tls`` for ``wss://``, then hands the transport to the
handshake protocol, whose ``connection_made`` writes the upgrade request.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from typing import Any
from urllib.parse import urlsplit

from .constants import MAX_PROXY_HEAD
from .exceptions import HandshakeError
from .handshake import HeadReader, RequestError
from .url import ParsedURL, basic_auth

__all__ = [
    "ProxyError",
    "open_via_proxy",
    "connect_request",
    "fail_future",
    "parse_proxy_url",
    "tunnel_answer",
]


def fail_future(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Fail ``future`` and mark its exception retrieved: when the awaiting task was cancelled
    (a handshake timeout, close() while connecting), nobody else would, and asyncio would log
    "Future exception was never retrieved" for a failure that was already handled."""
    if not future.done():
        future.set_exception(exc)
        future.exception()


class ProxyError(HandshakeError):
    """The proxy could not be reached or refused the tunnel; ``http_status`` is its status."""

    def __init__(self, message: str, http_status: int = 0) -> None:
        super().__init__(message, "WS_ERR_PROXY", 1002, http_status)


def connect_request(host: str, port: int, userinfo: str = "") -> bytes:
    """The CONNECT request for ``host:port``, with Basic proxy credentials when given."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if userinfo:
        lines.append(f"Proxy-Authorization: {basic_auth(userinfo)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_proxy_url(proxy_url: str) -> tuple[str, int, str]:
    """``(host, port, userinfo)`` of an ``http://[user:pass@]host[:port]`` proxy URL;
    ValueError for anything else."""
    parts = urlsplit(proxy_url)
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise ValueError(f"Unsupported proxy URL {proxy_url!r}: only http://host:port is supported")
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    return parts.hostname, parts.port or 80, userinfo


def tunnel_answer(reader: HeadReader, data: bytes) -> bytes | None:
    """Feed the proxy's answer to CONNECT: None while its head is incomplete, then the bytes
    that followed a 2xx head (the tunnel is open); :class:`ProxyError` for a refusal or an
    answer that is not HTTP."""
    try:
        if not reader.feed(data):
            return None
        response = reader.response()
    except (RequestError, HandshakeError):
        raise ProxyError("Invalid response from the proxy to CONNECT") from None
    status = response.status
    if not 200 <= status < 300:
        # 407 without credentials, 403 for a port the proxy does not tunnel to, 502...
        message = f"Proxy refused the tunnel: {status} {response.reason}".rstrip()
        raise ProxyError(message, status)
    return reader.take_rest()


class _TunnelProtocol(asyncio.Protocol):
    """Sends CONNECT and waits for the proxy's head; keeps any bytes that follow it."""

    def __init__(self, request: bytes, done: asyncio.Future[bytes]) -> None:
        self.request = request
        self.done = done
        self.reader = HeadReader(MAX_PROXY_HEAD, 256)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.done.done():  # pragma: no cover - reading is paused once the head is in
            self.reader.buffer += data
            return
        try:
            leftover = tunnel_answer(self.reader, data)
        except ProxyError as exc:
            self._fail(exc)
            return
        if leftover is None:
            return
        assert self.transport is not None
        # The tunnel is open: what follows belongs to the next protocol, which is not here yet.
        self.transport.pause_reading()
        self.done.set_result(leftover)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            detail = "" if exc is None else f": {exc}"
            fail_future(
                self.done,
                ProxyError(f"The proxy closed the connection before the tunnel was open{detail}"),
            )

    def _fail(self, exc: BaseException) -> None:
        # Only data_received fails, before the head is accepted: done is pending, transport set.
        fail_future(self.done, exc)
        assert self.transport is not None
        self.transport.abort()


async def open_via_proxy(
    proxy_url: str,
    url: ParsedURL,
    protocol: asyncio.Protocol,
    ssl_context: ssl_module.SSLContext | None,
) -> asyncio.Transport:
    """Open a tunnel to ``url`` through the ``http://`` proxy and attach ``protocol`` to it.

    ``protocol.connection_made`` is called with the tunnel's transport (the TLS transport for
    ``wss://``), exactly as ``loop.create_connection`` would. Raises :class:`ProxyError` when the
    proxy refuses, :class:`OSError` when it cannot be reached, :class:`ssl.SSLError` when the
    WebSocket server's certificate does not verify.
    """
    proxy_host, proxy_port, userinfo = parse_proxy_url(proxy_url)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    tunnel = _TunnelProtocol(connect_request(url.host, url.port, userinfo), done)
    transport, _ = await loop.create_connection(lambda: tunnel, proxy_host, proxy_port)
    try:
        leftover = await done
        if ssl_context is not None:
            # start_tls does not call connection_made on the new protocol: done below.
            tls = await loop.start_tls(transport, protocol, ssl_context, server_hostname=url.host)
            if tls is None:  # pragma: no cover - only when the transport closed meanwhile
                raise ProxyError("The proxy closed the tunnel during the TLS handshake")
            transport = tls
            leftover = b""  # a TLS server speaks only after the ClientHello; nothing to keep
        else:
            transport.set_protocol(protocol)
    except BaseException:
        transport.abort()
        raise
    protocol.connection_made(transport)
    if leftover:
        protocol.data_received(leftover)
    if ssl_context is None:
        transport.resume_reading()
    return transport

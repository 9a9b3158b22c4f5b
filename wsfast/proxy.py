"""Client connections through a proxy: HTTP CONNECT (RFC 9110 section 9.3.6), over TCP or TLS,
and SOCKS 4, 4a and 5 (through python-socks, the optional extra ``wsfast[socks]``).

ws has no proxy option of its own: its users pass an ``agent`` such as ``https-proxy-agent`` or
``socks-proxy-agent``, which does what :func:`open_via_proxy` does here. For ``http://`` and
``https://`` proxies the client asks the proxy for a tunnel to the WebSocket server (with
``Proxy-Authorization: Basic`` when the proxy URL carries credentials); ``https://`` runs TLS to
the proxy first. For ``socks*://`` proxies python-socks returns a socket already connected to
the WebSocket server through the proxy, which ``loop.create_connection(sock=...)`` adopts. Either
way TLS to the WebSocket server (``wss://``) runs inside the tunnel, then the handshake protocol
takes the transport, its ``connection_made`` writing the upgrade request.

:func:`select_proxy` turns the ``proxy=`` option into a proxy URL or None: ``True`` reads the
environment as :mod:`urllib.request` does (``HTTP_PROXY`` for ``ws://``, ``HTTPS_PROXY`` for
``wss://``, ``ALL_PROXY`` otherwise, ``NO_PROXY``), never for localhost or a loopback address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl as ssl_module
import sys
import threading
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from .constants import MAX_PROXY_HEAD
from .exceptions import HandshakeError
from .handshake import HeadReader, RequestError
from .url import ParsedURL, basic_auth

__all__ = [
    "default_ssl_context",
    "PROXY_SCHEMES",
    "SOCKS_TIMEOUT",
    "ProxyError",
    "ProxyURL",
    "open_via_proxy",
    "connect_request",
    "fail_future",
    "parse_proxy_url",
    "proxy_unreachable",
    "select_proxy",
    "socks_error",
    "socks_proxy",
    "tunnel_answer",
]

#: The proxy URL schemes and their default ports.
PROXY_SCHEMES = {
    "http": 80,
    "https": 443,
    "socks4": 1080,
    "socks4a": 1080,
    "socks5": 1080,
    "socks5h": 1080,
}

#: The timeout given to python-socks, which wants a number of seconds, when the caller has no
#: deadline of its own: the caller's handshake_timeout is what bounds an attempt.
SOCKS_TIMEOUT = 24 * 3600.0

SOCKS_MISSING = 'SOCKS proxies need python-socks: pip install "wsfast[socks]"'


def fail_future(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Fail ``future`` and mark its exception retrieved: when the awaiting task was cancelled
    (a handshake timeout, close() while connecting), nobody else would, and asyncio would log
    "Future exception was never retrieved" for a failure that was already handled."""
    if not future.done():
        future.set_exception(exc)
        future.exception()


_default_ssl_context: ssl_module.SSLContext | None = None
_default_ssl_lock = threading.Lock()


def default_ssl_context() -> ssl_module.SSLContext:
    """The TLS context of every ``wss://`` connection and ``https://`` proxy given none.

    ``ssl.create_default_context()`` loads the system's CA certificates each time it is called
    (18 ms per connection in issue 9); the context is made once, on first use, and shared (an
    ``SSLContext`` may serve many connections and threads at once). The lock makes ``wsfast.sync``
    threads that connect together build it once. A context given with ``ssl=`` or
    ``proxy_ssl=`` is used as it is.
    """
    global _default_ssl_context
    context = _default_ssl_context
    if context is None:
        with _default_ssl_lock:
            context = _default_ssl_context
            if context is None:
                context = _default_ssl_context = ssl_module.create_default_context()
    return context


class ProxyError(HandshakeError):
    """The proxy could not be reached, failed its TLS, or refused (the tunnel, the credentials,
    the target); ``http_status`` is an HTTP proxy's status, else 0."""

    def __init__(self, message: str, http_status: int = 0) -> None:
        super().__init__(message, "WS_ERR_PROXY", 1002, http_status)


def connect_request(host: str, port: int, userinfo: str = "") -> bytes:
    """The CONNECT request for ``host:port``, with Basic proxy credentials when given."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if userinfo:
        lines.append(f"Proxy-Authorization: {basic_auth(userinfo)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True)
class ProxyURL:
    """A parsed proxy URL: ``scheme://[user[:password]@]host[:port]``."""

    scheme: str
    """One of :data:`PROXY_SCHEMES`, lowercased."""
    host: str
    port: int
    userinfo: str = ""
    """``user:password`` as written in the URL (percent-encoded)."""

    @property
    def username(self) -> str | None:
        """The user name, percent-decoded; None without credentials."""
        return unquote(self.userinfo.partition(":")[0]) if self.userinfo else None

    @property
    def password(self) -> str | None:
        """The password, percent-decoded; None without credentials."""
        return unquote(self.userinfo.partition(":")[2]) if self.userinfo else None

    @property
    def is_socks(self) -> bool:
        return self.scheme.startswith("socks")

    @property
    def address(self) -> str:
        """``host:port`` for messages (never the credentials)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_proxy_url(proxy_url: str) -> ProxyURL:
    """Parse a proxy URL of one of :data:`PROXY_SCHEMES`; ValueError for anything else."""
    parts = urlsplit(proxy_url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
        scheme = ""  # an invalid port: reported below with the URL
    if scheme not in PROXY_SCHEMES or not parts.hostname:
        schemes = ", ".join(f"{s}://" for s in PROXY_SCHEMES)
        raise ValueError(
            f"Unsupported proxy URL {_redact(proxy_url)!r}: use {schemes} with a host and port"
        )
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    return ProxyURL(scheme, parts.hostname, port or PROXY_SCHEMES[scheme], userinfo)


def _redact(proxy_url: str) -> str:
    scheme, sep, rest = proxy_url.partition("://")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return f"{scheme}{sep}{netloc}{slash}{path}"


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def select_proxy(proxy: str | bool | None, url: ParsedURL) -> str | None:
    """The proxy URL to reach ``url`` through, or None for a direct connection.

    ``None``, ``False`` or ``""``: direct. A string: that proxy, for every host (loopback
    included). ``True``: the environment, as :func:`urllib.request.getproxies` and
    :func:`urllib.request.proxy_bypass` read it (lower case variables win; on macOS and Windows
    the system settings): ``wss_proxy`` then ``https_proxy`` for ``wss://``, ``ws_proxy`` then
    ``http_proxy`` for ``ws://``, ``all_proxy`` for either; ``no_proxy`` (``*``, host names and
    domain suffixes, ``host:port``) bypasses the proxy. As Go's ``ProxyFromEnvironment``,
    ``localhost`` and loopback addresses are never proxied from the environment. A value
    without a scheme (``proxy.example:3128``) is an ``http://`` proxy, as curl reads it.
    """
    if proxy is None or proxy is False:
        return None
    if isinstance(proxy, str):
        return proxy or None
    if url.unix_path is not None or _is_loopback(url.host):
        return None
    host = f"[{url.host}]" if ":" in url.host else url.host
    if urllib.request.proxy_bypass(f"{host}:{url.port}"):
        return None
    proxies = urllib.request.getproxies()
    keys = ("wss", "https", "all") if url.secure else ("ws", "http", "all")
    for key in keys:
        value = proxies.get(key, "").strip()
        if value:
            return value if "://" in value else f"http://{value}"
    return None


def proxy_unreachable(proxy: ProxyURL, exc: OSError) -> ProxyError:
    """The :class:`ProxyError` for a proxy that could not be reached or whose TLS failed
    (raise it ``from exc``)."""
    if isinstance(exc, ssl_module.SSLError):
        return ProxyError(f"TLS with the proxy {proxy.address} failed: {exc}")
    return ProxyError(f"Cannot reach the proxy {proxy.address}: {exc}")


def socks_proxy(proxy: ProxyURL, *, blocking: bool) -> Any:
    """python-socks' proxy object for a ``socks*://`` URL: its sync API when ``blocking``,
    else its asyncio API (call from the event loop). ImportError naming the extra without it."""
    try:
        from python_socks import ProxyType

        if blocking:
            from python_socks.sync import Proxy
        else:
            from python_socks.async_.asyncio import Proxy  # type: ignore[assignment]
    except ImportError as exc:
        # python-socks itself, or what it needs (async-timeout on Python 3.10).
        raise ImportError(f"{SOCKS_MISSING} (for {proxy.scheme}:// proxies; {exc})") from exc
    kind = ProxyType.SOCKS5 if proxy.scheme.startswith("socks5") else ProxyType.SOCKS4
    return Proxy(
        kind,
        proxy.host,
        proxy.port,
        username=proxy.username,
        password=proxy.password,
        # socks5h and socks4a: the proxy resolves the WebSocket server's name.
        rdns=proxy.scheme in ("socks5h", "socks4a"),
    )


def socks_error(proxy: ProxyURL, exc: Exception) -> BaseException:
    """What to raise (``from exc``) for python-socks' ``exc``: a :class:`ProxyError` for its
    errors, ``exc`` itself for anything else."""
    import python_socks

    if isinstance(exc, python_socks.ProxyConnectionError):
        cause = exc.__cause__
        return proxy_unreachable(proxy, cause if isinstance(cause, OSError) else exc)
    if isinstance(exc, python_socks.ProxyTimeoutError):
        # Only wsfast.sync gives python-socks a deadline (what is left of handshake_timeout).
        return TimeoutError("Opening handshake has timed out (waiting for the proxy)")
    if isinstance(exc, python_socks.ProxyError):
        return ProxyError(f"The SOCKS proxy {proxy.address} refused: {exc}")
    return exc


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
    proxy_ssl: ssl_module.SSLContext | None = None,
) -> asyncio.Transport:
    """Open a connection to ``url`` through the proxy and attach ``protocol`` to it.

    ``protocol.connection_made`` is called with the tunnel's transport (the TLS transport for
    ``wss://``), exactly as ``loop.create_connection`` would. ``proxy_ssl`` is the TLS context
    for an ``https://`` proxy (default: ``ssl.create_default_context()``). Raises
    :class:`ProxyError` when the proxy cannot be reached, fails its TLS or refuses,
    :class:`ssl.SSLError` when the WebSocket server's certificate does not verify,
    :class:`ImportError` for a SOCKS proxy without python-socks.
    """
    proxy = parse_proxy_url(proxy_url)
    if proxy.is_socks:
        return await _open_via_socks(proxy, url, protocol, ssl_context)
    proxy_context: ssl_module.SSLContext | None = None
    if proxy.scheme == "https":
        if ssl_context is not None and sys.version_info < (3, 11):
            # Python 3.10's loop.start_tls() does not take a TLS transport.
            raise NotImplementedError(
                "wss:// through an https:// proxy needs Python 3.11 or later with asyncio "
                "(wsfast.sync does it on 3.10)"
            )
        proxy_context = proxy_ssl or default_ssl_context()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    tunnel = _TunnelProtocol(connect_request(url.host, url.port, proxy.userinfo), done)
    try:
        transport, _ = await loop.create_connection(
            lambda: tunnel,
            proxy.host,
            proxy.port,
            ssl=proxy_context,
            server_hostname=proxy.host if proxy_context else None,
        )
    except OSError as exc:
        raise proxy_unreachable(proxy, exc) from exc
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


async def _open_via_socks(
    proxy: ProxyURL,
    url: ParsedURL,
    protocol: asyncio.Protocol,
    ssl_context: ssl_module.SSLContext | None,
) -> asyncio.Transport:
    socks = socks_proxy(proxy, blocking=False)
    try:
        sock = await socks.connect(url.host, url.port, timeout=SOCKS_TIMEOUT)
    except Exception as exc:
        raise socks_error(proxy, exc) from exc
    try:
        transport, _ = await asyncio.get_running_loop().create_connection(
            lambda: protocol,
            sock=sock,
            ssl=ssl_context,
            server_hostname=url.host if ssl_context else None,
        )
    except BaseException:
        sock.close()
        raise
    return transport

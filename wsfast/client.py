"""The client's opening handshake over asyncio (ws' ``initAsClient``).

:func:`run_client` resolves the URL, opens the transport (TCP, TLS or a Unix socket), sends the
upgrade request, reads the answer with :class:`_HandshakeProtocol`, follows redirects when asked
to, validates the 101 response and hands the transport to the :class:`~wsfast.WebSocket`.
"""

from __future__ import annotations

import asyncio
import base64
import ssl as ssl_module
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urljoin, urlsplit

from . import extension, handshake, subprotocol
from .exceptions import HandshakeError, InvalidURL, WebSocketError

if TYPE_CHECKING:
    from .websocket import WebSocket

__all__ = ["ParsedURL", "ClientRequest", "parse_url", "check_options", "run_client"]

# A response head larger than this is refused; ws relies on Node's 16 KiB parser limit.
MAX_RESPONSE_HEAD = 64 * 1024
# Bodies of non-101 answers are read for 'unexpected-response' up to this size.
MAX_UNEXPECTED_BODY = 1024 * 1024


@dataclass
class ParsedURL:
    """The parts of a WebSocket URL the client needs."""

    secure: bool
    host: str
    port: int
    target: str
    userinfo: str
    unix_path: str | None = None

    @property
    def host_header(self) -> str:
        """The Host header: the port is left out when it is the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default or self.unix_path else f"{host}:{self.port}"


def parse_url(address: str) -> ParsedURL:
    """Check and split a ``ws://``, ``wss://`` (or ``http(s)://``, ``ws+unix://``) URL."""
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"Invalid URL: {address} ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss", "http", "https", "ws+unix"):
        raise InvalidURL(
            'The URL\'s protocol must be one of "ws:", "wss:", "http:", "https:", or "ws+unix:"'
        )
    if parts.fragment or address.endswith("#"):
        raise InvalidURL("The URL contains a fragment identifier")
    secure = scheme in ("wss", "https")
    userinfo = ""
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
    if scheme == "ws+unix":
        # ws' form: ws+unix:///path/to/socket.sock:/request/path
        path = parts.path
        sock, sep, target = path.partition(":")
        if not sock:
            raise InvalidURL(f"Invalid URL: {address}")
        target = (target if sep else "/") or "/"
        if parts.query:
            target += "?" + parts.query
        return ParsedURL(False, "localhost", 80, target, userinfo, unix_path=sock)
    host = parts.hostname
    if not host:
        raise InvalidURL(f"Invalid URL: {address}")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return ParsedURL(secure, host, port or (443 if secure else 80), target, userinfo)


class ClientRequest:
    """The upgrade request a redirect is about to send (ws' ``http.ClientRequest``).

    ``'redirect'`` listeners get it before it is written, so they may still change its
    headers; with such a listener wsfast leaves the headers alone, as ws does.
    """

    def __init__(self, url: str, target: str, headers: dict[str, str]) -> None:
        self.method = "GET"
        self.url = url
        self.path = target
        self.headers = headers

    def get_header(self, name: str) -> str | None:
        """The value of ``name`` (any case), or None."""
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def set_header(self, name: str, value: str) -> None:
        """Set ``name``, replacing any value it had under another case."""
        self.remove_header(name)
        self.headers[name] = value

    def remove_header(self, name: str) -> None:
        """Remove ``name`` (any case)."""
        for key in [k for k in self.headers if k.lower() == name.lower()]:
            del self.headers[key]

    def __repr__(self) -> str:
        return f"ClientRequest(GET {self.url})"


def basic_auth(userinfo: str) -> str:
    """The Basic credentials header value for percent-encoded ``user:password``."""
    token = base64.b64encode(unquote(userinfo).encode("utf-8")).decode("ascii")
    return f"Basic {token}"


def _same_host(a: ParsedURL, b: ParsedURL) -> bool:
    # ws compares url.host (host and non-default port), or the socket path for ws+unix.
    if a.unix_path is not None or b.unix_path is not None:
        return a.unix_path == b.unix_path
    return a.host_header.lower() == b.host_header.lower()


def check_options(options: dict[str, Any]) -> None:
    """Refuse options ws refuses in its constructor."""
    version = options["protocol_version"]
    if version not in (8, 13):
        raise ValueError(f"Unsupported protocol version: {version} (supported versions: 8, 13)")
    protocols = options["protocols"]
    if len(set(protocols)) != len(protocols) or not all(
        isinstance(p, str) and subprotocol.is_valid_token(p) for p in protocols
    ):
        raise ValueError("An invalid or duplicated subprotocol was specified")


def fail_future(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Fail ``future`` and mark its exception retrieved: when the awaiting task was cancelled
    (a handshake timeout, close() while connecting), nobody else would, and asyncio would log
    "Future exception was never retrieved" for a failure that was already handled."""
    future.set_exception(exc)
    future.exception()


class _HandshakeProtocol(asyncio.Protocol):
    """Writes the upgrade request and collects the response head (and a non-101 body)."""

    def __init__(self, request: bytes, done: asyncio.Future[Any]) -> None:
        self.request = request
        self.done = done
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.response: handshake.Response | None = None
        self.body_left = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.response is None:
            try:
                parsed = handshake.parse_head(self.buffer, MAX_RESPONSE_HEAD, 256)
            except handshake.RequestError:
                self._fail(HandshakeError("Invalid HTTP response", "WS_ERR_INVALID_RESPONSE"))
                return
            if parsed is None:
                return
            start, headers, consumed = parsed
            try:
                version, status, reason = handshake.parse_status_line(start)
            except HandshakeError as exc:
                self._fail(exc)
                return
            del self.buffer[:consumed]
            self.response = handshake.Response(status, reason, handshake.Headers(headers), version)
            if status == 101:
                # Frames may follow the head at once: keep them until the WebSocket takes over.
                assert self.transport is not None
                self.transport.pause_reading()
                self._resolve()
                return
            length = self.response.headers.get("content-length")
            self.body_left = int(length) if length and length.isdigit() else MAX_UNEXPECTED_BODY
        if len(self.buffer) >= min(self.body_left, MAX_UNEXPECTED_BODY):
            self._resolve()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.response is not None and self.response.status != 101:
            self._resolve()
        elif not self.done.done():
            fail_future(
                self.done,
                HandshakeError(
                    "socket hang up" if exc is None else f"socket error: {exc}",
                    "WS_ERR_HANDSHAKE_CLOSED",
                ),
            )

    def _resolve(self) -> None:
        if not self.done.done():
            self.done.set_result(self.response)

    def _fail(self, exc: BaseException) -> None:
        if not self.done.done():
            fail_future(self.done, exc)
        if self.transport is not None:
            self.transport.abort()


async def _open_transport(
    ws: WebSocket, url: ParsedURL, protocol: _HandshakeProtocol
) -> asyncio.Transport:
    loop = asyncio.get_running_loop()
    options = ws._options
    ssl_context: ssl_module.SSLContext | None = None
    if url.secure:
        given = options["ssl"]
        ssl_context = (
            given
            if isinstance(given, ssl_module.SSLContext)
            else (ssl_module.create_default_context())
        )
    hook = options["create_connection"]
    if hook is not None:
        transport, _ = await hook(lambda: protocol, url, ssl_context)
        return transport  # type: ignore[no-any-return]
    if url.unix_path is not None:
        transport, _ = await loop.create_unix_connection(lambda: protocol, url.unix_path)
        return transport
    if options["proxy"]:
        from .proxy import open_via_proxy

        return await open_via_proxy(options["proxy"], url, protocol, ssl_context)
    transport, _ = await loop.create_connection(
        lambda: protocol,
        url.host,
        url.port,
        ssl=ssl_context,
        server_hostname=url.host if ssl_context else None,
    )
    return transport


async def _attempt(
    ws: WebSocket, address: str, headers: dict[str, str]
) -> tuple[handshake.Response, _HandshakeProtocol, handshake.Request, str, Any]:
    options = ws._options
    url = parse_url(address)
    loop = asyncio.get_running_loop()
    key = handshake.generate_key()
    deflate = None
    offer = None
    pmd = options["per_message_deflate"]
    # As in ws, an options dict turns compression on even when it is empty.
    if pmd or isinstance(pmd, dict):
        from .permessage_deflate import PerMessageDeflate

        deflate = PerMessageDeflate(
            pmd if isinstance(pmd, dict) else {}, is_server=False, max_payload=ws._max_payload
        )
        offer = extension.format({PerMessageDeflate.EXTENSION_NAME: deflate.offer()})
    request_headers = dict(headers)
    request = handshake.build_request(
        url.host_header,
        url.target,
        key,
        version=options["protocol_version"],
        protocols=options["protocols"],
        extensions_header=offer,
        origin=options["origin"],
        headers=request_headers,
    )
    done: asyncio.Future[Any] = loop.create_future()
    protocol = _HandshakeProtocol(request, done)
    await _open_transport(ws, url, protocol)
    try:
        response = await done
    except BaseException:
        if protocol.transport is not None:
            protocol.transport.abort()
        raise
    req = handshake.Request(
        "GET", url.target, handshake.Headers(request_headers.items()), secure=url.secure
    )
    return response, protocol, req, key, deflate


async def run_client(ws: WebSocket, address: str) -> None:
    """Connect ``ws`` to ``address``; every failure becomes 'error' then 'close' on ``ws``."""
    options = ws._options
    headers = dict(options["headers"])
    redirects = 0
    protocol: _HandshakeProtocol | None = None
    deflate: Any = None
    original = parse_url(address)
    task = asyncio.current_task()

    def cancel_on_close(*args: Any) -> None:
        # close()/terminate() before 'open' ends the attempt at once (ws aborts the request).
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()

    ws.once("close", cancel_on_close)
    try:
        while True:
            url = parse_url(address)
            use_userinfo = True
            if redirects and not ws.listener_count("redirect"):
                same_host = _same_host(original, url)
                if not same_host or (original.secure and not url.secure):
                    # Credentials must not leak to another host or over plain text (ws follows
                    # curl 7.77.0): the dropped headers stay dropped for later redirects.
                    for name in list(headers):
                        if name.lower() in ("authorization", "cookie") or (
                            not same_host and name.lower() == "host"
                        ):
                            del headers[name]
                    use_userinfo = False
            has_auth = any(k.lower() == "authorization" for k in headers)
            if use_userinfo and url.userinfo and not has_auth:
                # The first Authorization wins (curl's rule, as ws): it is kept for redirects.
                headers["Authorization"] = basic_auth(url.userinfo)
            attempt_headers = dict(headers)
            if redirects:
                ws.emit("redirect", address, ClientRequest(address, url.target, attempt_headers))
                if ws._ready_state != ws.CONNECTING:
                    return  # closed by a 'redirect' listener: 'close' was emitted
            timeout = options["handshake_timeout"]
            try:
                response, protocol, request, key, deflate = await asyncio.wait_for(
                    _attempt(ws, address, attempt_headers), timeout
                )
            except asyncio.TimeoutError:
                raise HandshakeError(
                    "Opening handshake has timed out", "WS_ERR_HANDSHAKE_TIMEOUT"
                ) from None
            assert protocol is not None
            transport = protocol.transport
            assert transport is not None
            if ws._ready_state != ws.CONNECTING:
                transport.abort()  # closed by a listener meanwhile
                return
            status = response.status
            location = response.headers.get("location")
            if status != 101 and options["follow_redirects"] and 300 <= status < 400 and location:
                transport.abort()
                redirects += 1
                if redirects > options["max_redirects"]:
                    raise HandshakeError("Maximum redirects exceeded", "WS_ERR_MAX_REDIRECTS")
                try:
                    target = urljoin(address, location)
                    parse_url(target)
                except (InvalidURL, ValueError):
                    raise InvalidURL(f"Invalid URL: {location}") from None
                address = target
                ws._url = address
                continue
            if status != 101:
                response.body = bytes(protocol.buffer)
                transport.close()
                if ws.listener_count("unexpected-response"):
                    ws.emit("unexpected-response", request, response)
                    ws._handshake_closed()
                    return
                raise HandshakeError(
                    f"Unexpected server response: {status}",
                    "WS_ERR_UNEXPECTED_RESPONSE",
                    http_status=status,
                )
            break
        selected, extensions = handshake.validate_response(response, key, options["protocols"])
        negotiated: dict[str, Any] = {}
        if extensions:
            name = "permessage-deflate"
            if deflate is None or set(extensions) != {name}:
                raise HandshakeError(
                    "Server indicated an extension that was not requested",
                    "WS_ERR_INVALID_EXTENSIONS",
                )
            try:
                negotiated[name] = deflate.accept(extensions[name])
            except ValueError:
                raise HandshakeError(
                    "Invalid Sec-WebSocket-Extensions header", "WS_ERR_INVALID_EXTENSIONS"
                ) from None
        else:
            deflate = None
    except (OSError, WebSocketError, ValueError) as exc:
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abort()
        ws._handshake_failed(exc)
        return
    ws.off("close", cancel_on_close)
    assert protocol is not None
    head = bytes(protocol.buffer)
    ws._setup(transport, head, selected, negotiated, deflate)
    ws.emit("upgrade", response)
    ws.emit("open")
    ws._start(head)
    if not ws._paused:
        ws._resume_reading()

"""The opening handshake (RFC 6455 section 4), sans-I/O.

HTTP/1.1 heads are parsed here with explicit limits, requests are validated in ws' order with
ws' status codes, and responses are validated as ws' client validates them. Nothing here touches
a socket.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import inspect
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

from . import extension, subprotocol
from .constants import (
    GUID,
    MAX_HEAD_SIZE,
    MAX_HEADERS,
    MAX_RESPONSE_HEAD,
    MAX_RESPONSE_HEADERS,
    MAX_UNEXPECTED_BODY,
)
from .exceptions import HandshakeError
from .options import ClientOptions, ServerOptions
from .permessage_deflate import PerMessageDeflate
from .subprotocol import is_valid_token
from .url import ParsedURL, basic_auth, parse_url, resolve_url

__all__ = [
    "Headers",
    "Request",
    "Response",
    "RequestError",
    "parse_head",
    "parse_request_line",
    "parse_status_line",
    "HeadReader",
    "generate_key",
    "accept_key",
    "build_request",
    "build_response",
    "abort_response",
    "validate_request",
    "request_protocols",
    "request_extensions",
    "validate_response",
    "BodyReader",
    "ClientHandshake",
    "UnexpectedResponse",
    "Refusal",
    "RefusalKind",
    "Upgrade",
    "ServerHandshake",
    "SERVER_ERROR",
    "SERVICE_UNAVAILABLE",
    "PATH_NOT_SERVED",
    "check_request",
    "is_upgrade_request",
    "negotiate_deflate",
    "path_matches",
    "verify_refusal",
    "arity",
    "MAX_HEAD_SIZE",
    "MAX_HEADERS",
]


_KEY_RE = re.compile(r"^[+/0-9A-Za-z]{22}==$")
# Header values: no control character but horizontal tab (RFC 9110 section 5.5).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# A request target: visible ASCII only (RFC 9112 section 3.2).
_TARGET_RE = re.compile(r"^[\x21-\x7e]+$")


# The lowercase names of the usual request and response headers: Headers' index uses these
# strings instead of a fresh lowercase copy per header per request.
_KNOWN_NAMES = {
    name: name
    for name in (
        "host",
        "upgrade",
        "connection",
        "origin",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
        "user-agent",
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "pragma",
        "cookie",
        "authorization",
        "x-forwarded-for",
        "x-real-ip",
        "content-length",
        "content-type",
        "transfer-encoding",
        "location",
        "date",
        "server",
        "set-cookie",
    )
}


class Headers(Mapping[str, str]):
    """Case-insensitive HTTP headers keeping every value; ``h[name]`` joins repeats with ", "."""

    # A server's request stays alive as long as its ``serve()`` handler: the index maps each
    # name to its one value (the string in ``raw``), with lists only for repeated names. One
    # list per name and a lowercase copy of each name were 0.9 KiB of each idle ``serve()``
    # connection with deflate (tracemalloc).
    __slots__ = ("raw", "_index", "_repeats")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self.raw: list[tuple[str, str]] = list(items)
        index: dict[str, str] = {}
        repeats: dict[str, list[str]] | None = None
        known = _KNOWN_NAMES
        for name, value in self.raw:
            key = name.lower()
            key = known.get(key, key)
            if key in index:
                if repeats is None:
                    repeats = {}
                repeats.setdefault(key, [index[key]]).append(value)
            else:
                index[key] = value
        self._index = index
        self._repeats = repeats

    def __getitem__(self, name: str) -> str:
        key = name.lower()
        repeats = self._repeats
        if repeats is not None and key in repeats:
            return ", ".join(repeats[key])
        return self._index[key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        key = name.lower()
        repeats = self._repeats
        if repeats is not None and key in repeats:
            return list(repeats[key])
        value = self._index.get(key)
        return [] if value is None else [value]

    def __repr__(self) -> str:
        return f"Headers({self.raw!r})"


@dataclass
class Request:
    """An HTTP request head as the server saw it (ws' ``http.IncomingMessage``)."""

    method: str
    path: str
    headers: Headers
    http_version: str = "HTTP/1.1"
    remote_address: Any = None
    secure: bool = False

    @property
    def url(self) -> str:
        """The request target (ws' ``req.url``)."""
        return self.path


@dataclass
class Response:
    """An HTTP response head as the client saw it; ``body`` is filled for unexpected answers."""

    status: int
    reason: str
    headers: Headers
    http_version: str = "HTTP/1.1"
    body: bytes = b""
    #: Set by the client adapter while the body is still arriving; :meth:`read` awaits it.
    body_source: Callable[[], Awaitable[bytes]] | None = field(default=None, repr=False)

    @property
    def status_code(self) -> int:
        """Alias of ``status`` (ws' ``res.statusCode``)."""
        return self.status

    async def read(self) -> bytes:
        """The whole body of a non-101 response, in any framing (Content-Length, chunked or
        up to the connection's end); raises :class:`HandshakeError` when the connection ends
        before it is complete, its framing is invalid or it exceeds ``MAX_UNEXPECTED_BODY``."""
        if self.body_source is not None:
            self.body = await self.body_source()
            self.body_source = None
        return self.body


class RequestError(Exception):
    """A request the server refuses, with the status code and body to answer it with."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def parse_head(
    data: bytes | bytearray, max_size: int = MAX_HEAD_SIZE, max_headers: int = MAX_HEADERS
) -> tuple[str, list[tuple[str, str]], int] | None:
    """Split an HTTP/1.1 head into (start line, header list, bytes consumed).

    Returns None while the head is incomplete. Raises :class:`RequestError` (431 or 400) when it
    is too large or malformed, so a server can answer at once. A bare LF (a line ending without
    its CR) is malformed, as in Node's strict HTTP parser, and is refused as soon as it arrives
    rather than waiting for a CRLF CRLF that may never come.
    """
    end = data.find(b"\r\n\r\n")
    limit = len(data) if end < 0 else end + 2
    lf = data.find(b"\n", 0, limit)
    while lf >= 0:
        if lf == 0 or data[lf - 1] != 0x0D:
            raise RequestError(400, "Bad Request")
        lf = data.find(b"\n", lf + 1, limit)
    if end < 0:
        if len(data) > max_size:
            raise RequestError(431, "Request Header Fields Too Large")
        return None
    if end + 4 > max_size:
        raise RequestError(431, "Request Header Fields Too Large")
    text = bytes(data[:end]).decode("latin-1")  # never fails: every byte is a latin-1 char
    lines = text.split("\r\n")
    start = lines[0]
    headers: list[tuple[str, str]] = []
    if len(lines) - 1 > max_headers:
        raise RequestError(431, "Request Header Fields Too Large")
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not is_valid_token(name):
            raise RequestError(400, "Bad Request")
        value = value.strip(" \t")
        if _CONTROL_RE.search(value):
            raise RequestError(400, "Bad Request")
        headers.append((name, value))
    return start, headers, end + 4


class HeadReader:
    """The one HTTP/1.1 head reader: collects a head from a byte stream, sans-I/O.

    The server reads requests with it, the client reads the answer to its upgrade request and
    the proxy code the answer to CONNECT. :meth:`feed` takes bytes as they arrive and returns
    True once the head is complete; then ``start_line``, ``headers`` and :meth:`take_rest` (the
    bytes after the head) are set. Malformed or oversized heads raise :class:`RequestError`.
    """

    __slots__ = ("max_size", "max_headers", "buffer", "start_line", "headers", "complete")

    def __init__(self, max_size: int = MAX_HEAD_SIZE, max_headers: int = MAX_HEADERS) -> None:
        self.max_size = max_size
        self.max_headers = max_headers
        self.buffer = bytearray()
        self.start_line = ""
        self.headers = Headers()
        self.complete = False

    def feed(self, data: bytes) -> bool:
        """Take ``data``; True once the head is complete (later bytes are kept as the rest)."""
        self.buffer += data
        if self.complete:
            return True
        parsed = parse_head(self.buffer, self.max_size, self.max_headers)
        if parsed is None:
            return False
        self.start_line, items, consumed = parsed
        self.headers = Headers(items)
        del self.buffer[:consumed]
        self.complete = True
        return True

    def take_rest(self) -> bytes:
        """The bytes received after the head, now owned by the caller."""
        rest = bytes(self.buffer)
        self.buffer.clear()
        return rest

    def request(self, remote_address: Any = None, secure: bool = False) -> Request:
        """The complete head as a :class:`Request`; RequestError 400 for a bad request line."""
        method, target, version = parse_request_line(self.start_line)
        return Request(method, target, self.headers, version, remote_address, secure)

    def response(self) -> Response:
        """The complete head as a :class:`Response`; HandshakeError for a bad status line."""
        version, status, reason = parse_status_line(self.start_line)
        return Response(status, reason, self.headers, version)


def parse_request_line(line: str) -> tuple[str, str, str]:
    """(method, target, version) of a request line; RequestError 400 when malformed.

    As Node's parser: only HTTP/1.0 and HTTP/1.1, a token for the method, and a target without
    control characters, spaces or non-ASCII bytes (RFC 9112 section 3.2).
    """
    parts = line.split(" ")
    if (
        len(parts) != 3
        or parts[2] not in ("HTTP/1.1", "HTTP/1.0")
        or not is_valid_token(parts[0])
        or not parts[1]
        or not _TARGET_RE.match(parts[1])
    ):
        raise RequestError(400, "Bad Request")
    return parts[0], parts[1], parts[2]


def parse_status_line(line: str) -> tuple[str, int, str]:
    """(version, status, reason) of a status line; HandshakeError when malformed."""
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    # str.isdigit alone takes latin-1's superscripts (found by fuzz/fuzz_handshake.py), and RFC
    # 9112 section 4 allows no control character but HTAB in the reason phrase.
    if (
        version not in ("HTTP/1.1", "HTTP/1.0")
        or len(code) != 3
        or not (code.isascii() and code.isdigit())
        or _CONTROL_RE.search(reason)
    ):
        raise HandshakeError(f"Invalid HTTP status line: {line!r}", "WS_ERR_INVALID_RESPONSE")
    return version, int(code), reason


def generate_key() -> str:
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64 (RFC 6455 4.1)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value for ``key`` (RFC 6455 4.2.2)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def build_request(
    host: str,
    target: str,
    key: str,
    *,
    version: int = 13,
    protocols: Iterable[str] = (),
    extensions_header: str | None = None,
    origin: str | None = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
) -> bytes:
    """The client's upgrade request.

    As in ws (Node's ``setHeader``), header names are compared case-insensitively: a custom
    ``Host`` replaces the default one, and the handshake's own headers replace custom ones of
    the same name; no header is ever sent twice.
    """
    fields: dict[str, tuple[str, str]] = {"host": ("Host", host)}
    if headers:
        items = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in items:
            if not is_valid_token(name) or "\r" in str(value) or "\n" in str(value):
                raise ValueError(f"invalid header {name!r}")
            fields[name.lower()] = (name, str(value))
    own = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", str(version)),
    ]
    protocols = list(protocols)
    if protocols:
        own.append(("Sec-WebSocket-Protocol", ",".join(protocols)))
    if extensions_header:
        own.append(("Sec-WebSocket-Extensions", extensions_header))
    if origin:
        # Version 8 (HyBi drafts 7-12) used Sec-WebSocket-Origin.
        own.append(("Sec-WebSocket-Origin" if version < 13 else "Origin", origin))
    for name, value in own:
        fields[name.lower()] = (name, value)
    lines = [f"GET {target} HTTP/1.1", *(f"{name}: {value}" for name, value in fields.values())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def build_response(status: int, headers: Iterable[str]) -> bytes:
    """A response head from ws-style header lines (``"Name: value"``)."""
    reason = _phrase(status)
    head = [f"HTTP/1.1 {status} {reason}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")


def abort_response(
    status: int, message: str = "", headers: Mapping[str, str] | None = None
) -> bytes:
    """A complete error response that closes the connection (ws' ``abortHandshake``)."""
    if not message:
        message = _phrase(status)
    body = message.encode("utf-8")
    lines = ["Connection: close", "Content-Type: text/html", f"Content-Length: {len(body)}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    return build_response(status, lines) + body


def _has_token(value: str, token: str) -> bool:
    return any(part.strip().lower() == token for part in value.split(","))


def validate_request(request: Request) -> tuple[str, int]:
    """Check an upgrade request in ws' order; returns (key, version) or raises RequestError.

    ws' ``handleUpgrade``: 405 for a method other than GET, 400 for a bad Upgrade header, key or
    version (the latter with ``Sec-WebSocket-Version: 13, 8``). A plain HTTP request (no
    ``Upgrade`` at all) to a WebSocket-only port gets 426, as ws' internal server answers.
    """
    if request.method != "GET":
        raise RequestError(405, "Invalid HTTP method")
    headers = request.headers
    upgrade = headers.get("upgrade")
    if upgrade is None:
        raise RequestError(426, "Upgrade Required", {"Upgrade": "websocket"})
    if upgrade.strip().lower() != "websocket":
        raise RequestError(400, "Invalid Upgrade header")
    if not _has_token(headers.get("connection", ""), "upgrade"):
        raise RequestError(400, "Invalid Connection header")
    key = headers.get_all("sec-websocket-key")
    if len(key) != 1 or not _KEY_RE.match(key[0]):
        raise RequestError(400, "Missing or invalid Sec-WebSocket-Key header")
    version = headers.get("sec-websocket-version", "")
    if version not in ("8", "13"):
        raise RequestError(
            400,
            "Missing or invalid Sec-WebSocket-Version header",
            {"Sec-WebSocket-Version": "13, 8"},
        )
    return key[0], int(version)


def request_protocols(request: Request) -> list[str]:
    """The subprotocols a request offers, in order; RequestError 400 when the header is bad."""
    values = request.headers.get_all("sec-websocket-protocol")
    if not values:
        return []
    try:
        return subprotocol.parse(", ".join(values))
    except ValueError:
        raise RequestError(400, "Invalid Sec-WebSocket-Protocol header") from None


def request_extensions(request: Request) -> dict[str, Any]:
    """The parsed Sec-WebSocket-Extensions offers; RequestError 400 when unparseable."""
    values = request.headers.get_all("sec-websocket-extensions")
    if not values:
        return {}
    try:
        return extension.parse(", ".join(values))
    except ValueError:
        raise RequestError(400, "Invalid or unacceptable Sec-WebSocket-Extensions header") from None


# -- the server's side, sans-I/O ------------------------------------------------------------------

#: Refusal kinds: ws' abortHandshake (a text/html body) and the 426 of the HTTP server ws creates
#: in port mode (text/plain).
RefusalKind = Literal["abort", "plain"]


@dataclass(frozen=True)
class Refusal:
    """The server's "no": :meth:`response` is written, then the connection is closed.

    ``reportable`` follows ws' split between ``abortHandshakeOrEmitwsClientError`` (a
    ``'wsClientError'`` listener, when there is one, answers instead of the server) and plain
    ``abortHandshake`` (path mismatch, ``verify_client`` refusals, 500, 503) or answers made
    before ws sees the request at all (426, malformed heads).
    """

    status: int
    message: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    kind: RefusalKind = "abort"
    reportable: bool = False

    @classmethod
    def from_error(cls, exc: RequestError, *, reportable: bool = True) -> Refusal:
        """The refusal for a :class:`RequestError` raised by validation."""
        return cls(exc.status, exc.message, tuple(exc.headers.items()), "abort", reportable)

    @classmethod
    def bad_head(cls, exc: RequestError) -> Refusal:
        """The answer to a head Node's HTTP parser refuses: its status (400 or 431) and
        ``Connection: close``, as Node; unlike Node's empty answer, the reason as a body."""
        return cls(exc.status, exc.message, (), "abort", False)

    @classmethod
    def upgrade_required(cls) -> Refusal:
        """The answer of ws' internal HTTP server to a request that is not an upgrade."""
        return cls(426, "Upgrade Required", (("Upgrade", "websocket"),), "plain", False)

    def response(self) -> bytes:
        """The bytes to write before closing the connection."""
        if self.kind == "plain":
            body = (self.message or _phrase(self.status)).encode("utf-8")
            lines = [
                f"Content-Length: {len(body)}",
                "Content-Type: text/plain",
                # Node keeps the connection alive for more HTTP requests; this server answers
                # no other HTTP, so it closes, and says so.
                "Connection: close",
                *(f"{name}: {value}" for name, value in self.headers),
            ]
            return build_response(self.status, lines) + body
        return abort_response(self.status, self.message, dict(self.headers))


#: ``verify_client`` raised, ``handle_protocols`` raised: a bug on the server, not the peer's.
SERVER_ERROR = Refusal(500, "Internal Server Error")
#: ws' ``completeUpgrade`` once the server is closing.
SERVICE_UNAVAILABLE = Refusal(503, "Service Unavailable")
#: ws' ``shouldHandle`` failing: a bare 400, never ``'wsClientError'``.
PATH_NOT_SERVED = Refusal(400, "Bad Request")


@dataclass
class Upgrade:
    """The server's provisional "yes", pending ``verify_client``: what the 101 is made of.

    ``key`` and ``version`` are the client's ``Sec-WebSocket-Key`` and ``-Version``,
    ``protocols`` the subprotocols it offered in order, ``extensions`` the negotiated
    parameters (``{"permessage-deflate": params}`` or empty) and ``deflate`` the extension
    object the connection compresses with.
    """

    request: Request
    key: str
    version: int
    protocols: list[str]
    extensions: dict[str, Any]
    deflate: PerMessageDeflate | None

    @property
    def origin(self) -> str | None:
        """The Origin header (``Sec-WebSocket-Origin`` for version 8, as ws reads it)."""
        name = "origin" if self.version == 13 else "sec-websocket-origin"
        return self.request.headers.get(name)

    def select_protocol(self, handle_protocols: Callable[..., Any] | None) -> str:
        """ws' choice: ``handle_protocols(offered, request)`` or the first offered, or ``""``.

        Whatever ``handle_protocols`` raises propagates: the adapter answers 500.
        """
        if not self.protocols:
            return ""
        if handle_protocols is None:
            return self.protocols[0]
        chosen = handle_protocols(list(self.protocols), self.request)
        return str(chosen) if chosen else ""

    def headers(self, protocol: str = "") -> list[str]:
        """The 101's header lines, ws-style (what ``'headers'`` listeners may edit)."""
        lines = [
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept_key(self.key)}",
        ]
        if protocol:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}")
        if self.extensions:
            lines.append(f"Sec-WebSocket-Extensions: {extension.format(self.extensions)}")
        return lines

    @staticmethod
    def response(lines: Iterable[str]) -> bytes:
        """The 101 Switching Protocols head with ``lines``."""
        return build_response(101, lines)


def is_upgrade_request(request: Request) -> bool:
    """Whether Node's HTTP parser flags ``request`` as an upgrade: an ``Upgrade`` header and
    ``upgrade`` among the ``Connection`` tokens. Anything else is a plain HTTP request."""
    headers = request.headers
    return "upgrade" in headers and _has_token(headers.get("connection", ""), "upgrade")


def negotiate_deflate(
    request: Request, options: Mapping[str, Any] | None, max_payload: int
) -> tuple[PerMessageDeflate | None, dict[str, Any]]:
    """permessage-deflate as ws' server accepts it: (the extension object, negotiated params).

    As ws, ``Sec-WebSocket-Extensions`` is only parsed, and refused with 400 when malformed, by a
    server that offers permessage-deflate (``options`` not None).
    """
    if options is None:
        return None, {}
    offers = request_extensions(request)
    if PerMessageDeflate.EXTENSION_NAME not in offers:
        return None, {}
    deflate = PerMessageDeflate(options, is_server=True, max_payload=max_payload)
    try:
        params = deflate.accept(offers[PerMessageDeflate.EXTENSION_NAME])
    except ValueError:
        raise RequestError(400, "Invalid or unacceptable Sec-WebSocket-Extensions header") from None
    return deflate, {PerMessageDeflate.EXTENSION_NAME: params}


def check_request(
    request: Request,
    options: ServerOptions,
    *,
    plain_http: bool = True,
    should_handle: Callable[[Request], bool] | None = None,
) -> Refusal | Upgrade:
    """The server's decision on a complete request head, in ws' order.

    ``plain_http``: the server owns the port, so a request that is not an upgrade gets the 426
    of ws' internal HTTP server (port mode); in ``no_server`` mode it reaches ws'
    ``handleUpgrade`` checks instead. ``should_handle`` replaces the ``path`` check (a
    subclass' ``should_handle``).
    """
    if plain_http and not is_upgrade_request(request):
        return Refusal.upgrade_required()
    try:
        key, version = validate_request(request)
    except RequestError as exc:
        if exc.status == 426:
            # Handed over by another server (no_server): ws' handleUpgrade would report it.
            return dataclasses.replace(Refusal.upgrade_required(), reportable=True)
        return Refusal.from_error(exc)
    handled = should_handle(request) if should_handle else path_matches(request, options.path)
    if not handled:
        return PATH_NOT_SERVED
    try:
        protocols = request_protocols(request)
        deflate, extensions = negotiate_deflate(
            request, options.per_message_deflate, options.max_payload
        )
    except RequestError as exc:
        return Refusal.from_error(exc)
    return Upgrade(request, key, version, protocols, extensions, deflate)


def path_matches(request: Request, path: str | None) -> bool:
    """ws' ``shouldHandle``: the request's path (without the query) equals ``path``, if set."""
    return path is None or request.path.split("?", 1)[0] == path


def verify_refusal(result: Any) -> Refusal | None:
    """What a ``verify_client`` result means: None to go on, or the refusal to answer.

    ``True``/``False`` or ws' callback arguments as a tuple ``(False, status, message, headers)``;
    a refusal without a status is a 401, as in ws.
    """
    if isinstance(result, tuple):
        ok, status, message, headers = (*result, None, None, None, None)[:4]
    else:
        ok, status, message, headers = result, None, None, None
    if ok:
        return None
    status = status or 401  # ws: abortHandshake(socket, code || 401, ...)
    message = message or ""
    headers = headers or {}
    return Refusal(int(status), str(message), tuple((str(k), str(v)) for k, v in headers.items()))


def arity(func: Callable[..., Any]) -> int:
    """Required positional parameters of ``func``: how ws tells ``verify_client(info)`` from
    ``verify_client(info, callback)`` (JavaScript's ``Function.length``, where parameters with
    defaults do not count)."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return 1
    return sum(
        1
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    )


class ServerHandshake:
    """One server-side opening handshake, sans-I/O (websockets' ``ServerProtocol``, its opening).

    :meth:`receive_data` takes bytes as they arrive and returns None while the head is
    incomplete, a :class:`Refusal` to write (then close) for a head Node's parser would refuse,
    or the :class:`Request` once complete; :meth:`check` then decides. The bytes after the head
    (frames a client sent right behind its request) are :meth:`take_rest`.
    """

    __slots__ = ("options", "plain_http", "reader")

    def __init__(self, options: ServerOptions, *, plain_http: bool = True) -> None:
        self.options = options
        self.plain_http = plain_http
        self.reader = HeadReader(options.max_head_size, options.max_headers)

    def receive_data(
        self, data: bytes, remote_address: Any = None, secure: bool = False
    ) -> Request | Refusal | None:
        """Feed ``data``: None (incomplete), a Refusal, or the complete Request."""
        try:
            if not self.reader.feed(data):
                return None
            return self.reader.request(remote_address, secure)
        except RequestError as exc:
            return Refusal.bad_head(exc)

    def check(
        self, request: Request, should_handle: Callable[[Request], bool] | None = None
    ) -> Refusal | Upgrade:
        """:func:`check_request` with this handshake's options."""
        return check_request(
            request, self.options, plain_http=self.plain_http, should_handle=should_handle
        )

    def take_rest(self) -> bytes:
        """The bytes received after the head."""
        return self.reader.take_rest()


def _phrase(status: int) -> str:
    """The standard reason phrase of ``status``, or ``""`` for a code HTTP does not name."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def validate_response(
    response: Response, key: str, protocols: Iterable[str]
) -> tuple[str, dict[str, Any]]:
    """Check a 101 answer as ws' client does; returns (protocol, parsed extensions)."""
    headers = response.headers
    upgrade = headers.get("upgrade")
    if upgrade is None or upgrade.strip().lower() != "websocket":
        raise HandshakeError("Invalid Upgrade header", "WS_ERR_INVALID_UPGRADE_HEADER")
    if not _has_token(headers.get("connection", ""), "upgrade"):
        raise HandshakeError("Invalid Connection header", "WS_ERR_INVALID_CONNECTION_HEADER")
    if headers.get("sec-websocket-accept") != accept_key(key):
        raise HandshakeError("Invalid Sec-WebSocket-Accept header", "WS_ERR_INVALID_ACCEPT")
    offered = list(protocols)
    protocol = headers.get("sec-websocket-protocol")
    if protocol is not None:
        if not offered:
            raise HandshakeError(
                "Server sent a subprotocol but none was requested", "WS_ERR_INVALID_PROTOCOL"
            )
        if protocol not in offered:
            raise HandshakeError("Server sent an invalid subprotocol", "WS_ERR_INVALID_PROTOCOL")
    elif offered:
        raise HandshakeError("Server sent no subprotocol", "WS_ERR_INVALID_PROTOCOL")
    ext_values = headers.get_all("sec-websocket-extensions")
    extensions: dict[str, Any] = {}
    if ext_values:
        try:
            extensions = extension.parse(", ".join(ext_values))
        except ValueError:
            raise HandshakeError(
                "Invalid Sec-WebSocket-Extensions header", "WS_ERR_INVALID_EXTENSIONS"
            ) from None
    return protocol or "", extensions


# -- the client's side ---------------------------------------------------------------------


class UnexpectedResponse(HandshakeError):
    """The server answered with something other than 101 and an ``'unexpected-response'``
    listener took the answer (``handled`` is True): the WebSocket closes without an error."""

    def __init__(self, response: Response, handled: bool = True) -> None:
        super().__init__(
            f"Unexpected server response: {response.status}",
            "WS_ERR_UNEXPECTED_RESPONSE",
            http_status=response.status,
        )
        self.response = response
        self.handled = handled


_CHUNK_SIZE_RE = re.compile(rb"^([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?$")


class BodyReader:
    """Collects the body of a response in its framing (RFC 9112 section 6.3), sans-I/O.

    No body for 1xx, 204 and 304; ``Transfer-Encoding`` ending in ``chunked`` wins over
    ``Content-Length``; another transfer coding, or no length at all, means the body runs to
    the end of the connection. :meth:`feed` returns True once the body is complete; more than
    ``limit`` bytes, bad chunk framing or an early end raise :class:`HandshakeError`.
    """

    __slots__ = ("limit", "status", "mode", "remaining", "body", "complete", "_buffer", "_chunk")

    def __init__(self, status: int, headers: Headers, limit: int = MAX_UNEXPECTED_BODY) -> None:
        self.limit = limit
        self.status = status
        self.body = bytearray()
        self.complete = False
        self.remaining = 0
        self._buffer = bytearray()
        self._chunk = "size"  # size, data, data-end, trailer
        codings = [
            c.strip().lower() for c in ",".join(headers.get_all("transfer-encoding")).split(",")
        ]
        lengths = {v.strip() for v in ",".join(headers.get_all("content-length")).split(",") if v}
        if status < 200 or status in (204, 304):
            self.mode = "empty"
        elif codings != [""]:
            self.mode = "chunked" if codings[-1] == "chunked" else "close"
        elif lengths:
            # Differing or non-numeric lengths make the framing unknowable (RFC 9112 6.3 item 5).
            value = lengths.pop()
            if lengths or not (value.isascii() and value.isdigit()):
                raise HandshakeError("Invalid Content-Length header", "WS_ERR_INVALID_RESPONSE")
            self.mode = "length"
            self.remaining = int(value)
        else:
            self.mode = "close"
        if self.mode == "empty" or (self.mode == "length" and self.remaining == 0):
            self.complete = True

    def _take(self, data: bytes | bytearray) -> None:
        if len(self.body) + len(data) > self.limit:
            raise HandshakeError(
                f"Unexpected response body larger than {self.limit} bytes",
                "WS_ERR_UNEXPECTED_RESPONSE",
                http_status=self.status,
            )
        self.body += data

    def feed(self, data: bytes) -> bool:
        """Take ``data``; True once the body is complete (bytes after it are ignored)."""
        if self.complete:
            return True
        if self.mode == "length":
            data = data[: self.remaining]
            self._take(data)
            self.remaining -= len(data)
            self.complete = self.remaining == 0
        elif self.mode == "close":
            self._take(data)
        else:
            self._buffer += data
            self._feed_chunked()
        return self.complete

    def _feed_chunked(self) -> None:
        buffer = self._buffer
        while not self.complete:
            if self._chunk == "data":
                part = buffer[: self.remaining]
                self._take(part)
                del buffer[: len(part)]
                self.remaining -= len(part)
                if self.remaining:
                    return
                self._chunk = "data-end"
                continue
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_SIZE:
                    raise HandshakeError("Invalid chunked body", "WS_ERR_INVALID_RESPONSE")
                return
            line = bytes(buffer[:end])
            del buffer[: end + 2]
            if self._chunk == "data-end":
                if line:
                    raise HandshakeError("Invalid chunked body", "WS_ERR_INVALID_RESPONSE")
                self._chunk = "size"
            elif self._chunk == "size":
                match = _CHUNK_SIZE_RE.match(line)
                if match is None:
                    raise HandshakeError("Invalid chunked body", "WS_ERR_INVALID_RESPONSE")
                self.remaining = int(match.group(1), 16)
                self._chunk = "data" if self.remaining else "trailer"
            elif not line:  # the empty line that ends the trailer section
                self.complete = True

    def feed_eof(self) -> None:
        """The connection ended: completes a close-delimited body, else raises if incomplete."""
        if self.complete:
            return
        if self.mode != "close":
            raise HandshakeError(
                "The connection closed before the response body was complete",
                "WS_ERR_UNEXPECTED_RESPONSE",
                http_status=self.status,
            )
        self.complete = True


class ClientHandshake:
    """The client's opening handshake, redirects included, sans-I/O (websockets'
    ``ClientProtocol``; ws' ``initAsClient``).

    For each attempt the adapter calls :meth:`prepare_headers` (the headers it may show a
    ``'redirect'`` listener, who may edit them), then :meth:`request` for the bytes to write,
    then :meth:`receive_data` / :meth:`receive_eof` with what the server sends, and looks at
    ``state``:

    - ``OPEN``: a valid 101; ``protocol``, ``extensions``, ``deflate`` and :meth:`take_rest`.
    - ``REDIRECT``: a 3xx to follow; :meth:`follow` returns the next address.
    - ``BODY`` then ``DONE``: any other answer; ``response`` is complete at ``BODY``, its body
      at ``DONE``.
    - ``FAILED``: ``error`` says why (garbage, a bad 101, a broken body).
    """

    HEAD = "HEAD"
    OPEN = "OPEN"
    REDIRECT = "REDIRECT"
    BODY = "BODY"
    DONE = "DONE"
    FAILED = "FAILED"

    def __init__(
        self, address: str, options: ClientOptions, key_factory: Callable[[], str] = generate_key
    ) -> None:
        self.options = options
        self.address = address
        self.url: ParsedURL = parse_url(address)
        self.original = self.url
        self.redirects = 0
        self.key_factory = key_factory
        # Headers carried from one attempt to the next: credentials dropped for a redirect stay
        # dropped, and an Authorization made from userinfo is kept (ws, after curl 7.77.0).
        self.headers: dict[str, str] = {}
        for name, value in options.headers:
            _set_header(self.headers, name, value)
        self._begin()

    def _begin(self) -> None:
        self.state = self.HEAD
        self.key = ""
        self.reader = HeadReader(MAX_RESPONSE_HEAD, MAX_RESPONSE_HEADERS)
        self.response: Response | None = None
        self.error: HandshakeError | None = None
        self.body: BodyReader | None = None
        self.deflate: PerMessageDeflate | None = None
        self.protocol = ""
        self.extensions: dict[str, Any] = {}
        self.sent_headers: dict[str, str] = {}

    def prepare_headers(self, check_hosts: bool = True) -> dict[str, str]:
        """The custom headers of the next request, after the redirect and credential rules.

        With ``check_hosts`` (no ``'redirect'`` listener, as ws), a redirect to another host
        drops Authorization, Cookie and Host, and one from ``wss:`` to ``ws:`` drops the first
        two: credentials never leak to another host or over plain text. URL userinfo becomes
        ``Authorization: Basic`` unless one is already set: the first Authorization wins.
        """
        url = self.url
        use_userinfo = True
        if self.redirects and check_hosts:
            same_host = _same_host(self.original, url)
            if not same_host or (self.original.secure and not url.secure):
                drop = {"authorization", "cookie"} | (set() if same_host else {"host"})
                for name in [k for k in self.headers if k.lower() in drop]:
                    del self.headers[name]
                use_userinfo = False
        if use_userinfo and url.userinfo and _get_header(self.headers, "authorization") is None:
            self.headers["Authorization"] = basic_auth(url.userinfo)
        return dict(self.headers)

    def request(self, headers: Mapping[str, str]) -> bytes:
        """The upgrade request for the current URL with ``headers`` (a fresh key and offer)."""
        options = self.options
        self.key = self.key_factory()
        offer = None
        if options.per_message_deflate is not None:
            self.deflate = PerMessageDeflate(
                options.per_message_deflate, is_server=False, max_payload=options.max_payload
            )
            offer = extension.format({PerMessageDeflate.EXTENSION_NAME: self.deflate.offer()})
        self.sent_headers = dict(headers)
        return build_request(
            self.url.host_header,
            self.url.target,
            self.key,
            version=options.protocol_version,
            protocols=options.protocols,
            extensions_header=offer,
            origin=options.origin,
            headers=self.sent_headers,
        )

    def receive_data(self, data: bytes) -> None:
        """Bytes from the server."""
        if self.state == self.HEAD:
            self._receive_head(data)
        elif self.state == self.BODY:
            assert self.body is not None
            try:
                done = self.body.feed(data)
            except HandshakeError as exc:
                self._fail(exc)
                return
            if done:
                self._body_done()
        elif self.state == self.OPEN:
            self.reader.buffer += data  # frames, kept for the WebSocket

    def receive_eof(self) -> None:
        """The server closed its side."""
        if self.state == self.HEAD:
            self._fail(HandshakeError("socket hang up", "WS_ERR_HANDSHAKE_CLOSED"))
        elif self.state == self.BODY:
            assert self.body is not None
            try:
                self.body.feed_eof()
            except HandshakeError as exc:
                self._fail(exc)
                return
            self._body_done()

    def take_rest(self) -> bytes:
        """The bytes that followed the 101 head (the first frames), now the caller's."""
        return self.reader.take_rest()

    def follow(self) -> str:
        """After ``REDIRECT``: the next address (serialised as WHATWG does), with the state
        reset for its attempt.

        Raises :class:`HandshakeError` past ``max_redirects`` and :class:`InvalidURL` for a
        Location that is not a WebSocket URL (ws' order: the count is checked first).
        """
        assert self.response is not None and self.state == self.REDIRECT
        self.redirects += 1
        if self.redirects > self.options.max_redirects:
            raise HandshakeError("Maximum redirects exceeded", "WS_ERR_MAX_REDIRECTS")
        address = resolve_url(self.address, self.response.headers["location"])
        self.url = parse_url(address)
        # ws reports the serialised URL ('redirect', ws.url): normalised host, encoded path.
        self.address = address if self.url.unix_path is not None else self.url.href
        self._begin()
        return self.address

    def unexpected_error(self) -> HandshakeError:
        """The error for a non-101 answer nobody listened to (ws' message)."""
        assert self.response is not None
        status = self.response.status
        return HandshakeError(
            f"Unexpected server response: {status}",
            "WS_ERR_UNEXPECTED_RESPONSE",
            http_status=status,
        )

    def _fail(self, exc: HandshakeError) -> None:
        self.state = self.FAILED
        self.error = exc

    def _receive_head(self, data: bytes) -> None:
        # Node's parser refuses a response that does not start with "HTTP/" at its first byte:
        # garbage fails at once instead of waiting for a head that never ends.
        seen = bytes(self.reader.buffer[:5]) + data[:5]
        if not (seen[:5].startswith(b"HTTP/") or b"HTTP/".startswith(seen[:5])):
            self._fail(HandshakeError("Invalid HTTP response", "WS_ERR_INVALID_RESPONSE"))
            return
        try:
            if not self.reader.feed(data):
                return
            self.response = response = self.reader.response()
        except RequestError:
            self._fail(HandshakeError("Invalid HTTP response", "WS_ERR_INVALID_RESPONSE"))
            return
        except HandshakeError as exc:
            self._fail(exc)
            return
        status = response.status
        if status == 101:
            try:
                self._accept(response)
            except HandshakeError as exc:
                self._fail(exc)
                return
            self.state = self.OPEN
            return
        location = response.headers.get("location")
        if self.options.follow_redirects and 300 <= status < 400 and location:
            self.state = self.REDIRECT
            return
        try:
            self.body = BodyReader(status, response.headers)
        except HandshakeError as exc:
            self._fail(exc)
            return
        self.state = self.BODY
        # A body already complete (204, Content-Length: 0, all of it in this read) is finished
        # by receive_data itself.
        self.receive_data(self.reader.take_rest())

    def _body_done(self) -> None:
        assert self.body is not None and self.response is not None
        self.response.body = bytes(self.body.body)
        self.state = self.DONE

    def _accept(self, response: Response) -> None:
        self.protocol, offered = validate_response(response, self.key, self.options.protocols)
        if not offered:
            self.deflate = None
            return
        # Only permessage-deflate exists, and only an offered extension may be answered.
        name = PerMessageDeflate.EXTENSION_NAME
        if self.deflate is None or set(offered) != {name}:
            raise HandshakeError(
                "Server indicated an extension that was not requested",
                "WS_ERR_INVALID_EXTENSIONS",
            )
        try:
            self.extensions = {name: self.deflate.accept(offered[name])}
        except ValueError:
            raise HandshakeError(
                "Invalid Sec-WebSocket-Extensions header", "WS_ERR_INVALID_EXTENSIONS"
            ) from None


def _get_header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _set_header(headers: dict[str, str], name: str, value: str) -> None:
    for key in [k for k in headers if k.lower() == name.lower()]:
        del headers[key]
    headers[name] = value


def _same_host(a: ParsedURL, b: ParsedURL) -> bool:
    # ws compares url.host (host and non-default port), or the socket path for ws+unix.
    if a.unix_path is not None or b.unix_path is not None:
        return a.unix_path == b.unix_path
    return a.host_header.lower() == b.host_header.lower()

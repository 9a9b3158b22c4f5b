"""Options, one typed and validated object per side (ws' ``options`` objects, snake_case).

Every option is checked here, once, when a connection or a server is built: a wrong value is a
``ValueError`` or ``TypeError`` at construction, never a surprise later. The defaults live in
:mod:`wsfast.constants`. The ``TypedDict`` classes give ``connect(**options)`` and
``serve(**options)`` signatures that a type checker can check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from .constants import (
    BINARY_TYPES,
    DEFAULT_BACKLOG,
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_BROADCAST_BUFFER,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HANDSHAKES,
    DEFAULT_MAX_PAYLOAD,
    DEFAULT_MAX_PENDING_AUTO_PONGS,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_SERVER_HANDSHAKE_TIMEOUT,
    MAX_HEAD_SIZE,
    MAX_HEADERS,
    PROTOCOL_VERSIONS,
)
from .subprotocol import is_valid_token

if TYPE_CHECKING:
    import logging
    import ssl as ssl_module

__all__ = [
    "ConnectionOptions",
    "ClientOptions",
    "ServerOptions",
    "ClientOptionsDict",
    "ServerOptionsDict",
    "deflate_options",
]


def _non_negative_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def _cap(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1 or None, got {value}")


def _duration(name: str, value: Any, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def _is_ssl_context(value: Any) -> bool:
    # Duck-typed so that this module stays free of the ssl module (DESIGN section 2: the core
    # imports no I/O); an SSLContext is what has wrap_socket and wrap_bio.
    return callable(getattr(value, "wrap_socket", None)) and callable(
        getattr(value, "wrap_bio", None)
    )


def _logger(value: Any) -> None:
    # Duck-typed: a logging.Logger or LoggerAdapter (or anything with their two methods used
    # here), a logger name, or None for the default (wsfast.client / wsfast.server).
    if value is None or isinstance(value, str):
        return
    if not callable(getattr(value, "isEnabledFor", None)) or not callable(
        getattr(value, "log", None)
    ):
        raise TypeError(
            "logger must be a logging.Logger, a logging.LoggerAdapter, a logger name or None, "
            f"not {type(value).__name__}"
        )


def deflate_options(value: Any) -> dict[str, Any] | None:
    """``per_message_deflate`` as a dict of parameters, or None when compression is off.

    As in ws, any mapping (even an empty one) turns compression on with those parameters;
    ``True`` means the defaults, ``False`` or ``None`` off.
    """
    if isinstance(value, Mapping):
        return dict(value)
    if value is None or value is False:
        return None
    if value is True:
        return {}
    raise TypeError(f"per_message_deflate must be a bool or a mapping, not {type(value).__name__}")


@dataclass(frozen=True)
class ConnectionOptions:
    """What one open connection needs, on either side."""

    max_payload: int = DEFAULT_MAX_PAYLOAD
    max_fragments: int = 0
    skip_utf8_validation: bool = False
    auto_pong: bool = True
    max_pending_auto_pongs: int = DEFAULT_MAX_PENDING_AUTO_PONGS
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT
    max_queue: int = DEFAULT_MAX_QUEUE
    binary_type: str = "bytes"
    generate_mask: Callable[[], bytes] | None = None
    ping_interval: float | None = None
    ping_timeout: float | None = None
    logger: Any = None

    def __post_init__(self) -> None:
        _non_negative_int("max_payload", self.max_payload)
        _logger(self.logger)
        for name in ("ping_interval", "ping_timeout"):
            value = getattr(self, name)
            _duration(name, value, optional=True)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 seconds or None (off), got {value}")
        _non_negative_int("max_fragments", self.max_fragments)
        _non_negative_int("max_pending_auto_pongs", self.max_pending_auto_pongs)
        _duration("close_timeout", self.close_timeout, optional=False)
        _non_negative_int("max_queue", self.max_queue)
        if self.max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        if self.binary_type not in BINARY_TYPES:
            raise ValueError(
                f"invalid binary_type {self.binary_type!r} (one of {', '.join(BINARY_TYPES)})"
            )
        if self.generate_mask is not None and not callable(self.generate_mask):
            raise TypeError("generate_mask must be callable")


@dataclass(frozen=True)
class ClientOptions(ConnectionOptions):
    """A client's options (ws' ``new WebSocket(address, protocols, options)``)."""

    protocols: tuple[str, ...] = ()
    per_message_deflate: dict[str, Any] | None = field(default_factory=dict)
    handshake_timeout: float | None = None
    origin: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    protocol_version: int = 13
    follow_redirects: bool = False
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    ssl: ssl_module.SSLContext | bool | None = None
    proxy: str | bool | None = None
    proxy_ssl: ssl_module.SSLContext | None = None
    create_connection: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        ConnectionOptions.__post_init__(self)
        if self.protocol_version not in PROTOCOL_VERSIONS:
            raise ValueError(
                f"Unsupported protocol version: {self.protocol_version} "
                f"(supported versions: {', '.join(map(str, PROTOCOL_VERSIONS))})"
            )
        protocols = self.protocols
        if len(set(protocols)) != len(protocols) or not all(
            isinstance(p, str) and is_valid_token(p) for p in protocols
        ):
            raise ValueError("An invalid or duplicated subprotocol was specified")
        _duration("handshake_timeout", self.handshake_timeout, optional=True)
        _non_negative_int("max_redirects", self.max_redirects)
        if self.ssl is not None and not (isinstance(self.ssl, bool) or _is_ssl_context(self.ssl)):
            raise TypeError("ssl must be an ssl.SSLContext, a bool or None")
        if self.proxy is not None and not isinstance(self.proxy, (str, bool)):
            raise TypeError("proxy must be a URL string, True (the environment) or None")
        if self.proxy_ssl is not None and not _is_ssl_context(self.proxy_ssl):
            raise TypeError("proxy_ssl must be an ssl.SSLContext or None")

    @classmethod
    def build(cls, protocols: str | Iterable[str] | None = None, **options: Any) -> ClientOptions:
        """Normalise what a user passed (``protocols`` as a str or a list, any header mapping,
        ``per_message_deflate`` as a bool or any mapping), then validate it."""
        if isinstance(protocols, str):
            protocols = [protocols]
        headers = options.pop("headers", None) or {}
        items = headers.items() if isinstance(headers, Mapping) else headers
        pmd = deflate_options(options.pop("per_message_deflate", True))
        return cls(
            protocols=tuple(protocols or ()),
            per_message_deflate=pmd,
            headers=tuple((str(k), str(v)) for k, v in items),
            **options,
        )


@dataclass(frozen=True)
class ServerOptions(ConnectionOptions):
    """A server's options (ws' ``new WebSocketServer(options)``)."""

    port: int | None = None
    host: str | None = None
    backlog: int = DEFAULT_BACKLOG
    per_message_deflate: dict[str, Any] | None = None
    verify_client: Callable[..., Any] | None = None
    handle_protocols: Callable[..., Any] | None = None
    client_tracking: bool = True
    path: str | None = None
    no_server: bool = False
    ssl: ssl_module.SSLContext | None = None
    handshake_timeout: float | None = DEFAULT_SERVER_HANDSHAKE_TIMEOUT
    max_head_size: int = MAX_HEAD_SIZE
    max_headers: int = MAX_HEADERS
    reuse_port: bool | None = None
    unix_path: str | None = None
    sock: Any = None
    max_connections: int | None = DEFAULT_MAX_CONNECTIONS
    max_handshakes: int | None = DEFAULT_MAX_HANDSHAKES
    max_broadcast_buffer: int = DEFAULT_MAX_BROADCAST_BUFFER
    backplane: Any = None

    def __post_init__(self) -> None:
        ConnectionOptions.__post_init__(self)
        modes = (
            (self.port is not None)
            + bool(self.no_server)
            + (self.unix_path is not None)
            + (self.sock is not None)
        )
        if modes != 1:
            raise TypeError(
                'One and only one of the "port", "no_server", "unix_path" or "sock" options '
                "must be specified"
            )
        if self.port is not None:
            _non_negative_int("port", self.port)
        _non_negative_int("backlog", self.backlog)
        _duration("handshake_timeout", self.handshake_timeout, optional=True)
        _non_negative_int("max_head_size", self.max_head_size)
        _non_negative_int("max_headers", self.max_headers)
        _cap("max_connections", self.max_connections)
        _cap("max_handshakes", self.max_handshakes)
        _non_negative_int("max_broadcast_buffer", self.max_broadcast_buffer)
        if self.backplane is not None and not isinstance(self.backplane, str):
            for method in ("attach", "publish", "subscribe", "unsubscribe", "close"):
                if not callable(getattr(self.backplane, method, None)):
                    raise TypeError(
                        "backplane must be a redis:// URL, None or a backplane object "
                        f"(wsfast.RedisBackplane); {self.backplane!r} has no {method}()"
                    )
        for name in ("verify_client", "handle_protocols"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be callable")
        if self.ssl is not None and not _is_ssl_context(self.ssl):
            raise TypeError("ssl must be an ssl.SSLContext or None")

    @classmethod
    def build(cls, **options: Any) -> ServerOptions:
        """Normalise what a user passed (``per_message_deflate`` as a bool or any mapping),
        then validate it."""
        pmd = deflate_options(options.pop("per_message_deflate", False))
        return cls(per_message_deflate=pmd, **options)

    def connection(self) -> ConnectionOptions:
        """The options each accepted connection gets."""
        return ConnectionOptions(
            max_payload=self.max_payload,
            max_fragments=self.max_fragments,
            skip_utf8_validation=self.skip_utf8_validation,
            auto_pong=self.auto_pong,
            max_pending_auto_pongs=self.max_pending_auto_pongs,
            close_timeout=self.close_timeout,
            max_queue=self.max_queue,
            binary_type=self.binary_type,
            generate_mask=self.generate_mask,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            logger=self.logger,
        )


class _ConnectionOptionsDict(TypedDict, total=False):
    max_payload: int
    max_fragments: int
    skip_utf8_validation: bool
    auto_pong: bool
    max_pending_auto_pongs: int
    close_timeout: float
    max_queue: int
    binary_type: str
    generate_mask: Callable[[], bytes] | None
    ping_interval: float | None
    ping_timeout: float | None
    logger: logging.Logger | logging.LoggerAdapter[Any] | str | None


class ClientOptionsDict(_ConnectionOptionsDict, total=False):
    """The keyword options of :func:`wsfast.connect`, for ``Unpack`` in its signature."""

    protocols: str | Iterable[str] | None
    per_message_deflate: bool | Mapping[str, Any]
    handshake_timeout: float | None
    origin: str | None
    headers: Mapping[str, str] | None
    protocol_version: int
    follow_redirects: bool
    max_redirects: int
    ssl: ssl_module.SSLContext | bool | None
    proxy: str | bool | None
    proxy_ssl: ssl_module.SSLContext | None
    create_connection: Callable[..., Any] | None


class ServerOptionsDict(_ConnectionOptionsDict, total=False):
    """The keyword options of :func:`wsfast.serve`, for ``Unpack`` in its signature."""

    port: int | None
    host: str | None
    backlog: int
    per_message_deflate: bool | Mapping[str, Any]
    verify_client: Callable[..., Any] | None
    handle_protocols: Callable[..., Any] | None
    client_tracking: bool
    path: str | None
    no_server: bool
    ssl: ssl_module.SSLContext | None
    handshake_timeout: float | None
    max_head_size: int
    max_headers: int
    reuse_port: bool | None
    unix_path: str | None
    sock: Any
    max_connections: int | None
    max_handshakes: int | None
    max_broadcast_buffer: int
    backplane: Any

"""Logging: the ``wsfast.client`` and ``wsfast.server`` loggers, and a DEBUG trace of frames.

Every connection logs to one logger: the ``logger=`` option of its entry point (a
:class:`logging.Logger`, a :class:`logging.LoggerAdapter` or a logger name), by default
``wsfast.client`` for clients and ``wsfast.server`` for a server and its connections (both
children of ``wsfast``, so configuring ``wsfast`` configures both).

When that logger has DEBUG enabled as a connection opens, the connection runs on
:class:`TracingProtocol`, which logs each message and control frame in both directions::

    > TEXT 'hello' [5 bytes]
    < BINARY 68 65 6c 6c 6f [5 bytes]
    > PING '' [0 bytes]
    < CLOSE 1000 (OK) 'bye' [5 bytes]

Otherwise the connection runs on the plain :class:`~wsfast.protocol.Protocol`: the trace
costs nothing, not even a check per frame, when DEBUG is off. Sent data is traced per call of
``send`` (``fin=False`` shows as ``continued``); received data per message, as the receiver
delivers it.
"""

from __future__ import annotations

import logging
from typing import Any, Union

from .protocol import Protocol

__all__ = ["CLIENT_LOGGER", "SERVER_LOGGER", "TracingProtocol", "format_peer", "resolve_logger"]

CLIENT_LOGGER = "wsfast.client"
SERVER_LOGGER = "wsfast.server"

# What a trace line shows of a payload at most: characters of text, bytes of binary (in hex).
PREVIEW = 60
BINARY_PREVIEW = 24

# (Union with a string: LoggerAdapter is subscriptable at run time only from Python 3.11.)
Logger = Union[logging.Logger, "logging.LoggerAdapter[Any]"]


def resolve_logger(value: Any, default: str) -> Logger:
    """The logger of the ``logger=`` option: ``None`` means ``default`` (a logger name)."""
    if value is None:
        return logging.getLogger(default)
    if isinstance(value, str):
        return logging.getLogger(value)
    return value  # type: ignore[no-any-return]


def format_peer(address: Any) -> str:
    """``host:port`` of a remote address (a Unix socket's path, or "?")."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in str(host) else f"{host}:{address[1]}"
    return str(address) if address else "?"


def _preview(data: Any, text: bool) -> str:
    if isinstance(data, list):  # binary_type="fragments"
        data = b"".join(data)
    if text:
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data).decode("utf-8", "replace")
        shown = repr(data[:PREVIEW])
        return shown + ("..." if len(data) > PREVIEW else "")
    view = memoryview(data.encode() if isinstance(data, str) else data).cast("B")
    shown = bytes(view[:BINARY_PREVIEW]).hex(" ")  # only the preview is copied
    return (shown or "''") + (" ..." if len(view) > BINARY_PREVIEW else "")


def _size(data: Any) -> int:
    if isinstance(data, str):
        return len(data.encode("utf-8", "surrogatepass"))
    if isinstance(data, list):
        return sum(len(chunk) for chunk in data)
    return memoryview(data).nbytes


class TracingProtocol(Protocol):
    """A :class:`~wsfast.protocol.Protocol` that logs every frame at DEBUG to ``log``."""

    __slots__ = ("log", "_message", "_ping", "_pong", "_close")

    def __init__(self, *, log: Logger, **kwargs: Any) -> None:
        self.log = log
        self._message = kwargs.get("on_message")
        self._ping = kwargs.get("on_ping")
        self._pong = kwargs.get("on_pong")
        self._close = kwargs.get("on_close_frame")
        kwargs["on_message"] = self._traced_message
        kwargs["on_ping"] = self._traced_ping
        kwargs["on_pong"] = self._traced_pong
        kwargs["on_close_frame"] = self._traced_close
        super().__init__(**kwargs)

    def _trace(self, arrow: str, kind: str, data: Any, text: bool, extra: str = "") -> None:
        self.log.debug(
            "%s %s %s [%d bytes%s]", arrow, kind, _preview(data, text), _size(data), extra
        )

    # -- received --------------------------------------------------------------------------------

    def _traced_message(self, data: Any, is_binary: bool) -> None:
        self._trace("<", "BINARY" if is_binary else "TEXT", data, not is_binary)
        if self._message is not None:
            self._message(data, is_binary)

    def _traced_ping(self, data: bytes) -> None:
        self._trace("<", "PING", data, False)
        if self._ping is not None:
            self._ping(data)

    def _traced_pong(self, data: bytes) -> None:
        self._trace("<", "PONG", data, False)
        if self._pong is not None:
            self._pong(data)

    def _traced_close(self, code: int, reason: str) -> None:
        self.log.debug("< CLOSE %d %r", code, reason)
        if self._close is not None:
            self._close(code, reason)

    # -- sent ------------------------------------------------------------------------------------

    def send(
        self,
        data: Any,
        binary: bool | None = None,
        fin: bool = True,
        compress: bool | None = None,
        mask: bool | None = None,
    ) -> None:
        super().send(data, binary, fin, compress, mask)
        is_binary = not isinstance(data, str) if binary is None else binary
        extra = "" if fin else ", continued"
        self._trace(">", "BINARY" if is_binary else "TEXT", data, not is_binary, extra)

    def ping(self, data: Any = b"", mask: bool | None = None) -> None:
        super().ping(data, mask)
        self._trace(">", "PING", data, False)

    def pong(self, data: Any = b"", mask: bool | None = None) -> None:
        super().pong(data, mask)
        self._trace(">", "PONG", data, False)

    def _send_close(self, code: int | None, reason: str | bytes) -> None:
        if not self.close_sent:
            self.log.debug("> CLOSE %s %r", code if code is not None else "(no code)", reason)
        super()._send_close(code, reason)

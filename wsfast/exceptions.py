"""Exceptions raised by wsfast.

Every protocol violation is a :class:`WebSocketError` that carries ws' stable string code
(``WS_ERR_INVALID_OPCODE``...) and the close code sent to the peer because of it.
"""

from __future__ import annotations

__all__ = ["WebSocketError", "ConnectionClosed", "HandshakeError", "InvalidURL"]


class WebSocketError(Exception):
    """A protocol error: ``code`` is ws' ``WS_ERR_*`` string, ``status_code`` the close code."""

    def __init__(self, message: str, code: str | None = None, status_code: int = 1002) -> None:
        super().__init__(message)
        self.code = code
        self.status_code = status_code


class HandshakeError(WebSocketError):
    """The opening handshake failed (bad request, bad response, timeout)."""

    def __init__(
        self, message: str, code: str | None = None, status_code: int = 1002, http_status: int = 0
    ) -> None:
        super().__init__(message, code, status_code)
        self.http_status = http_status


class InvalidURL(WebSocketError, ValueError):
    """The URL given to the client cannot be used (scheme, host, fragment)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "WS_ERR_INVALID_URL", 1002)


class ConnectionClosed(Exception):
    """Raised by ``recv()`` / ``send()`` awaitables once the connection is closed."""

    def __init__(self, code: int = 1006, reason: str = "") -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason

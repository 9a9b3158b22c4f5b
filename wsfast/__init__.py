"""wsfast: a fast, correct WebSocket client and server for Python that mirrors Node's ws."""

from __future__ import annotations

from . import buffer_util, validation
from .exceptions import ConnectionClosed, WebSocketError

__version__ = "0.1.0"

__all__ = ["ConnectionClosed", "WebSocketError", "speedups", "__version__"]


def speedups() -> dict[str, str | None]:
    """Versions of the native extensions in use, None for each one on its fallback."""
    return {"bufferutil": buffer_util.NATIVE_VERSION, "utf8validate": validation.NATIVE_VERSION}

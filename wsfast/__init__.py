"""wsfast: a fast, correct WebSocket client and server for Python that mirrors Node's ws.

The public names are re-exported here; ``tests/test_public_api.py`` checks the list.
"""

from __future__ import annotations

from . import buffer_util, validation
from .client import ClientRequest
from .constants import CLOSED, CLOSING, CONNECTING, OPEN
from .event_target import CloseEvent, ErrorEvent, Event, EventTarget, MessageEvent
from .exceptions import ConnectionClosed, HandshakeError, InvalidURL, WebSocketError
from .handshake import Headers, Request, Response, UnexpectedResponse
from .options import ClientOptions, ConnectionOptions, ServerOptions
from .proxy import ProxyError
from .sender import generate_mask
from .stream import WebSocketStreamWriter, create_websocket_stream
from .websocket import WebSocket, connect
from .websocket_server import ServerStats, VerifyInfo, WebSocketServer, serve

__version__ = "0.1.0"

__all__ = [
    "CLOSED",
    "CLOSING",
    "CONNECTING",
    "ClientOptions",
    "ClientRequest",
    "ConnectionOptions",
    "CloseEvent",
    "ErrorEvent",
    "Event",
    "EventTarget",
    "MessageEvent",
    "OPEN",
    "ProxyError",
    "ConnectionClosed",
    "HandshakeError",
    "Headers",
    "InvalidURL",
    "Request",
    "Response",
    "ServerOptions",
    "ServerStats",
    "UnexpectedResponse",
    "VerifyInfo",
    "WebSocket",
    "WebSocketError",
    "WebSocketServer",
    "WebSocketStreamWriter",
    "__version__",
    "connect",
    "create_websocket_stream",
    "generate_mask",
    "serve",
    "speedups",
]


def speedups() -> dict[str, str | None]:
    """Versions of the native extensions in use, None for each one on its fallback."""
    return {"bufferutil": buffer_util.NATIVE_VERSION, "utf8validate": validation.NATIVE_VERSION}

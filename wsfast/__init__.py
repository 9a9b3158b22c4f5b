"""wsfast: a fast, correct WebSocket client and server for Python that mirrors Node's ws.

The public names are re-exported here; ``tests/test_public_api.py`` checks the list.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass

from . import buffer_util, validation
from .backplane import Backplane, BackplaneStats, RedisBackplane
from .client import ClientRequest
from .constants import CLOSED, CLOSING, CONNECTING, OPEN
from .event_target import CloseEvent, ErrorEvent, Event, EventTarget, MessageEvent
from .exceptions import ConnectionClosed, HandshakeError, InvalidURL, WebSocketError
from .handshake import Headers, Request, Response, UnexpectedResponse
from .options import ClientOptions, ConnectionOptions, ServerOptions
from .proxy import ProxyError
from .sender import generate_mask
from .stream import WebSocketStreamWriter, create_websocket_stream
from .topics import Delivery, FanoutStats, broadcast
from .websocket import WebSocket, connect
from .websocket_server import ServerStats, VerifyInfo, WebSocketServer, serve

# The one source of the version: pyproject.toml reads it ([tool.setuptools.dynamic]).
__version__ = "0.1.0"

__all__ = [
    "Backplane",
    "BackplaneStats",
    "CLOSED",
    "CLOSING",
    "CONNECTING",
    "ClientOptions",
    "ClientRequest",
    "ConnectionOptions",
    "Delivery",
    "FanoutStats",
    "CloseEvent",
    "ErrorEvent",
    "Event",
    "EventTarget",
    "MessageEvent",
    "OPEN",
    "ProxyError",
    "RedisBackplane",
    "ConnectionClosed",
    "HandshakeError",
    "Headers",
    "InvalidURL",
    "Request",
    "Response",
    "ServerOptions",
    "ServerStats",
    "SpeedupStatus",
    "UnexpectedResponse",
    "VerifyInfo",
    "WebSocket",
    "WebSocketError",
    "WebSocketServer",
    "WebSocketStreamWriter",
    "__version__",
    "broadcast",
    "connect",
    "create_websocket_stream",
    "generate_mask",
    "serve",
    "speedups",
    "speedups_status",
]


def speedups() -> dict[str, str | None]:
    """Versions of the native extensions in use, None for each one on its fallback.

    :func:`speedups_status` says why a fallback is in use (not installed, switched off, or
    installed without its native module after a failed build) and how to fix it.
    """
    return {"bufferutil": buffer_util.NATIVE_VERSION, "utf8validate": validation.NATIVE_VERSION}


@dataclass(frozen=True)
class SpeedupStatus:
    """Why a speedup is or is not in use (one entry of :func:`speedups_status`)."""

    #: "native": the extension is in use; "disabled": switched off by its environment variable;
    #: "no-native-module": the distribution is installed but its module does not import (a build
    #: without a C compiler installs it without the module); "not-installed".
    state: str
    #: The distribution, e.g. "wsfast-bufferutil", and its installed version (None if absent).
    distribution: str
    installed_version: str | None
    #: The version of the native module in use, None on the fallback.
    module_version: str | None
    #: One line for people: what is in use, why, and how to fix it when something is wrong.
    detail: str


_SPEEDUPS = {
    "bufferutil": (buffer_util, "wsfast-bufferutil", "wsfast_bufferutil", "WSFAST_NO_BUFFER_UTIL"),
    "utf8validate": (
        validation,
        "wsfast-utf8validate",
        "wsfast_utf8validate",
        "WSFAST_NO_UTF_8_VALIDATE",
    ),
}


def _speedup_status(name: str) -> SpeedupStatus:
    module, dist, module_name, variable = _SPEEDUPS[name]
    try:
        installed: str | None = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    version = module.NATIVE_VERSION
    if module.NATIVE:
        return SpeedupStatus("native", dist, installed, version, f"native {version}")
    if module.NATIVE_ERROR == f"{variable} is set":
        return SpeedupStatus(
            "disabled", dist, installed, None, f"pure-Python fallback ({variable} is set)"
        )
    if installed is None:
        return SpeedupStatus(
            "not-installed",
            dist,
            None,
            None,
            "pure-Python fallback (not installed)",
        )
    found = importlib.util.find_spec(module_name) is not None
    why = (
        f"{module_name} failed to import: {module.NATIVE_ERROR}"
        if found
        else (f"{module_name} is missing: its build failed, probably for want of a C compiler")
    )
    fix = (
        f"with a C compiler and the Python headers, WSFAST_REQUIRE_EXTENSIONS=1 pip install "
        f"--force-reinstall --no-cache-dir --no-binary {dist} {dist}"
    )
    return SpeedupStatus(
        "no-native-module",
        dist,
        installed,
        None,
        f"pure-Python fallback ({dist} {installed} is installed WITHOUT its native module: "
        f"{why}; to fix it, {fix})",
    )


def speedups_status() -> dict[str, SpeedupStatus]:
    """Per speedup, whether its native module is in use and, if not, why and how to fix it."""
    return {name: _speedup_status(name) for name in _SPEEDUPS}

"""Protocol constants shared by the core (the twin of ws' ``lib/constants.js``)."""

from __future__ import annotations

__all__ = [
    "GUID",
    "OP_CONTINUATION",
    "OP_TEXT",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "CONNECTING",
    "OPEN",
    "CLOSING",
    "CLOSED",
    "BINARY_TYPES",
    "EMPTY",
    "DEFAULT_MAX_PAYLOAD",
    "DEFAULT_CLOSE_TIMEOUT",
]

# RFC 6455 section 1.3: the fixed GUID appended to Sec-WebSocket-Key.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CONNECTING = 0
OPEN = 1
CLOSING = 2
CLOSED = 3

BINARY_TYPES = ("bytes", "bytearray", "fragments")

EMPTY = b""

# ws' default maxPayload: 100 MiB.
DEFAULT_MAX_PAYLOAD = 100 * 1024 * 1024
# ws' closeTimeout is 30000 ms; wsfast durations are seconds.
DEFAULT_CLOSE_TIMEOUT = 30.0

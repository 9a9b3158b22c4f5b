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
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_PENDING_AUTO_PONGS",
    "HELD_ERROR_TIMEOUT",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_SERVER_HANDSHAKE_TIMEOUT",
    "DEFAULT_MAX_REDIRECTS",
    "DEFAULT_BACKLOG",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_HANDSHAKES",
    "PROTOCOL_VERSIONS",
    "MAX_HEAD_SIZE",
    "MAX_HEADERS",
    "MAX_RESPONSE_HEAD",
    "MAX_RESPONSE_HEADERS",
    "MAX_PROXY_HEAD",
    "MAX_UNEXPECTED_BODY",
    "DEFAULT_MAX_BROADCAST_BUFFER",
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
# Messages buffered for recv() while no 'message' listener exists; at this many the socket stops
# being read (backpressure), as websockets' max_queue does.
DEFAULT_MAX_QUEUE = 16
# ws 8.23's maxPendingAutoPongs: automatic pongs still unwritten (the peer does not read) before
# the connection is terminated; 0 disables the cap.
DEFAULT_MAX_PENDING_AUTO_PONGS = 60
# A protocol error found while the application still has messages to take from recv() is held
# (reading stops) so that it can answer them; the connection fails when it asks for the next
# message, or after this many seconds if it does not (a stuck application).
HELD_ERROR_TIMEOUT = 5.0
# Keepalive of connect() and serve() (the asyncio API), as websockets: a ping every 20 s, and a
# connection whose pong does not come within 20 s is dropped. ws' WebSocket and
# WebSocketServer have no keepalive (None) unless asked.
DEFAULT_PING_INTERVAL = 20.0
DEFAULT_PING_TIMEOUT = 20.0
# A server drops a connection whose opening handshake (TLS included) takes longer than this.
DEFAULT_SERVER_HANDSHAKE_TIMEOUT = 60.0
# ws' maxRedirects.
DEFAULT_MAX_REDIRECTS = 10
# Node's default listen() backlog.
DEFAULT_BACKLOG = 511
# No cap on a server's open connections plus handshakes in flight, as in ws: the process' file
# descriptor limit (ulimit -n) is the bound until an operator sets one (docs/limits.md).
DEFAULT_MAX_CONNECTIONS: int | None = None
# No cap on handshakes in flight either: the right figure is arrival rate x handshake time
# (Little's law), which depends on verify_client's latency and the traffic, not on the library;
# a fixed default would answer 503 to a legitimate reconnect storm (thousands of clients coming
# back after a restart) while a silent client is already dropped by handshake_timeout.
DEFAULT_MAX_HANDSHAKES: int | None = None
# Sec-WebSocket-Version values ws accepts (RFC 6455's 13 and HyBi draft 8).
PROTOCOL_VERSIONS = (8, 13)
# Node's default --max-http-header-size is 16 KiB; requests beyond it get 431.
MAX_HEAD_SIZE = 16 * 1024
MAX_HEADERS = 100
# A response head larger than this is refused (ws relies on Node's 16 KiB parser limit).
MAX_RESPONSE_HEAD = 64 * 1024
MAX_RESPONSE_HEADERS = 256
# A proxy's answer to CONNECT is a bare head; anything longer is not a proxy to trust.
MAX_PROXY_HEAD = 16 * 1024
# Bodies of non-101 answers are read for 'unexpected-response' up to this size.
MAX_UNEXPECTED_BODY = 1024 * 1024

# publish()/broadcast() skip a receiver whose transport already holds more than this many unsent
# bytes, and count it as dropped (DESIGN section 7: a bound per subscriber, a counter). 1 MiB is
# 16 times asyncio's default high-water mark (64 KiB): a receiver that far behind is not keeping
# up, and 10,000 of them at the bound hold at most 10 GiB, each bounded.
DEFAULT_MAX_BROADCAST_BUFFER = 1024 * 1024

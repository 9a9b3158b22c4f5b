"""A minimal asyncio HTTP/1.1 server with Node's 'request' and 'upgrade' events.

wsfast has no HTTP framework; this small server plays the part of Node's ``http.createServer()``
in the examples that put a WebSocket endpoint inside another server (``no_server=True`` and
``handle_upgrade``). Any asyncio server that can hand over its transport works the same way.
"""

import asyncio
import json

import wsfast
from wsfast.event_emitter import EventEmitter


class HTTPServer(EventEmitter):
    """Emits ``'request'`` with ``(request, respond)``, ``'upgrade'`` with ``(request, transport,
    head)``."""

    async def listen(self, port, host=None, ssl=None):
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Connection(self), host, port, ssl=ssl)
        return self.server.sockets[0].getsockname()[1]


class _Connection(asyncio.Protocol):
    def __init__(self, server):
        self.server = server
        self.buffer = bytearray()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > 16 * 1024:
                self.transport.close()
            return
        head, rest = self.buffer[:end].decode("latin-1"), bytes(self.buffer[end + 4 :])
        self.buffer.clear()
        request_line, *lines = head.split("\r\n")
        method, path, version = request_line.split(" ", 2)
        headers = wsfast.Headers(
            (name.strip(), value.strip())
            for name, _, value in (line.partition(":") for line in lines)
        )
        peer = self.transport.get_extra_info("peername")
        secure = self.transport.get_extra_info("sslcontext") is not None
        request = wsfast.Request(method, path, headers, version, peer, secure)
        if headers.get("upgrade", "").lower() == "websocket":
            # From here on the transport belongs to whoever handles the upgrade.
            self.transport.pause_reading()
            self.server.emit("upgrade", request, self.transport, rest)
        else:
            self.server.emit("request", request, lambda *args: respond(self.transport, *args))


def respond(transport, status, body, content_type="application/json"):
    """Write one response and close the connection (no keep-alive: it is an example)."""
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    transport.write(head.encode() + body)
    transport.close()

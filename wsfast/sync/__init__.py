"""Blocking WebSocket client and threaded server on sockets and threads, no asyncio.

    from wsfast.sync import connect, serve

    with connect("ws://127.0.0.1:8080") as ws:
        ws.send("hello")
        message = ws.recv(timeout=5.0)

    def handler(ws):
        for message in ws:
            ws.send(message)

    with serve(handler, "127.0.0.1", 8080) as server:
        server.serve_forever()

The same sans-I/O core as the asyncio API (:class:`wsfast.protocol.Protocol` and the
handshakes of :mod:`wsfast.handshake`) with the same options; see ``docs/sync.md``.
"""

from __future__ import annotations

from .client import ClientConnection, connect
from .connection import Connection
from .server import Server, ServerConnection, serve

__all__ = ["ClientConnection", "Connection", "Server", "ServerConnection", "connect", "serve"]

"""The floor: a minimal WebSocket echo server in Python, for the echo tables.

``raw`` (a TCP echo) is the ceiling of the loop and the kernel, but only the raw client can
drive it, so it does not say how fast a *WebSocket* server driven by picows' client could be.
This server answers that: one ``asyncio.BufferedProtocol`` reading into one reused buffer, the
frame header parsed by hand, the payload unmasked in place by ``wsfast_bufferutil.unmask``
(native), and the echo written as a header and a view of the payload. No message object, no
listener, no validation, no extension, no limits.

It is not a WebSocket implementation: it serves exactly what the benchmark clients send
(unfragmented data frames, then a close) and nothing else. It parses headers in Python, so a
server that parses in native code can beat it where many frames come per read (wsfast's native
scanner does, pipelined); with one frame per read it shows what the Python-level work of a read
costs at the least, and picows (Cython below its handler) beats it there.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from typing import Any

__all__ = ["FloorEcho", "serve_floor"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_KEY = re.compile(rb"(?im)^sec-websocket-key:[ \t]*([^\r\n]+?)[ \t]*\r$")
_READ = 256 * 1024  # room asked for before each read


try:
    from wsfast_bufferutil import unmask as _unmask
except ImportError:  # the fallback's cost; the tables say which path ran
    from wsfast.buffer_util import unmask as _unmask


class FloorEcho(asyncio.BufferedProtocol):
    """Echoes each data frame; answers a close with a close."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.buffer = bytearray(_READ)
        self.view = memoryview(self.buffer)
        self.start = 0  # first unparsed byte
        self.end = 0  # one past the last byte read
        self.open = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if len(self.buffer) - self.end < _READ:
            self._make_room(self.end - self.start + _READ)
        return self.view[self.end :]

    def _make_room(self, needed: int) -> None:
        """Move the unparsed bytes to the front of a buffer of at least ``needed`` bytes."""
        pending = self.view[self.start : self.end]
        if needed <= len(self.buffer) and self.start:
            self.buffer[: len(pending)] = pending
        elif needed > len(self.buffer):
            buffer = bytearray(max(needed, 2 * len(self.buffer)))
            buffer[: len(pending)] = pending
            self.buffer, self.view = buffer, memoryview(buffer)
        self.start, self.end = 0, len(pending)

    def buffer_updated(self, nbytes: int) -> None:
        self.end += nbytes
        if not self.open:
            self._handshake()
            return
        buffer, view, start, end = self.buffer, self.view, self.start, self.end
        out: list[Any] = []  # the echoes of this read, written at once
        views = False  # whether ``out`` holds views of the buffer
        while end - start >= 6:
            length = buffer[start + 1] & 0x7F
            head = 6
            if length == 126:
                head = 8
                length = int.from_bytes(buffer[start + 2 : start + 4], "big")
            elif length == 127:
                head = 14
                length = int.from_bytes(buffer[start + 2 : start + 10], "big")
            if end - start < head + length:
                if start + head + length > len(buffer):
                    self.start = start
                    self._write(out, views)
                    self._make_room(head + length + _READ)
                    return
                break
            opcode = buffer[start] & 0x0F
            payload = view[start + head : start + head + length]
            _unmask(payload, view[start + head - 4 : start + head])
            start += head + length
            if opcode == 8:
                self._write(out, views)
                self.transport.write(b"\x88" + bytes([length]) + bytes(payload))
                self.transport.close()
                return
            if length < 126:
                out.append(bytes((0x80 | opcode, length)))
            elif length < 65536:
                out.append(bytes((0x80 | opcode, 126)) + length.to_bytes(2, "big"))
            else:
                out.append(bytes((0x80 | opcode, 127)) + length.to_bytes(8, "big"))
            if length < 4096:
                out.append(bytes(payload))
            else:
                out.append(payload)
                views = True
        if start == end:
            start = end = 0
        self.start, self.end = start, end
        self._write(out, views)

    def _write(self, out: list[Any], views: bool) -> None:
        if not out:
            return
        if not views:
            self.transport.write(b"".join(out))
            return
        self.transport.writelines(out)
        if self.transport.get_write_buffer_size():
            # The transport kept views of this buffer: leave the buffer to it.
            pending = self.view[self.start : self.end]
            rest = bytearray(max(_READ, len(pending)))
            rest[: len(pending)] = pending
            self.buffer, self.view = rest, memoryview(rest)
            self.start, self.end = 0, len(pending)

    def _handshake(self) -> None:
        head = bytes(self.view[: self.end])
        if b"\r\n\r\n" not in head:
            return
        match = _KEY.search(head)
        if match is None:
            self.transport.close()
            return
        accept = base64.b64encode(hashlib.sha1(match.group(1) + _GUID).digest())
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.open = True
        self.start = self.end = 0


async def serve_floor(host: str) -> tuple[int, asyncio.AbstractServer]:
    server = await asyncio.get_running_loop().create_server(FloorEcho, host, 0)
    return server.sockets[0].getsockname()[1], server

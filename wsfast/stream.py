"""A duplex byte stream over a WebSocket (ws' ``lib/stream.js``, ``createWebSocketStream``).

ws wraps a WebSocket in a Node ``Duplex``; the asyncio counterpart is the pair
``(StreamReader, StreamWriter)`` that ``asyncio.open_connection`` returns, so code written for
TCP streams (``readexactly``, ``readline``, ``write`` + ``drain``) runs over a WebSocket as is.

Each message received is appended to the reader; each ``write`` sends one message. Backpressure
works both ways, as in ws: when the reader holds more than twice its ``limit`` the WebSocket is
paused (ws' ``if (!duplex.push(data)) ws.pause()``) and resumed once it is read down to ``limit``;
``await writer.drain()`` waits while the WebSocket's transport is above its high-water mark.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .websocket import WebSocket

__all__ = ["create_websocket_stream", "WebSocketStreamWriter"]

# asyncio's own default limit of a StreamReader (asyncio.streams._DEFAULT_LIMIT).
DEFAULT_LIMIT = 2**16


class _PauseAdapter:
    """What the StreamReader sees as its transport: its flow control drives ``ws.pause()``."""

    __slots__ = ("ws",)

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    def pause_reading(self) -> None:
        self.ws.pause()

    def resume_reading(self) -> None:
        if self.ws.is_paused:
            self.ws.resume()


class WebSocketStreamWriter:
    """The writing half: the methods of :class:`asyncio.StreamWriter` over ``ws.send``.

    Every :meth:`write` sends one message (binary for bytes, text for ``str``); writes made while
    the WebSocket is still connecting are sent once it opens, as in ws. :meth:`close` and
    :meth:`write_eof` start the closing handshake (ws' ``duplex.end()`` -> ``ws.close()``); the
    reader still gets what the peer sends until its close frame arrives.
    """

    def __init__(self, ws: WebSocket, reader: asyncio.StreamReader, binary: bool) -> None:
        self._ws = ws
        self._reader = reader
        self._binary = binary
        self._pending: list[bytes | str] = []
        self._last: Any = None
        self._closing = False

    @property
    def websocket(self) -> WebSocket:
        """The WebSocket under the stream."""
        return self._ws

    @property
    def transport(self) -> Any:
        """The WebSocket's asyncio transport (None while connecting)."""
        return self._ws.transport

    def write(self, data: bytes | bytearray | memoryview | str) -> None:
        """Send ``data`` as one message; call :meth:`drain` to respect backpressure."""
        if self._closing or self._ws.ready_state > WebSocket.OPEN:
            # asyncio's StreamWriter ignores writes after the transport closed, and drain()
            # reports the lost connection; so does this one.
            return
        if not isinstance(data, str):
            data = bytes(data)
        if self._ws.ready_state == WebSocket.CONNECTING:
            self._pending.append(data)
            if len(self._pending) == 1:
                self._ws.once("open", self._flush)
            return
        self._send(data)

    def _send(self, data: bytes | str) -> None:
        binary = self._binary if not isinstance(data, str) else False
        self._last = self._ws.send(data, binary=binary)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for data in pending:
            self._send(data)
        if self._closing:
            self._ws.close()

    def writelines(self, data: Any) -> None:
        """Write each item of ``data`` (one message each)."""
        for item in data:
            self.write(item)

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its high-water mark.

        Raises ConnectionResetError once the connection is closed, as asyncio's ``drain`` does.
        """
        ws = self._ws
        if ws.ready_state == WebSocket.CONNECTING:
            await ws.wait_open()
        exc = self._reader.exception()
        if exc is not None:
            # asyncio's drain() raises the reader's exception too.
            raise exc
        last, self._last = self._last, None
        if ws.ready_state == WebSocket.CLOSED:
            raise ConnectionResetError("Connection lost")
        if last is not None:
            # send() made while OPEN returns a future resolved once the transport drained (or
            # the connection is gone), never an error.
            await last

    def can_write_eof(self) -> bool:
        """True: :meth:`write_eof` sends the close frame."""
        return True

    def write_eof(self) -> None:
        """End the writing side: start the closing handshake (ws' ``duplex.end()``)."""
        if self._closing:
            return
        self._closing = True
        if self._ws.ready_state == WebSocket.CONNECTING:
            if not self._pending:
                self._ws.once("open", self._flush)
            return
        self._ws.close()

    def close(self) -> None:
        """Start closing the WebSocket; :meth:`wait_closed` waits for the end."""
        self.write_eof()

    def is_closing(self) -> bool:
        """Whether :meth:`close` was called or the WebSocket is closing or closed."""
        return self._closing or self._ws.ready_state > WebSocket.OPEN

    async def wait_closed(self) -> None:
        """Wait until the WebSocket is closed."""
        await self._ws.wait_closed()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The transport's extra info (``"peername"``, ``"sockname"``, ``"ssl_object"``...)."""
        transport = self._ws.transport
        return default if transport is None else transport.get_extra_info(name, default)

    def __repr__(self) -> str:
        return f"<WebSocketStreamWriter {self._ws!r}>"


def create_websocket_stream(
    ws: WebSocket, *, limit: int = DEFAULT_LIMIT, binary: bool = True
) -> tuple[asyncio.StreamReader, WebSocketStreamWriter]:
    """Wrap ``ws`` in a ``(reader, writer)`` pair (ws' ``createWebSocketStream(ws)``).

    ``reader`` is an :class:`asyncio.StreamReader` fed with every message (text is UTF-8
    encoded); it reaches EOF when the WebSocket closes and raises the WebSocket's error if one
    occurred. ``limit`` is the reader's limit (as in ``asyncio.open_connection``): reading from
    the socket stops above twice this many buffered bytes. ``binary=False`` sends bytes written
    to ``writer`` as text messages (they must then be valid UTF-8).
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    reader.set_transport(_PauseAdapter(ws))  # type: ignore[arg-type]
    writer = WebSocketStreamWriter(ws, reader, binary)

    def on_message(data: Any, is_binary: bool) -> None:
        # 'close' (which feeds EOF) is always the last event: only a failed reader is left.
        if reader.exception() is not None:
            return
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif isinstance(data, list):  # binary_type "fragments"
            data = b"".join(data)
        reader.feed_data(data)

    def on_error(exc: Exception) -> None:
        reader.set_exception(exc)

    def on_close(code: int, reason: str) -> None:
        reader.feed_eof()

    ws.on("message", on_message)
    ws.once("error", on_error)
    ws.once("close", on_close)
    if ws.ready_state == WebSocket.CLOSED:
        reader.feed_eof()
    return reader, writer

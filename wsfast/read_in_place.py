"""Large payloads read in place: the asyncio side of ``Receiver.payload_buffer``.

When the receiver starts a payload of ``IN_PLACE_MIN`` bytes or more (``on_in_place``), an
asyncio front end hands its transport to a :class:`PayloadReader` for the rest of the frame: the
socket then reads straight into the message's buffer, with no bytes object per read and no join
at the end, and the front end takes the transport back once the payload is complete. Used by
:class:`wsfast.WebSocket`, as client and as server; the uvicorn engine and ``wsfast.sync`` still
collect the reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["PayloadReader", "switch_protocol"]

# What a read takes when there is nothing left to read in place (see PayloadReader.get_buffer).
_SPARE_SIZE = 65536


def switch_protocol(transport: asyncio.Transport, protocol: asyncio.BaseProtocol) -> None:
    """Make ``protocol`` the transport's protocol from its next read on."""
    if transport.is_closing():
        return
    transport.set_protocol(protocol)
    if transport.is_reading():
        # uvloop picks its read callbacks (bytes or buffer) when reading starts.
        transport.pause_reading()
        transport.resume_reading()


class PayloadReader(asyncio.BufferedProtocol):
    """The transport's protocol while a large payload is read in place.

    ``buffer()`` gives where the next read goes (``Protocol.payload_buffer``), ``read(n)`` is
    called after each read with its count, and ``usual(data)`` takes a read made when nothing was
    left to read in place (the front end's ``data_received``, after taking the transport back).
    The other callbacks go to ``owner``, the front end's own protocol.
    """

    __slots__ = ("_owner", "_buffer", "_read", "_usual", "_spare")

    def __init__(
        self,
        owner: asyncio.Protocol,
        buffer: Callable[[], memoryview | None],
        read: Callable[[int], None],
        usual: Callable[[bytes], None],
    ) -> None:
        self._owner = owner
        self._buffer = buffer
        self._read = read
        self._usual = usual
        self._spare: memoryview | None = None

    def get_buffer(self, sizehint: int) -> memoryview:
        view = self._buffer()
        if view is None:
            # Nothing to read in place any more (the connection failed, or bytes were fed the
            # usual way meanwhile): this read takes the usual way too.
            view = self._spare = memoryview(bytearray(_SPARE_SIZE))
        return view

    def buffer_updated(self, nbytes: int) -> None:
        spare = self._spare
        if spare is None:
            self._read(nbytes)
            return
        self._spare = None
        self._usual(bytes(spare[:nbytes]))

    def eof_received(self) -> bool | None:
        return self._owner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._owner.pause_writing()

    def resume_writing(self) -> None:
        self._owner.resume_writing()

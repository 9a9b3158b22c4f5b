"""Byte streams for the blocking adapter: a socket, or TLS over a socket.

One thread reads (:meth:`Stream.recv`) while others write (:meth:`Stream.sendall`, serialised
by the connection). TLS runs on an ``ssl.SSLObject`` over memory BIOs rather than an
``SSLSocket``: the reader and the writers then share one OpenSSL object only under a lock held
for in-memory work (never across a blocking socket call), and closing can send TLS'
close_notify and half-close TCP as asyncio's SSL transport does, which an ``SSLSocket`` with a
thread blocked in ``recv()`` cannot.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any, cast

__all__ = ["Stream", "StreamSocket", "TLSStream", "RECV_SIZE"]

#: Bytes asked of the socket per read (asyncio's selector transport reads 256 KiB).
RECV_SIZE = 262144


class Stream:
    """A plain socket as a byte stream."""

    secure = False

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv(self) -> bytes:
        """The next bytes; ``b""`` at EOF."""
        return self.sock.recv(RECV_SIZE)

    def sendall(self, data: Any) -> None:
        """Write all of ``data`` (blocks while the peer does not read)."""
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        """Half-close: the peer reads EOF, this side can still read."""
        self.sock.shutdown(socket.SHUT_WR)

    def abort(self) -> None:
        """Drop the connection now; a thread blocked in :meth:`recv` returns."""
        try:
            # A reset rather than a FIN: the connection is dropped, not closed (asyncio's
            # abort() does the same by closing with nothing flushed).
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        except OSError:
            pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        """Release the socket."""
        self.sock.close()

    def settimeout(self, timeout: float | None) -> None:
        """Bound each blocking call (the opening handshake); None blocks."""
        self.sock.settimeout(timeout)


class TLSStream(Stream):
    """TLS (client or server side) over ``sock``; the TLS handshake runs in the constructor."""

    secure = True

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        initial: bytes = b"",
    ) -> None:
        super().__init__(sock)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(
            self.incoming, self.outgoing, server_side=server_side, server_hostname=server_hostname
        )
        # Guards the SSLObject and both BIOs; held only for in-memory work.
        self.lock = threading.Lock()
        # Records leave in the order the SSLObject made them: taking them from the outgoing
        # BIO and writing them to the socket is one step under this lock.
        self.send_lock = threading.Lock()
        if initial:
            self.incoming.write(initial)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._send_records()
                data = sock.recv(RECV_SIZE)
                if not data:
                    raise ConnectionResetError("the peer closed during the TLS handshake") from None
                self.incoming.write(data)
        self._send_records()

    def _send_records(self) -> None:
        with self.send_lock:
            with self.lock:
                data = self.outgoing.read()
            if data:
                self.sock.sendall(data)

    def recv(self) -> bytes:
        while True:
            with self.lock:
                try:
                    data = self.tls.read(RECV_SIZE)
                except ssl.SSLWantReadError:
                    data = None
                except ssl.SSLZeroReturnError:  # the peer's close_notify
                    data = b""
                answer = self.outgoing.pending
            if answer:  # a key update or a shutdown answer to send
                self._send_records()
            if data is not None:
                return data
            raw = self.sock.recv(RECV_SIZE)
            if not raw:
                # An EOF without close_notify: the connection ended all the same (asyncio's
                # SSL transport reports it as EOF too).
                return b""
            with self.lock:
                self.incoming.write(raw)

    def sendall(self, data: Any) -> None:
        with self.send_lock:
            with self.lock:
                self.tls.write(data)
                records = self.outgoing.read()
            self.sock.sendall(records)

    def shutdown_write(self) -> None:
        # close_notify, then TCP's FIN: what asyncio's SSL transport sends on close().
        with self.send_lock:
            with self.lock:
                try:
                    self.tls.unwrap()
                except ssl.SSLError:
                    pass  # SSLWantReadError: the peer's close_notify is not here yet
                records = self.outgoing.read()
            if records:
                self.sock.sendall(records)
            self.sock.shutdown(socket.SHUT_WR)


class StreamSocket:
    """A :class:`Stream` seen as the socket a :class:`TLSStream` runs over: TLS inside TLS,
    for ``wss://`` through an ``https://`` proxy. Only what :class:`TLSStream` and the
    connection call on their socket is here."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.family = stream.sock.family

    @staticmethod
    def over(stream: Stream) -> socket.socket:
        """``stream``'s own socket for a plain stream, else ``stream`` wrapped."""
        if not stream.secure:
            return stream.sock
        return cast(socket.socket, StreamSocket(stream))

    def recv(self, size: int) -> bytes:
        return self.stream.recv()

    def sendall(self, data: Any) -> None:
        self.stream.sendall(data)

    def shutdown(self, how: int) -> None:
        if how == socket.SHUT_WR:
            self.stream.shutdown_write()
        else:
            self.stream.abort()

    def setsockopt(self, *args: Any) -> None:
        self.stream.sock.setsockopt(*args)

    def settimeout(self, timeout: float | None) -> None:
        self.stream.settimeout(timeout)

    def close(self) -> None:
        self.stream.close()

    def getpeername(self) -> Any:
        return self.stream.sock.getpeername()

    def getsockname(self) -> Any:
        return self.stream.sock.getsockname()

"""Fan-out inside one process: :func:`broadcast` and the topic registry behind
``WebSocketServer.subscribe`` / ``unsubscribe`` / ``publish``.

A message is framed once (:class:`~wsfast.sender.PreparedMessage`) and the same ``bytes``
object is written to every receiver's transport; a compressed frame is built once per set of
deflate parameters among receivers without context takeover (see
:meth:`~wsfast.protocol.Protocol.send_prepared` for the rule).

Slow receivers are skipped and counted, never closed: a receiver whose transport already holds
more than ``max_buffered`` unsent bytes (default
:data:`~wsfast.constants.DEFAULT_MAX_BROADCAST_BUFFER`, 1 MiB) does not get the message, and the
``dropped`` counter says so. Memory per receiver stays under that bound plus one message, and a
stalled receiver costs the others one comparison. Skipping rather than closing (uWebSockets lets
one choose; websockets' ``broadcast`` does neither) keeps a receiver that catches up; an
application that wants the close can read the counters and call ``ws.close(1013)`` itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from .constants import CLOSED, DEFAULT_MAX_BROADCAST_BUFFER
from .sender import PreparedMessage
from .websocket import WebSocket

__all__ = ["broadcast", "Delivery", "FanoutStats", "Topics", "PreparedMessage"]


class Delivery(NamedTuple):
    """What one :func:`broadcast` or ``publish`` did locally."""

    #: Receivers the frame was written to.
    delivered: int
    #: Receivers skipped because their transport held more than ``max_buffered`` bytes.
    dropped: int


class FanoutStats(NamedTuple):
    """A server's fan-out counters since it started (``WebSocketServer.fanout_stats``)."""

    #: Messages given to ``publish()`` on this server.
    published: int
    #: Messages written to local subscribers (one per subscriber per message).
    delivered: int
    #: Messages not written to a local subscriber because it was too slow.
    dropped: int
    #: Topics with at least one local subscriber now.
    topics: int


def broadcast(
    clients: Iterable[WebSocket],
    data: str | bytes | bytearray | memoryview | PreparedMessage,
    binary: bool | None = None,
    *,
    max_buffered: int = DEFAULT_MAX_BROADCAST_BUFFER,
) -> Delivery:
    """Send one message to every connection in ``clients``, framed once.

    ``str`` is text and anything else binary unless ``binary`` says otherwise. Connections that
    are not OPEN (or are in the middle of a fragmented message) are passed over; a connection
    whose ``buffered_amount`` exceeds ``max_buffered`` is skipped and counted in ``dropped``.
    Nothing is awaited: the frames are handed to the transports at the next loop turn, one
    ``write`` per connection for all the messages of that turn (see
    :meth:`WebSocket.send_prepared`).
    """
    message = data if isinstance(data, PreparedMessage) else PreparedMessage(data, binary)
    delivered = dropped = 0
    opened: list[WebSocket] = []
    for ws in clients:
        if ws.buffered_amount > max_buffered:
            dropped += 1
        elif ws.send_prepared(message, opened):
            delivered += 1
    if opened:
        # One callback writes every batch this call opened, at the next loop turn.
        asyncio.get_running_loop().call_soon(_flush, opened)
    return Delivery(delivered, dropped)


def _flush(connections: list[WebSocket]) -> None:
    for ws in connections:
        ws.flush()


class Topics:
    """Which connections subscribe to which topic, and the counters of what was sent.

    ``on_first(topic)`` runs when a topic gets its first local subscriber and ``on_last(topic)``
    when it loses its last one (the backplane subscribes and unsubscribes there, once per
    topic per process).
    """

    def __init__(
        self,
        max_buffered: int = DEFAULT_MAX_BROADCAST_BUFFER,
        on_first: Callable[[str], Any] | None = None,
        on_last: Callable[[str], Any] | None = None,
    ) -> None:
        self.max_buffered = max_buffered
        self.on_first = on_first
        self.on_last = on_last
        self._subscribers: dict[str, set[WebSocket]] = {}
        # The 'close' listener of each subscribed connection, to remove it when it leaves its
        # last topic (a connection subscribing and leaving in a loop must not pile them up).
        self._leave: dict[WebSocket, Callable[..., None]] = {}
        self.published = 0
        self.delivered = 0
        self.dropped = 0

    @property
    def stats(self) -> FanoutStats:
        """The counters now."""
        return FanoutStats(self.published, self.delivered, self.dropped, len(self._subscribers))

    def topics(self) -> list[str]:
        """The topics with at least one local subscriber."""
        return list(self._subscribers)

    def subscribers(self, topic: str) -> frozenset[WebSocket]:
        """The local subscribers of ``topic`` now."""
        return frozenset(self._subscribers.get(topic, ()))

    def subscribe(self, ws: WebSocket, topic: str) -> bool:
        """Add ``ws`` to ``topic``; False if it was there already or the connection is closed."""
        if not isinstance(topic, str):
            raise TypeError(f"a topic is a str, not {type(topic).__name__}")
        if ws.ready_state == CLOSED:
            return False
        subscribers = self._subscribers.get(topic)
        if subscribers is None:
            subscribers = self._subscribers[topic] = set()
            if self.on_first is not None:
                self.on_first(topic)
        elif ws in subscribers:
            return False
        subscribers.add(ws)
        joined = ws.topics
        if not joined and ws not in self._leave:

            def leave(*args: Any) -> None:
                self._leave.pop(ws, None)
                for name in list(ws.topics):
                    self._remove(ws, name)

            self._leave[ws] = leave
            ws.once("close", leave)
        joined.add(topic)
        return True

    def unsubscribe(self, ws: WebSocket, topic: str) -> bool:
        """Remove ``ws`` from ``topic``; False if it was not subscribed."""
        if topic not in ws.topics:
            return False
        self._remove(ws, topic)
        if not ws.topics:
            leave = self._leave.pop(ws, None)
            if leave is not None:
                ws.off("close", leave)
        return True

    def _remove(self, ws: WebSocket, topic: str) -> None:
        ws.topics.discard(topic)
        subscribers = self._subscribers.get(topic)
        if subscribers is None:
            return
        subscribers.discard(ws)
        if not subscribers:
            del self._subscribers[topic]
            if self.on_last is not None:
                self.on_last(topic)

    def deliver(self, topic: str, message: PreparedMessage) -> Delivery:
        """Write ``message`` to the local subscribers of ``topic`` and count it."""
        subscribers = self._subscribers.get(topic)
        if not subscribers:
            return Delivery(0, 0)
        result = broadcast(subscribers, message, max_buffered=self.max_buffered)
        self.delivered += result.delivered
        self.dropped += result.dropped
        return result

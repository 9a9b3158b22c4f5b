"""Topics across processes and machines: the Redis pub/sub backplane of ``WebSocketServer``.

``WebSocketServer(..., backplane="redis://127.0.0.1:6379/0")`` (or
``backplane=RedisBackplane(url)``) joins the server's topics to Redis: one SUBSCRIBE per topic
per process, whatever its number of local subscribers, and every ``publish()`` is written to
its local subscribers at once (not after a round trip to Redis) and published to Redis for the
other servers. The server's own messages come back from Redis and are recognised by the server
id in their header and not delivered twice.

Redis pub/sub delivers at most once, and so does this backplane, openly:

- While Redis is away, ``publish()`` keeps serving local subscribers; what it could not hand to
  Redis is counted in ``stats.lost``, and messages the other servers published meanwhile are
  never seen (Redis keeps nothing for a disconnected subscriber). The header carries a
  per-topic sequence number of each publishing server, so such a gap is counted on arrival of
  the next message (``stats.gaps``).
- The server emits ``'backplane'`` with ``(connected, error)`` when the connection is lost or
  cannot be made (``connected`` False) and when it is back (True); ``stats.connected`` says the
  same. Reconnection retries with exponential backoff (``reconnect_min`` doubling up to
  ``reconnect_max`` seconds, with jitter) and restores every subscription.
- Publishes wait in a bounded queue (``max_pending`` messages) while Redis is slow; past the
  bound the newest are dropped and counted in ``lost``: memory stays bounded.

The message on the wire: a 26-byte header (version, flags with bit 0 for binary, the 16-byte
id of the publishing server, an 8-byte per-topic sequence number), then the payload as the
WebSocket message carries it (UTF-8 for text), forwarded without re-encoding. Channel names are
``channel_prefix + topic``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["Backplane", "BackplaneStats", "RedisBackplane", "encode", "decode"]

_log = logging.getLogger("wsfast.server")

_HEADER = struct.Struct("!BB16sQ")
#: The header's size in bytes.
HEADER_SIZE = _HEADER.size
_VERSION = 1
_BINARY = 0x01

Deliver = Callable[[str, memoryview, bool], Any]
OnState = Callable[[bool, "BaseException | None"], Any]


def encode(origin: bytes, seq: int, payload: bytes | bytearray | memoryview, binary: bool) -> bytes:
    """One backplane message: the header, then the payload's bytes."""
    return _HEADER.pack(_VERSION, _BINARY if binary else 0, origin, seq) + payload


def decode(data: bytes) -> tuple[bytes, int, memoryview, bool]:
    """``(origin, seq, payload, binary)`` of a backplane message; ValueError if malformed."""
    if len(data) < HEADER_SIZE:
        raise ValueError("backplane message shorter than its header")
    version, flags, origin, seq = _HEADER.unpack_from(data)
    if version != _VERSION:
        raise ValueError(f"backplane message of unknown version {version}")
    return origin, seq, memoryview(data)[HEADER_SIZE:], bool(flags & _BINARY)


async def _cancel_and_wait(tasks: list[asyncio.Task[None]], timeout: float = 2.0) -> None:
    """Cancel ``tasks`` and wait until they have ended.

    A redis-py command can swallow a cancellation that arrives while it runs (seen with an
    UNSUBSCRIBE in flight when a server closed: the task went on to its next wait and the
    server's close() never returned), so what is still running is cancelled again where it
    waits next; after ``timeout`` the rest is left behind with a warning rather than hanging.
    """
    pending = {task for task in tasks if not task.done()}
    deadline = asyncio.get_running_loop().time() + timeout
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)
        if pending and asyncio.get_running_loop().time() > deadline:
            _log.warning("backplane: %d task(s) did not end when cancelled", len(pending))
            return
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: the session's outcome is reported by the caller


class BackplaneStats(NamedTuple):
    """A backplane's health and counters since it started."""

    #: Whether the connection to the broker is up now.
    connected: bool
    #: Messages handed to the broker.
    published: int
    #: Messages from other servers received and delivered locally.
    received: int
    #: Messages of this server that never reached the broker (away, or queue full).
    lost: int
    #: Messages of other servers known missed (gaps in their per-topic sequence numbers).
    gaps: int
    #: Successful reconnections after a loss.
    reconnects: int
    #: Messages waiting to be handed to the broker.
    pending: int


class Backplane:
    """What a server needs of a backplane; :class:`RedisBackplane` is the one provided.

    The server calls :meth:`attach` once (inside its event loop), :meth:`subscribe` when a
    topic gets its first local subscriber and :meth:`unsubscribe` when it loses its last,
    :meth:`publish` for every message, and awaits :meth:`close` when it closes.
    """

    def attach(self, deliver: Deliver, on_state: OnState) -> None:
        """Start; ``deliver(topic, payload, binary)`` takes messages from other servers and
        ``on_state(connected, error)`` hears of each loss and recovery."""
        raise NotImplementedError

    def subscribe(self, topic: str) -> None:
        """Receive the messages other servers publish on ``topic``."""
        raise NotImplementedError

    def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic``."""
        raise NotImplementedError

    def publish(self, topic: str, payload: bytes | bytearray | memoryview, binary: bool) -> None:
        """Send a message to the other servers (never waits)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Stop and release the connections."""
        raise NotImplementedError


class RedisBackplane(Backplane):
    """Redis pub/sub as the backplane, with redis-py's asyncio client (``pip install
    wsfast[redis]``; hiredis is used when installed).

    ``url`` is a redis-py URL (``redis://host:6379/0``, ``rediss://`` for TLS,
    ``unix:///path``). The Redis database number does not separate pub/sub channels (Redis
    channels are global to the server): use ``channel_prefix`` to run several applications on
    one Redis.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        channel_prefix: str = "wsfast:",
        max_pending: int = 10_000,
        reconnect_min: float = 0.1,
        reconnect_max: float = 5.0,
        timeout: float = 5.0,
        batch: int = 256,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401  (optional: the wsfast[redis] extra)
        except ImportError as exc:
            raise ImportError(
                "the Redis backplane needs redis-py: pip install 'wsfast[redis]'"
            ) from exc
        self.url = url
        self.channel_prefix = channel_prefix
        self.max_pending = max_pending
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.timeout = timeout
        self.batch = batch
        #: This server's id in the messages' header (16 random bytes).
        self.server_id = os.urandom(16)
        self._deliver: Deliver | None = None
        self._on_state: OnState | None = None
        self._topics: set[str] = set()
        self._pending: collections.deque[tuple[str, bytes]] = collections.deque()
        self._seq: dict[str, int] = {}
        self._seen: dict[tuple[bytes, str], int] = {}
        self._wake: asyncio.Event | None = None
        self._sync_wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._connected = False
        self._ever_connected = False
        self._reported_down = False
        self.published = 0
        self.received = 0
        self.lost = 0
        self.gaps = 0
        self.reconnects = 0

    @property
    def stats(self) -> BackplaneStats:
        """Health and counters now."""
        return BackplaneStats(
            self._connected,
            self.published,
            self.received,
            self.lost,
            self.gaps,
            self.reconnects,
            len(self._pending),
        )

    @property
    def connected(self) -> bool:
        """Whether the connection to Redis is up."""
        return self._connected

    def attach(self, deliver: Deliver, on_state: OnState) -> None:
        if self._task is not None:
            raise RuntimeError("this backplane is attached to a server already")
        self._deliver = deliver
        self._on_state = on_state
        self._wake = asyncio.Event()
        self._sync_wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    # -- topics and publishing ----------------------------------------------------------------

    def _channel(self, topic: str) -> str:
        return self.channel_prefix + topic

    def subscribe(self, topic: str) -> None:
        self._topics.add(topic)
        self._wake_sync()

    def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)
        for key in [key for key in self._seen if key[1] == topic]:
            del self._seen[key]
        self._wake_sync()

    def _wake_sync(self) -> None:
        # One task of the session sends SUBSCRIBE/UNSUBSCRIBE for what changed (see _sync):
        # commands from tasks of their own raced on the connection and hung its closing.
        sync = self._sync_wake
        if sync is not None:
            sync.set()

    def publish(self, topic: str, payload: bytes | bytearray | memoryview, binary: bool) -> None:
        # Numbered even when lost: the other servers see the gap.
        seq = self._seq.get(topic, 0) + 1
        self._seq[topic] = seq
        if not self._connected or len(self._pending) >= self.max_pending:
            self.lost += 1
            return
        self._pending.append((self._channel(topic), encode(self.server_id, seq, payload, binary)))
        wake = self._wake
        if wake is not None:
            wake.set()

    # -- the connection ----------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.reconnect_min
        while not self._closing:
            error: BaseException | None = None
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = exc
            if self._closing:
                break
            if self._connected or not self._reported_down:
                # Lost, or down at start: said once, until the connection is back.
                self._set_state(False, error)
                delay = self.reconnect_min
            else:
                _log.debug("backplane: still no connection to Redis: %r", error)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.reconnect_max)

    def _set_state(self, connected: bool, error: BaseException | None) -> None:
        was = self._connected
        self._connected = connected
        if not connected:
            self._reported_down = True
            # What waited for Redis will not reach it: counted, not kept (at most once).
            self.lost += len(self._pending)
            self._pending.clear()
            _log.warning("backplane: no connection to Redis at %s: %r", self.url, error)
        else:
            self._reported_down = False
            if self._ever_connected and not was:
                self.reconnects += 1
            self._ever_connected = True
            _log.info("backplane: connected to Redis at %s", self.url)
        if self._on_state is not None:
            try:
                self._on_state(connected, error)
            except Exception:
                _log.exception("a 'backplane' listener raised")

    async def _session(self) -> None:
        """One connection to Redis: subscribe, then read and publish until it fails."""
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        client: Any = Redis.from_url(
            self.url,
            socket_connect_timeout=self.timeout,
            socket_keepalive=True,
            socket_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        pubsub: Any = client.pubsub(ignore_subscribe_messages=True)
        tasks: list[asyncio.Task[None]] = []
        try:
            await asyncio.wait_for(client.ping(), self.timeout)
            # Always subscribed to its own channel: the reader blocks on a live connection and
            # sees Redis go away even when no topic has a local subscriber.
            await pubsub.subscribe(self.channel_prefix + "\x00" + self.server_id.hex())
            # Restore every topic; topics that come or go during these awaits are caught up
            # before the state turns connected, and by the _sync task after.
            subscribed: set[str] = set()
            await self._update(pubsub, subscribed)
            self._set_state(True, None)
            tasks = [
                asyncio.ensure_future(self._read(pubsub)),
                asyncio.ensure_future(self._publish(client)),
                asyncio.ensure_future(self._sync(pubsub, subscribed)),
            ]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what ended the session
            raise ConnectionError("the backplane session ended")
        finally:
            await _cancel_and_wait(tasks)
            for closing in (pubsub.aclose(), client.aclose()):
                try:
                    await asyncio.wait_for(closing, 1.0)
                except Exception:
                    pass

    async def _update(self, pubsub: Any, subscribed: set[str]) -> None:
        """Send what makes Redis' subscriptions equal :attr:`_topics`; ``subscribed`` is kept
        up to date."""
        while subscribed != self._topics:
            want = set(self._topics)
            if want - subscribed:
                await pubsub.subscribe(*map(self._channel, want - subscribed))
            if subscribed - want:
                await pubsub.unsubscribe(*map(self._channel, subscribed - want))
            subscribed.clear()
            subscribed.update(want)

    async def _sync(self, pubsub: Any, subscribed: set[str]) -> None:
        wake = self._sync_wake
        assert wake is not None
        while True:
            wake.clear()
            await self._update(pubsub, subscribed)
            await wake.wait()

    async def _read(self, pubsub: Any) -> None:
        deliver = self._deliver
        assert deliver is not None
        prefix = len(self.channel_prefix)
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if message is None or message.get("type") != "message":
                continue
            try:
                origin, seq, payload, binary = decode(message["data"])
            except ValueError as exc:
                _log.warning("backplane: dropped a malformed message: %s", exc)
                continue
            if origin == self.server_id:
                continue  # delivered locally when it was published
            topic = message["channel"][prefix:].decode("utf-8", "surrogateescape")
            key = (origin, topic)
            last = self._seen.get(key)
            if last is not None and seq > last + 1:
                self.gaps += seq - last - 1
            self._seen[key] = seq
            self.received += 1
            try:
                deliver(topic, payload, binary)
            except Exception:
                _log.exception("backplane: delivering a message raised")

    async def _publish(self, client: Any) -> None:
        wake = self._wake
        assert wake is not None
        pending = self._pending
        while True:
            if not pending:
                wake.clear()
                await wake.wait()
                continue
            # One round trip for a burst (DESIGN section 7: publishes pipelined), in order.
            count = min(len(pending), self.batch)
            pipe = client.pipeline(transaction=False)
            for channel, data in (pending[i] for i in range(count)):
                pipe.publish(channel, data)
            # Bounded by socket_timeout, not wait_for: cancelling a pipeline inside wait_for
            # (which waits for the cancelled call to end) hung a worker's shutdown.
            await pipe.execute()
            for _ in range(count):
                pending.popleft()
            self.published += count

    async def close(self) -> None:
        self._closing = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._connected = False

"""The Redis backplane (issue 12, section 2) against a real redis-server on 127.0.0.1: exactly
once to every subscriber on every server, order per topic from one publisher, text stays text,
and the faults: Redis down at start, restarted mid-stream, slow."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from conftest import scaled, until, wait_for
from redis_server import RedisServer, redis_binary
from services import free_port

import wsfast
from wsfast import WebSocket, WebSocketServer
from wsfast.backplane import HEADER_SIZE, decode, encode

pytest.importorskip("redis")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(redis_binary())
    server.start()
    yield server
    server.close()


@pytest.fixture
def stopped_redis() -> Iterator[RedisServer]:
    """A redis-server that is not running yet: its port is chosen, nothing listens on it."""
    server = RedisServer(redis_binary())
    yield server
    server.close()


class Node:
    """One WebSocket server on the backplane, its clients and what they received."""

    def __init__(self, server: WebSocketServer) -> None:
        self.server = server
        self.clients: list[WebSocket] = []
        self.got: list[list[tuple[Any, bool]]] = []
        self.states: list[tuple[bool, Any]] = []
        server.on("backplane", lambda connected, error: self.states.append((connected, error)))

    @property
    def backplane(self) -> wsfast.RedisBackplane:
        backplane = self.server.backplane
        assert isinstance(backplane, wsfast.RedisBackplane)
        return backplane

    async def add_client(self, topic: str) -> list[tuple[Any, bool]]:
        url = f"ws://127.0.0.1:{self.server.address()[1]}"
        ws = await wait_for(wsfast.WebSocket(url, per_message_deflate=False).wait_open())
        got: list[tuple[Any, bool]] = []
        ws.on("message", lambda data, is_binary: got.append((data, is_binary)))
        self.clients.append(ws)
        self.got.append(got)
        await until(lambda: len(self.server.clients) == len(self.clients))
        peer = next(p for p in self.server.clients if not p.topics)
        self.server.subscribe(peer, topic)
        return got


@pytest.fixture
async def make_node() -> AsyncIterator[Any]:
    nodes: list[Node] = []

    async def make(backplane: Any) -> Node:
        server = WebSocketServer(port=0, host="127.0.0.1", backplane=backplane)
        # The 'backplane' listener goes on before the first await: a refused connection is
        # reported at once, before wait_listening() returns on Python 3.12 and later.
        node = Node(server)
        await wait_for(server.wait_listening())
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        for ws in node.clients:
            ws.terminate()
        await wait_for(node.server.close())
        assert node.backplane._task is not None and node.backplane._task.done()


async def subscribed_in_redis(redis: Any, channel: str, count: int) -> None:
    async def check() -> bool:
        ((_, n),) = await redis.pubsub_numsub(channel)
        return bool(n == count)

    deadline = time.monotonic() + scaled(10)
    while not await check():
        assert time.monotonic() < deadline, f"{channel} never had {count} subscribers"
        await asyncio.sleep(0.02)


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Any]:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def test_header_round_trip() -> None:
    origin = bytes(range(16))
    data = encode(origin, 7, "héllo".encode(), False)
    assert len(data) == HEADER_SIZE + 6
    assert decode(data) == (origin, 7, memoryview(b"h\xc3\xa9llo"), False)
    assert decode(encode(origin, 2**64 - 1, b"\x00", True))[3] is True
    with pytest.raises(ValueError):
        decode(b"short")
    with pytest.raises(ValueError):
        decode(b"\x02" + data[1:])


async def test_exactly_once_in_order_on_every_server(
    redis_server: RedisServer, redis_client: Any, make_node: Any
) -> None:
    a = await make_node(redis_server.url)
    b = await make_node(wsfast.RedisBackplane(redis_server.url))
    await until(lambda: a.backplane.connected and b.backplane.connected)
    assert a.states == [(True, None)] and b.states == [(True, None)]
    got_a = [await a.add_client("room") for _ in range(2)]
    got_b = [await b.add_client("room") for _ in range(2)]
    await b.add_client("other")
    # One SUBSCRIBE per topic per process, whatever the number of local subscribers.
    await subscribed_in_redis(redis_client, "wsfast:room", 2)
    await subscribed_in_redis(redis_client, "wsfast:other", 1)
    expected: list[tuple[Any, bool]] = []
    for i in range(100):
        message: Any = f"text {i} é" if i % 2 else f"binary {i}".encode()
        (a if i % 3 else b).server.publish("room", message)
        expected.append((message, not isinstance(message, str)))
    # Order per publishing server; every client exactly once.
    for got in got_a + got_b:
        await until(lambda got=got: len(got) >= 100, 10)
    await asyncio.sleep(scaled(0.2))  # nothing more arrives: no double delivery
    from_a = [m for i, m in enumerate(expected) if i % 3]
    from_b = [m for i, m in enumerate(expected) if not i % 3]
    for got in got_a + got_b:
        assert len(got) == 100
        assert sorted(map(repr, got)) == sorted(map(repr, expected))
        assert [m for m in got if m in from_a] == from_a
        assert [m for m in got if m in from_b] == from_b
    assert b.got[2] == []
    assert a.backplane.stats.lost == b.backplane.stats.lost == 0
    assert a.backplane.stats.gaps == b.backplane.stats.gaps == 0
    assert a.backplane.stats.received == len(from_b)
    assert b.backplane.stats.received == len(from_a)
    # The last local subscriber leaving a topic unsubscribes the process.
    for ws in list(b.server.clients):
        if "other" in ws.topics:
            b.server.unsubscribe(ws, "other")
    await subscribed_in_redis(redis_client, "wsfast:other", 0)


async def test_redis_down_at_start(stopped_redis: RedisServer, make_node: Any) -> None:
    a = await make_node(wsfast.RedisBackplane(stopped_redis.url, reconnect_max=0.2))
    b = await make_node(wsfast.RedisBackplane(stopped_redis.url, reconnect_max=0.2))
    local = await a.add_client("t")
    remote = await b.add_client("t")
    await until(lambda: bool(a.states) and bool(b.states))
    assert a.states[0][0] is False and a.states[0][1] is not None
    # Local subscribers are served while Redis is away; what could not go out is counted.
    assert a.server.publish("t", "while away").delivered == 1
    await until(lambda: local == [("while away", False)])
    assert a.backplane.stats.lost == 1 and not a.backplane.stats.connected
    await asyncio.sleep(scaled(0.5))
    assert len(a.states) == 1  # the retries are not reported again and again
    stopped_redis.start()
    await until(lambda: a.backplane.connected and b.backplane.connected, 10)
    assert a.states[-1] == (True, None) and b.states[-1] == (True, None)
    assert a.backplane.stats.reconnects == 0  # a first connection, not a reconnection
    from redis.asyncio import Redis

    client = Redis.from_url(stopped_redis.url)
    try:
        await subscribed_in_redis(client, "wsfast:t", 2)
    finally:
        await client.aclose()
    a.server.publish("t", "now")
    await until(lambda: remote == [("now", False)])
    await until(lambda: local == [("while away", False), ("now", False)])
    # b never heard of a before, so the lost message cannot be seen as a gap there (gaps are
    # counted between two received messages; the restart test shows them); a counted it.
    assert a.backplane.stats.lost == 1 and b.backplane.stats.gaps == 0


async def test_redis_restarted_mid_stream(redis_server: RedisServer, make_node: Any) -> None:
    a = await make_node(wsfast.RedisBackplane(redis_server.url, reconnect_min=0.05))
    b = await make_node(wsfast.RedisBackplane(redis_server.url, reconnect_min=0.05))
    local = await a.add_client("t")
    remote = await b.add_client("t")
    await until(lambda: a.backplane.connected and b.backplane.connected)
    from redis.asyncio import Redis

    async def both_subscribed() -> None:
        client = Redis.from_url(redis_server.url)
        try:
            await subscribed_in_redis(client, "wsfast:t", 2)
        finally:
            await client.aclose()

    await both_subscribed()
    sent = 0

    async def publish_for(seconds: float) -> None:
        nonlocal sent
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            a.server.publish("t", sent.to_bytes(4, "big"))
            sent += 1
            await asyncio.sleep(0.005)

    await publish_for(0.3)
    redis_server.stop()
    await publish_for(0.5)
    assert a.states[-1][0] is False and b.states[-1][0] is False
    redis_server.start()
    await until(lambda: a.backplane.connected and b.backplane.connected, 10)
    await both_subscribed()  # every subscription restored
    await publish_for(0.3)
    # Local delivery never stopped: every message, in order.
    await until(lambda: len(local) == sent, 10)
    assert [int.from_bytes(d, "big") for d, _ in local] == list(range(sent))
    stats = a.backplane.stats
    assert stats.reconnects == 1 and b.backplane.stats.reconnects == 1
    assert stats.lost > 0
    await until(lambda: a.backplane.stats.pending == 0)
    stats = a.backplane.stats
    assert stats.published + stats.lost == sent
    await until(lambda: len(remote) + b.backplane.stats.gaps == sent, 10)
    numbers = [int.from_bytes(d, "big") for d, _ in remote]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)  # order, once
    assert numbers[-1] == sent - 1
    assert [state for state, _ in a.states] == [True, False, True]


async def test_slow_redis_does_not_delay_local_subscribers(
    redis_server: RedisServer, redis_client: Any, make_node: Any
) -> None:
    a = await make_node(redis_server.url)
    b = await make_node(redis_server.url)
    local = await a.add_client("t")
    remote = await b.add_client("t")
    await until(lambda: a.backplane.connected and b.backplane.connected)
    await subscribed_in_redis(redis_client, "wsfast:t", 2)
    sleeping = asyncio.ensure_future(asyncio.to_thread(redis_server.command, "DEBUG", "SLEEP", "1"))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    for i in range(50):
        a.server.publish("t", f"m{i}")
    await until(lambda: len(local) == 50)
    local_delay = time.monotonic() - started
    assert local_delay < 0.5, local_delay  # Redis sleeps for 1 s
    assert not remote  # still asleep
    assert (await sleeping).startswith(b"+OK")
    await until(lambda: len(remote) == 50, 10)
    assert remote == [(f"m{i}", False) for i in range(50)]
    assert a.backplane.stats.lost == 0 and a.states == [(True, None)]


async def test_publish_queue_is_bounded_while_redis_is_slow(
    redis_server: RedisServer, make_node: Any
) -> None:
    a = await make_node(wsfast.RedisBackplane(redis_server.url, max_pending=10))
    await until(lambda: a.backplane.connected)
    sleeping = asyncio.ensure_future(asyncio.to_thread(redis_server.command, "DEBUG", "SLEEP", "1"))
    await asyncio.sleep(0.1)
    for i in range(100):
        a.server.publish("t", f"m{i}")
    stats = a.backplane.stats
    assert stats.pending <= 10 and stats.lost >= 80
    await sleeping
    await until(lambda: a.backplane.stats.pending == 0, 10)
    stats = a.backplane.stats
    assert stats.published + stats.lost == 100


async def test_a_backplane_url_without_redis_installed_says_how(monkeypatch: Any) -> None:
    import builtins

    real_import = builtins.__import__

    def no_redis(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("redis"):
            raise ImportError("No module named 'redis'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_redis)
    with pytest.raises(ImportError, match=r"wsfast\[redis\]"):
        wsfast.RedisBackplane(f"redis://127.0.0.1:{free_port()}/0")


async def test_a_bad_backplane_object_is_refused() -> None:
    with pytest.raises(TypeError, match="backplane"):
        WebSocketServer(port=0, backplane=object())


async def test_serve_with_a_backplane_joins_two_servers(
    redis_server: RedisServer, redis_client: Any
) -> None:
    """The asyncio API: ``serve(handler, backplane=url)`` on two servers, handlers that
    subscribe and publish; a message from a client of one server reaches the clients of both,
    text as text and binary as binary, and nothing twice."""
    servers: list[WebSocketServer] = []

    def handler_for(index: int) -> Any:
        async def handler(ws: WebSocket, request: Any) -> None:
            server = servers[index]
            server.subscribe(ws, "chat")
            async for message in ws:
                server.publish("chat", message)

        return handler

    async with wsfast.serve(handler_for(0), "127.0.0.1", 0, backplane=redis_server.url) as a:
        servers.append(a)
        async with wsfast.serve(handler_for(1), "127.0.0.1", 0, backplane=redis_server.url) as b:
            servers.append(b)
            assert isinstance(a.backplane, wsfast.RedisBackplane)
            clients = [
                await wait_for(wsfast.connect(f"ws://127.0.0.1:{server.address()[1]}"))
                for server in (a, b, b)
            ]
            await until(lambda: len(a.clients) == 1 and len(b.clients) == 2)
            await subscribed_in_redis(redis_client, "wsfast:chat", 2)
            await clients[0].send("hello from a")
            await clients[2].send(b"\x00binary from b")
            for ws in clients:
                got = [await wait_for(ws.recv()) for _ in range(2)]
                # Each publishing server's messages in order; the two servers' may interleave.
                assert sorted(map(repr, got)) == sorted(
                    map(repr, ["hello from a", b"\x00binary from b"])
                )
            await asyncio.sleep(scaled(0.2))
            for ws in clients:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(ws.recv(), 0.05)  # nothing twice
            assert a.backplane.stats.lost == b.backplane.stats.lost == 0
            for ws in clients:
                await wait_for(ws.close())
    assert a.backplane.connected is False and b.backplane.connected is False

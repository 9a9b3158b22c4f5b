"""Topics and broadcast in one process (issue 12, section 1): frame once, write the same bytes
to every transport, compress once where the receivers' parameters allow, skip and count slow
receivers, and leave every topic on close; on the event API and on ``serve``."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import pytest
from conftest import MakeClient, MakeServer, RawConnect, settle, until, upgrade_request, wait_for

import wsfast
import wsfast.sender
from wsfast import WebSocket, WebSocketServer
from wsfast.constants import OP_BINARY, OP_TEXT


def collect(ws: WebSocket) -> list[tuple[Any, bool]]:
    got: list[tuple[Any, bool]] = []
    ws.on("message", lambda data, is_binary: got.append((data, is_binary)))
    return got


async def subscribed(
    make_server: MakeServer, make_client: MakeClient, count: int, **options: Any
) -> tuple[WebSocketServer, list[WebSocket], list[WebSocket]]:
    """A server and ``count`` clients; returns (server, server-side sockets, clients)."""
    server = await make_server(**options)
    clients = [await make_client(f"ws://127.0.0.1:{server.address()[1]}") for _ in range(count)]
    await until(lambda: len(server.clients) == count)
    return server, list(server.clients), clients


async def test_publish_reaches_subscribers_only_text_and_binary(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    server, peers, clients = await subscribed(make_server, make_client, 3)
    got = [collect(ws) for ws in clients]
    by_peer = {id(p): p for p in peers}
    a, b, c = by_peer.values()
    assert server.subscribe(a, "news") is True
    assert server.subscribe(a, "news") is False
    assert server.subscribe(b, "news") is True
    assert server.subscribe(b, "sport") is True
    assert a.topics == {"news"} and b.topics == {"news", "sport"} and c.topics == set()
    assert server.publish("news", "héllo") == wsfast.Delivery(2, 0)
    assert server.publish("news", b"\x00\x01") == wsfast.Delivery(2, 0)
    assert server.publish("news", "as binary", binary=True).delivered == 2
    assert server.publish("nobody", "x") == wsfast.Delivery(0, 0)
    expected = [("héllo", False), (b"\x00\x01", True), (b"as binary", True)]
    await until(lambda: sum(map(len, got)) == 6)
    await settle()
    # Which client is which server-side socket: the two that got messages got exactly these.
    assert sorted(len(g) for g in got) == [0, 3, 3]
    for g in got:
        assert g in ([], expected)
    assert server.unsubscribe(b, "news") is True
    assert server.unsubscribe(b, "news") is False
    assert server.subscribers("news") == frozenset({a})
    stats = server.fanout_stats
    assert stats == wsfast.FanoutStats(published=4, delivered=6, dropped=0, topics=2)
    with pytest.raises(TypeError):
        server.subscribe(a, b"bytes")  # type: ignore[arg-type]


async def test_a_closed_connection_leaves_all_its_topics(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    server, peers, clients = await subscribed(make_server, make_client, 2)
    ws = peers[0]
    for topic in ("a", "b", "c"):
        server.subscribe(ws, topic)
    server.subscribe(peers[1], "a")
    assert server.fanout_stats.topics == 3
    listeners = ws.listener_count("close")
    # Leaving and joining again does not pile up 'close' listeners.
    for _ in range(5):
        for topic in ("a", "b", "c"):
            server.unsubscribe(ws, topic)
        for topic in ("a", "b", "c"):
            server.subscribe(ws, topic)
    assert ws.listener_count("close") == listeners
    ws.close()
    await wait_for(ws.wait_closed())
    assert ws.topics == set()
    assert server.subscribers("a") == frozenset({peers[1]})
    assert server.subscribers("b") == frozenset()
    assert server.fanout_stats.topics == 1
    assert server.subscribe(ws, "a") is False  # closed: not subscribed again


async def test_the_frame_is_built_once_and_the_same_bytes_go_to_every_transport(
    make_server: MakeServer, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, peers, clients = await subscribed(make_server, make_client, 20)
    got = [collect(ws) for ws in clients]
    for ws in peers:
        server.subscribe(ws, "t")
    calls: list[Any] = []
    real_frame = wsfast.sender.frame

    def counting_frame(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real_frame(*args, **kwargs)

    monkeypatch.setattr(wsfast.sender, "frame", counting_frame)
    written: list[Any] = []
    for ws in peers:
        transport: Any = ws.transport
        real_write = transport.write

        def write(data: Any, real_write: Any = real_write) -> None:
            written.append(data)
            real_write(data)

        transport.write = write
    payload = b"x" * 5000
    assert server.publish("t", payload).delivered == 20
    assert len(calls) == 1
    assert written == []  # written at the end of this loop turn, in one write per subscriber
    await asyncio.sleep(0)
    assert len(written) == 20
    assert all(item is written[0] for item in written)
    await until(lambda: all(g == [(payload, True)] for g in got))


async def test_a_burst_of_publishes_is_one_write_per_subscriber_in_order(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    server, peers, clients = await subscribed(make_server, make_client, 5)
    got = [collect(ws) for ws in clients]
    writes: list[int] = []
    for ws in peers:
        server.subscribe(ws, "t")
        transport: Any = ws.transport
        real_write = transport.write

        def write(data: Any, real_write: Any = real_write) -> None:
            writes.append(len(data))
            real_write(data)

        transport.write = write
    server.publish("t", "one")
    for ws in peers:
        ws.send("own")  # a direct send between publishes keeps its place
    server.publish("t", b"two")
    server.publish("t", "three")
    await until(lambda: all(len(g) == 4 for g in got))
    assert len(writes) == 5
    for g in got:
        assert g == [("one", False), ("own", False), (b"two", True), ("three", False)]


async def test_a_long_burst_without_a_loop_turn_stays_bounded(
    make_server: MakeServer, raw_peer: RawConnect
) -> None:
    limit = 256 * 1024
    server = await make_server(max_broadcast_buffer=limit)
    await raw_subscriber(raw_peer, server, None)  # reads nothing
    await until(lambda: len(server.clients) == 1)
    (ws,) = server.clients
    server.subscribe(ws, "t")
    dropped = 0
    for _ in range(2000):  # 128 MiB published without yielding to the loop
        dropped += server.publish("t", b"p" * 65536).dropped
    assert dropped > 1500
    assert ws.buffered_amount <= limit + 2 * 65536 + 28


async def test_broadcast_any_iterable_and_client_side_connections(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    server, peers, clients = await subscribed(make_server, make_client, 3)
    got = [collect(ws) for ws in clients]
    assert wsfast.broadcast(iter(peers), "all") == wsfast.Delivery(3, 0)
    await until(lambda: all(g == [("all", False)] for g in got))
    # Client connections mask: broadcast frames for them one by one, and the server reads it.
    received: list[Any] = []
    for ws in peers:
        ws.on("message", lambda data, is_binary: received.append(data))
    assert wsfast.broadcast(clients, b"up").delivered == 3
    await until(lambda: received == [b"up"] * 3)


async def one_subscriber(
    make_server: MakeServer, make_client: MakeClient
) -> tuple[WebSocketServer, WebSocket, WebSocket, list[tuple[Any, bool]]]:
    """A server, its one connection subscribed to "t", the client and what it receives."""
    server, peers, clients = await subscribed(make_server, make_client, 1)
    got = collect(clients[0])
    server.subscribe(peers[0], "t")
    return server, peers[0], clients[0], got


async def test_a_fragmented_message_is_not_interrupted(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    server, ws, client, got = await one_subscriber(make_server, make_client)
    ws.send("one ", fin=False)
    assert server.publish("t", "interloper") == wsfast.Delivery(0, 0)
    ws.send("two", fin=True)
    assert server.publish("t", "after").delivered == 1
    await until(lambda: len(got) == 2)
    assert got == [("one two", False), ("after", False)]


async def test_publish_from_a_listener_keeps_order_with_its_own_sends(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    server, ws, client, got = await one_subscriber(make_server, make_client)

    def on_message(data: Any, is_binary: bool) -> None:
        ws.send("reply")
        server.publish("t", "published")

    ws.on("message", on_message)
    client.send("go")
    await until(lambda: len(got) == 2)
    assert got == [("reply", False), ("published", False)]


async def raw_subscriber(
    raw_peer: RawConnect, server: WebSocketServer, extensions: str | None
) -> Any:
    extra = {"Sec-WebSocket-Extensions": extensions} if extensions else {}
    peer = await raw_peer(server, upgrade_request(**extra))
    status, headers, _ = await peer.read_head()
    assert status == 101
    return peer


@pytest.mark.parametrize(
    "offer, compressed",
    [
        ("permessage-deflate; server_no_context_takeover", True),
        ("permessage-deflate", False),
        (None, False),
    ],
    ids=["no-context-takeover", "context-takeover", "no-deflate"],
)
async def test_compression_once_for_receivers_without_context_takeover(
    make_server: MakeServer,
    raw_peer: RawConnect,
    monkeypatch: pytest.MonkeyPatch,
    offer: str | None,
    compressed: bool,
) -> None:
    server = await make_server(per_message_deflate={"threshold": 16})
    peers = [await raw_subscriber(raw_peer, server, offer) for _ in range(5)]
    await until(lambda: len(server.clients) == 5)
    for ws in server.clients:
        server.subscribe(ws, "t")
    calls: list[Any] = []
    real = wsfast.sender.deflate_message

    def counting(*args: Any) -> Any:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(wsfast.sender, "deflate_message", counting)
    text = "compress me " * 100
    assert server.publish("t", text).delivered == 5
    assert server.publish("t", "short").delivered == 5  # under the threshold: never compressed
    assert len(calls) == (1 if compressed else 0)
    for peer in peers:
        b0, opcode, payload = await peer.read_frame()
        assert opcode == OP_TEXT
        assert bool(b0 & 0x40) is compressed
        if compressed:
            payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        assert payload.decode() == text
        b0, opcode, payload = await peer.read_frame()
        assert not b0 & 0x40 and payload == b"short"


async def test_clients_with_compression_decode_the_shared_frame(
    make_server: MakeServer, make_client: MakeClient
) -> None:
    server = await make_server(
        per_message_deflate={"server_no_context_takeover": True, "threshold": 0}
    )
    url = f"ws://127.0.0.1:{server.address()[1]}"
    clients = [await make_client(url, per_message_deflate=True) for _ in range(3)]
    clients.append(await make_client(url))  # no deflate
    got = [collect(ws) for ws in clients]
    await until(lambda: len(server.clients) == 4)
    for ws in server.clients:
        server.subscribe(ws, "t")
    for i in range(3):
        server.publish("t", f"message {i} " * 50)
        server.publish("t", bytes(range(256)) * 4)
    await until(lambda: all(len(g) == 6 for g in got))
    for g in got:
        assert [data for data, _ in g[::2]] == [f"message {i} " * 50 for i in range(3)]
        assert all(data == bytes(range(256)) * 4 for data, _ in g[1::2])


async def test_a_slow_subscriber_is_skipped_and_counted_exactly(
    make_server: MakeServer, make_client: MakeClient, raw_peer: RawConnect
) -> None:
    limit = 256 * 1024
    server = await make_server(max_broadcast_buffer=limit)
    fast = await make_client(f"ws://127.0.0.1:{server.address()[1]}")
    got = collect(fast)
    slow = await raw_subscriber(raw_peer, server, None)  # reads nothing until the end
    await until(lambda: len(server.clients) == 2)
    for ws in server.clients:
        server.subscribe(ws, "t")
    payload = b"p" * 65536
    count = 300  # ~19.7 MiB: more than loopback's socket buffers absorb
    dropped = 0
    for _ in range(count):
        result = server.publish("t", payload)
        dropped += result.dropped
        await asyncio.sleep(0)  # the fast client keeps reading
        assert all(ws.buffered_amount <= limit + len(payload) + 14 for ws in server.clients)
    assert dropped > 0
    await until(lambda: len(got) == count, 20.0)  # the fast one got every message
    stats = server.fanout_stats
    assert stats.published == count
    assert stats.dropped == dropped
    assert stats.delivered + stats.dropped == 2 * count
    # The slow one gets exactly what was not dropped: published - received = dropped.
    received = 0
    while received < count - dropped:
        _, opcode, data = await slow.read_frame()
        assert opcode == OP_BINARY and data == payload
        received += 1
    assert received == count - dropped


async def test_topics_on_the_serve_api() -> None:
    async def handler(ws: WebSocket, request: Any) -> None:
        server.subscribe(ws, "room")
        async for message in ws:
            server.publish("room", message)

    async with wsfast.serve(handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.address()[1]}"
        async with wsfast.connect(url) as a, wsfast.connect(url) as b:
            await until(lambda: len(server.subscribers("room")) == 2)
            await a.send("hi all")
            assert await wait_for(a.recv()) == "hi all"
            assert await wait_for(b.recv()) == "hi all"
        await until(lambda: server.fanout_stats.topics == 0)

"""The asyncio API writes the answers to a pipelined burst together (WebSocket._write).

While received messages still wait in the recv() queue, what the application sends is batched
and written at the next loop turn: one write() for the burst instead of one per message. A lone
answer (nothing waiting) is written at once. Order, the closing handshake, backpressure and
``buffered_amount`` must be as without the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from conftest import RawPeer, client_frame, raw_websocket, wait_for

import wsfast

COUNT = 50


def count_writes(ws: wsfast.WebSocket) -> list[int]:
    """Wrap the connection's transport.write: the sizes written, in order."""
    transport: Any = ws.transport
    sizes: list[int] = []
    write = transport.write

    def counting(data: Any) -> None:
        sizes.append(len(data))
        write(data)

    transport.write = counting
    return sizes


async def echo_burst(
    raw_peer: Callable[..., Awaitable[RawPeer]], then_close: bool
) -> tuple[list[int], list[bytes], bytes]:
    writes: list[list[int]] = []
    started = asyncio.Event()

    async def handler(ws: wsfast.WebSocket, request: Any) -> None:
        writes.append(count_writes(ws))
        started.set()
        async for message in ws:
            await ws.send(message)
            if then_close and message == str(COUNT - 1):
                await ws.close(4000, "done")

    async with wsfast.serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
        peer = await raw_websocket(raw_peer, server)
        await wait_for(started.wait())
        # The whole burst in one write: the server reads it in one go (350 bytes).
        peer.write(b"".join(client_frame(str(i).encode(), 0x1) for i in range(COUNT)))
        echoed = []
        for _ in range(COUNT):
            b0, opcode, payload = await peer.read_frame()
            assert opcode == 0x1
            echoed.append(payload)
        closing = b""
        if then_close:
            b0, opcode, closing = await peer.read_frame()
            assert opcode == 0x8
        peer.close()  # gone without a close frame: the server does not wait for one
        return writes[0], echoed, closing


async def test_a_pipelined_burst_is_answered_in_a_few_writes(raw_peer: Any) -> None:
    sizes, echoed, _ = await echo_burst(raw_peer, then_close=False)
    assert echoed == [str(i).encode() for i in range(COUNT)]
    # Without the batch: one write per message (50). The first message resolves the waiting
    # recv() and the rest are queued, so the handler answers them all in one task step.
    assert len(sizes) <= 3, sizes


async def test_a_close_after_a_burst_follows_its_frames(raw_peer: Any) -> None:
    _, echoed, closing = await echo_burst(raw_peer, then_close=True)
    assert echoed == [str(i).encode() for i in range(COUNT)]
    assert closing == (4000).to_bytes(2, "big") + b"done"


async def test_a_lone_answer_is_written_at_once() -> None:
    """Sequential round trips: nothing is waiting in the queue, so no batch and no delay."""
    writes: list[list[int]] = []

    async def handler(ws: wsfast.WebSocket, request: Any) -> None:
        writes.append(count_writes(ws))
        async for message in ws:
            before = len(writes[0])
            await ws.send(message)
            assert len(writes[0]) == before + 1  # written before send() returned

    async with wsfast.serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
        host, port = server.address()
        async with wsfast.connect(f"ws://{host}:{port}", ping_interval=None) as ws:
            for i in range(20):
                await ws.send(str(i))
                assert await wait_for(ws.recv()) == str(i)
    assert len(writes[0]) >= 20


async def test_buffered_amount_counts_the_batch_and_a_large_batch_is_written_at_once() -> None:
    """Answers bigger than the batch limit go out when they reach it (backpressure holds)."""
    seen: list[tuple[int, int]] = []
    done = asyncio.Event()

    async def handler(ws: wsfast.WebSocket, request: Any) -> None:
        sizes = count_writes(ws)
        first = await ws.recv()
        while len(ws._queue or ()) < 2:  # the test's burst is queued behind the first message
            await asyncio.sleep(0.01)
        ws.send(first)
        seen.append((ws.buffered_amount, len(sizes)))  # batched: counted, not yet written
        ws.send(b"y" * 70000)  # past the batch limit: written now
        seen.append((ws.buffered_amount, len(sizes)))
        done.set()
        async for message in ws:
            await ws.send(message)

    async with wsfast.serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
        host, port = server.address()
        async with wsfast.connect(f"ws://{host}:{port}", ping_interval=None) as ws:
            for i in range(3):
                await ws.send(str(i))
            await wait_for(done.wait())
            received = [await wait_for(ws.recv()) for _ in range(4)]
    assert received == ["0", b"y" * 70000, "1", "2"]
    (amount1, writes1), (amount2, writes2) = seen
    assert amount1 == 3 and writes1 == 0  # a 1-byte text frame: 2-byte header + payload
    assert writes2 >= 1


@pytest.mark.parametrize("api", ["asyncio", "events"])
async def test_a_burst_past_the_batch_limit_is_written_in_groups(raw_peer: Any, api: str) -> None:
    """80 answers of 1 KiB (82 KB, past the 64 KiB batch limit) go out joined in groups of up
    to the limit, for the asyncio API and for a 'message' listener. The server reads the
    burst in one read (it is paused until the burst is in its socket); past the limit, the
    batch was written one frame per write() (80 writes)."""
    count = 80
    writes: list[list[int]] = []
    paused = asyncio.Event()
    go = asyncio.Event()

    async def handler(ws: wsfast.WebSocket, request: Any) -> None:
        writes.append(count_writes(ws))
        if api == "events":
            ws.on("message", lambda data, is_binary: ws.send(data, binary=is_binary))
        ws.pause()
        paused.set()
        await go.wait()
        ws.resume()
        if api == "events":
            await ws.wait_closed()
            return
        async for message in ws:
            await ws.send(message)

    async with wsfast.serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
        peer = await raw_websocket(raw_peer, server)
        await wait_for(paused.wait())
        payloads = [bytes([i]) * 1024 for i in range(count)]
        peer.write(b"".join(client_frame(p, 0x2) for p in payloads))
        await asyncio.sleep(0.2)  # the whole burst reaches the server's socket
        go.set()
        echoed = []
        for _ in range(count):
            b0, opcode, payload = await peer.read_frame()
            echoed.append(payload)
        peer.close()
    assert echoed == payloads, api
    sizes = writes[0]
    assert sum(sizes) == count * 1028, api
    assert len(sizes) <= 4 and max(sizes) <= 65536, (api, sizes)

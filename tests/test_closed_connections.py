"""A closed connection should be freed by reference counting, not by the next full collection.

Found by the soak test (benchmarks/soak.py): every closed WebSocket, on either side, sits in
reference cycles until a generation-2 collection, together with its transport, its protocol and
whatever its ``recv()`` queue still held (50 connections reset with messages queued held
3.8 MiB until ``gc.collect()``). The cycles: ``WebSocket._proto`` -> ``Protocol.on_error`` (and
``write``, ``on_message``, ...: bound methods) -> the WebSocket; on the server, the ``'close'``
listeners ``_complete`` adds (closures over ``ws``); with ``async for``, the ``ConnectionClosed``
that ``__anext__`` turns into ``StopAsyncIteration`` (its traceback holds the frames of
``recv()`` and ``__anext__``, which hold the WebSocket). Broken since: ``Protocol.detach()``
drops the callbacks once the connection is done, ``once`` registrations are objects (not
self-naming closures) holding their emitter weakly, and ``recv()`` deletes its waiter.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import until, wait_for

import wsfast


@pytest.fixture
def no_cycle_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("end", ["close", "terminate"])
# 1 MiB: read in place on both sides (read_in_place.PayloadReader, one more holder of the methods).
@pytest.mark.parametrize("size", [1, 1 << 20], ids=["1B", "1MiB"])
async def test_a_closed_connection_is_freed_at_once(
    no_cycle_collector: None, end: str, size: int
) -> None:
    server_side: list[weakref.ref[wsfast.WebSocket]] = []

    async def handler(ws: wsfast.WebSocket, request: Any) -> None:
        server_side.append(weakref.ref(ws))
        async for message in ws:
            await ws.send(message)

    async with wsfast.serve(handler, "127.0.0.1", 0) as server:
        host, port = server.address()
        ws = await wait_for(wsfast.connect(f"ws://{host}:{port}", per_message_deflate=False))
        await ws.send("x" * size)
        assert await wait_for(ws.recv()) == "x" * size
        if end == "close":
            await wait_for(ws.close())
        else:
            ws.terminate()
            await wait_for(ws.wait_closed())
        client_side = weakref.ref(ws)
        del ws
        await until(lambda: server.stats.connections == 0)
        await until(lambda: server_side[0]() is None and client_side() is None, seconds=1.0)


@pytest.mark.parametrize("end", ["close", "terminate"])
@pytest.mark.parametrize("deflate", [False, True])
async def test_a_closed_event_api_connection_is_freed_at_once(
    no_cycle_collector: None, make_server: Any, end: str, deflate: bool
) -> None:
    """The event API: ``'connection'``/``'message'``/``'close'`` listeners on both sides,
    client tracking on, permessage-deflate negotiated or not."""
    server = await make_server(per_message_deflate=deflate)
    server_side: list[weakref.ref[wsfast.WebSocket]] = []
    closed: list[int] = []

    def on_connection(ws: wsfast.WebSocket, request: Any) -> None:
        server_side.append(weakref.ref(ws))
        ws.on("message", lambda data, is_binary: ws.send(data, binary=is_binary))
        ws.once("close", lambda code, reason: closed.append(code))

    server.on("connection", on_connection)
    host, port = server.address()
    ws = wsfast.WebSocket(f"ws://{host}:{port}", per_message_deflate=deflate)
    echoed: list[Any] = []
    ws.on("message", lambda data, is_binary: echoed.append(data))
    await wait_for(ws.wait_open())
    ws.send("x" * 300)
    await until(lambda: len(echoed) == 1)
    if end == "close":
        ws.close()
    else:
        ws.terminate()
    await wait_for(ws.wait_closed())
    client_side = weakref.ref(ws)
    del ws
    await until(lambda: len(closed) == 1 and not server.clients)
    await until(lambda: server_side[0]() is None and client_side() is None, seconds=1.0)

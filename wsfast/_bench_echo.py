"""A short end-to-end echo comparison over loopback, for ``python -m wsfast bench``.

Everything runs in one process and one event loop, so client and server share a CPU (on a
small virtual machine a wake-up across CPUs would measure the hypervisor, not the library).
The wsfast client drives every server, so only the server differs between rows. Peers
(``websockets``, ``aiohttp``, ``picows``) are measured when importable and skipped otherwise.
The full benchmarks, with each server in its own pinned process, are in ``benchmarks/``.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .websocket import connect
from .websocket_server import WebSocketServer

__all__ = ["CASES", "SERVERS", "run", "measure"]

# Peers are imported by name (importlib): they are optional, and mypy need not know them.

HOST = "127.0.0.1"
MAX_SIZE = 16 * 1024 * 1024
# (label, payload size, messages in flight)
CASES: tuple[tuple[str, int, int], ...] = (
    ("32 B round trips/s", 32, 1),
    ("32 B pipelined/s", 32, 100),
    ("64 KiB msg/s", 64 * 1024, 1),
)

Starter = Callable[[], Awaitable[tuple[int, Callable[[], Awaitable[None]]]]]


async def _wsfast() -> tuple[int, Callable[[], Awaitable[None]]]:
    server = WebSocketServer(port=0, host=HOST, max_payload=MAX_SIZE)

    def connection(ws: Any, request: Any) -> None:
        ws.on("message", lambda data, is_binary: ws.send(data, binary=is_binary))

    server.on("connection", connection)
    await server.wait_listening()

    async def stop() -> None:
        for ws in list(server.clients):
            ws.terminate()
        await server.close()

    return server.address()[1], stop


async def _websockets() -> tuple[int, Callable[[], Awaitable[None]]]:
    serve = importlib.import_module("websockets.asyncio.server").serve

    async def handler(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    server = await serve(handler, HOST, 0, compression=None, max_size=MAX_SIZE, ping_interval=None)

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return server.sockets[0].getsockname()[1], stop


async def _aiohttp() -> tuple[int, Callable[[], Awaitable[None]]]:
    web = importlib.import_module("aiohttp.web")
    WSMsgType = web.WSMsgType

    async def handler(request: Any) -> Any:
        ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_SIZE)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return port, runner.cleanup


async def _picows() -> tuple[int, Callable[[], Awaitable[None]]]:
    picows = importlib.import_module("picows")
    WSCloseCode, WSMsgType = picows.WSCloseCode, picows.WSMsgType

    def on_ws_frame(self: Any, transport: Any, frame: Any) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
            return
        transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)

    echo = type("Echo", (picows.WSListener,), {"on_ws_frame": on_ws_frame})
    server = await picows.ws_create_server(lambda request: echo(), HOST, 0, max_frame_size=MAX_SIZE)

    async def stop() -> None:
        server.close()

    return server.sockets[0].getsockname()[1], stop


SERVERS: dict[str, tuple[str | None, Starter]] = {
    "wsfast": (None, _wsfast),
    "websockets": ("websockets", _websockets),
    "aiohttp": ("aiohttp", _aiohttp),
    "picows": ("picows", _picows),
}


async def measure(port: int, size: int, window: int, seconds: float) -> float:
    """Echoes per second of ``size``-byte binary messages, ``window`` in flight, for ``seconds``.

    The wsfast client keeps ``window`` messages in flight from its ``'message'`` listener.
    """
    ws = await connect(f"ws://{HOST}:{port}/", per_message_deflate=False, max_payload=MAX_SIZE)
    payload = os.urandom(size)
    loop = asyncio.get_running_loop()
    state = {"received": 0, "sent": 0, "stop": False}
    done: asyncio.Future[None] = loop.create_future()

    def on_message(data: Any, is_binary: bool) -> None:
        state["received"] += 1
        if not state["stop"]:
            state["sent"] += 1
            ws.send(payload)
        elif state["received"] == state["sent"] and not done.done():
            done.set_result(None)

    ws.on("message", on_message)
    start = time.perf_counter()
    for _ in range(window):
        state["sent"] += 1
        ws.send(payload)
    await asyncio.sleep(seconds)
    state["stop"] = True
    received = state["received"]
    elapsed = time.perf_counter() - start
    await asyncio.wait_for(done, 10)
    ws.remove_all_listeners("message")
    await asyncio.wait_for(ws.close(1000), 10)
    return received / elapsed


async def _run(seconds: float) -> list[tuple[str, list[float]]]:
    rows = []
    available = [
        name
        for name, (module, _) in SERVERS.items()
        if module is None or importlib.util.find_spec(module) is not None
    ]
    per_case = max(0.05, seconds / (len(available) * len(CASES)))
    for name in available:
        port, stop = await SERVERS[name][1]()
        try:
            await measure(port, 32, 1, 0.05)  # warm-up
            rows.append(
                (name, [await measure(port, size, window, per_case) for _, size, window in CASES])
            )
        finally:
            await stop()
    return rows


def run(seconds: float = 3.0) -> None:
    """Print echo rates of wsfast and of the importable peers, in about ``seconds`` in all."""
    from . import speedups

    rows = asyncio.run(_run(seconds))
    print(f"echo over {HOST}, one process and loop, wsfast client; speedups: {speedups()}")
    width = max(len(name) for name, _ in rows) + 2
    print("server".ljust(width) + "".join(label.rjust(22) for label, _, _ in CASES))
    reference = rows[0][1]
    for name, rates in rows:
        cells = []
        for i, rate in enumerate(rates):
            text = f"{rate:,.0f}"
            if name != "wsfast" and rate:
                text += f" (x{reference[i] / rate:.2f})"
            cells.append(text.rjust(22))
        print(name.ljust(width) + "".join(cells))
    if len(rows) > 1:
        print("(xN: wsfast's rate divided by the peer's; above 1 wsfast is ahead)")

"""Autobahn testee: a wsfast echo server for ``wstest -m fuzzingclient``.

    python tests/autobahn/testee_server.py --port 0 [--deflate | --no-deflate] [--api API]

Prints the bound port on stdout, then echoes every message (text as text, binary as binary)
until it is killed. The speedups are chosen by the environment as everywhere
(``WSFAST_NO_BUFFER_UTIL=1 WSFAST_NO_UTF_8_VALIDATE=1`` for the fallback path).
``--api`` picks the front end under test (DESIGN section 3): ``events`` (ws' event API, the
default), ``asyncio`` (``wsfast.serve`` with ``async for`` and ``await ws.send``), ``sync``
(``wsfast.sync.serve``: a thread per connection, ``for message in ws`` and ``ws.send``) or
``uvicorn`` (an ASGI echo app under uvicorn with ``--ws wsfast.uvicorn:WebSocketProtocol``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

import wsfast

# Autobahn 9.1.6/9.2.6 send 16 MiB messages; ws' default limit (100 MiB) covers them.
MAX_PAYLOAD = 100 * 1024 * 1024


async def main_asyncio(port: int, deflate: bool) -> None:
    async def echo(ws: wsfast.WebSocket, request: object) -> None:
        async for message in ws:
            await ws.send(message)

    async with wsfast.serve(
        echo, "127.0.0.1", port, per_message_deflate=deflate, max_payload=MAX_PAYLOAD
    ) as server:
        print(server.address()[1], flush=True)
        await server.serve_forever()


def main_sync(port: int, deflate: bool) -> None:
    from wsfast.sync import ServerConnection, serve

    def echo(ws: ServerConnection) -> None:
        for message in ws:
            ws.send(message)

    with serve(
        echo, "127.0.0.1", port, per_message_deflate=deflate, max_payload=MAX_PAYLOAD
    ) as server:
        print(server.address()[1], flush=True)
        server.serve_forever()


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI echo application: text as text, binary as binary."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            return
        if event.get("text") is not None:
            await send({"type": "websocket.send", "text": event["text"]})
        else:
            await send({"type": "websocket.send", "bytes": event["bytes"]})


async def main_uvicorn(port: int, deflate: bool) -> None:
    import uvicorn

    config = uvicorn.Config(
        echo_app,
        host="127.0.0.1",
        port=port,
        ws="wsfast.uvicorn:WebSocketProtocol",
        ws_max_size=MAX_PAYLOAD,
        ws_per_message_deflate=deflate,
        ws_ping_interval=None,
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    print(server.servers[0].sockets[0].getsockname()[1], flush=True)
    await task


async def main(port: int, deflate: bool) -> None:
    loop = asyncio.get_running_loop()
    listening: asyncio.Future[None] = loop.create_future()
    wss = wsfast.WebSocketServer(
        port=port, host="127.0.0.1", per_message_deflate=deflate, max_payload=MAX_PAYLOAD
    )

    @wss.on("connection")
    def connection(ws: wsfast.WebSocket, request: object) -> None:
        ws.on("message", lambda data, is_binary: ws.send(data, binary=is_binary))
        # Protocol errors are what Autobahn provokes; the close that follows is the verdict.
        ws.on("error", lambda exc: None)

    wss.on("listening", lambda: listening.done() or listening.set_result(None))
    wss.on("error", lambda exc: listening.done() or listening.set_exception(exc))
    # 'listening' may already have fired if the server bound before the listener was added.
    while not listening.done():
        try:
            if wss.address()[1]:
                break
        except Exception:  # not bound yet
            pass
        await asyncio.wait([listening], timeout=0.02)
    if listening.done():
        listening.result()
    print(wss.address()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--deflate", dest="deflate", action="store_true", default=True)
    parser.add_argument("--no-deflate", dest="deflate", action="store_false")
    parser.add_argument("--api", choices=("events", "asyncio", "sync", "uvicorn"), default="events")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    try:
        if args.api == "sync":
            main_sync(args.port, args.deflate)
        else:
            mains = {"events": main, "asyncio": main_asyncio, "uvicorn": main_uvicorn}
            asyncio.run(mains[args.api](args.port, args.deflate))
    except KeyboardInterrupt:
        pass

"""STAND-IN testee built on the ``websockets`` library, NOT on wsfast.

It exists only to prove the Autobahn harness (``harness.py``) end to end while wsfast's core is
not there, and to give a reference run to compare with. It has the command line of the wsfast
testees plus a role argument:

    python tests/autobahn/testee_websockets_standin.py server --port 0
    python tests/autobahn/testee_websockets_standin.py client --url ws://127.0.0.1:9001

Selected by ``WSFAST_AUTOBAHN_TESTEE=websockets`` (or ``harness.py --testee websockets``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import WebSocketException

MAX_SIZE = 100 * 1024 * 1024


async def echo(ws) -> None:  # type: ignore[no-untyped-def]
    try:
        async for message in ws:
            await ws.send(message)
    except WebSocketException:
        pass


async def server(port: int, deflate: bool) -> None:
    compression = "deflate" if deflate else None
    async with serve(echo, "127.0.0.1", port, max_size=MAX_SIZE, compression=compression) as srv:
        print(srv.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()


async def client(base: str, agent: str, deflate: bool) -> None:
    compression = "deflate" if deflate else None
    async with connect(f"{base}/getCaseCount") as ws:
        count = int(await ws.recv())
    print(f"{count} cases", flush=True)
    for case in range(1, count + 1):
        try:
            async with connect(
                f"{base}/runCase?case={case}&agent={agent}",
                max_size=MAX_SIZE,
                compression=compression,
            ) as ws:
                await asyncio.wait_for(echo(ws), 120)
        except (WebSocketException, OSError, asyncio.TimeoutError) as exc:
            print(f"case {case}: {exc!r}", file=sys.stderr, flush=True)
    async with connect(f"{base}/updateReports?agent={agent}") as ws:
        try:
            await ws.recv()
        except WebSocketException:
            pass
    print("reports updated", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["server", "client"])
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--url", default="ws://127.0.0.1:9001")
    parser.add_argument("--agent", default="websockets")
    parser.add_argument("--deflate", dest="deflate", action="store_true", default=True)
    parser.add_argument("--no-deflate", dest="deflate", action="store_false")
    args = parser.parse_args()
    try:
        if args.role == "server":
            asyncio.run(server(args.port, args.deflate))
        else:
            asyncio.run(client(args.url.rstrip("/"), args.agent, args.deflate))
    except KeyboardInterrupt:
        pass

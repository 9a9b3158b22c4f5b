"""Autobahn testee: a wsfast echo client for ``wstest -m fuzzingserver``.

    python tests/autobahn/testee_client.py --url ws://127.0.0.1:9001 --agent wsfast [--no-deflate]
        [--api events|asyncio]

Asks the fuzzing server for the number of selected cases (``/getCaseCount``), runs each one
(``/runCase?case=N&agent=A``), echoing every message, then has the reports written
(``/updateReports?agent=A``). The speedups are chosen by the environment as everywhere.
``--api`` picks the front end under test: ``events`` (ws' event API, like ws' own
``test/autobahn.js``; the default), ``asyncio`` (``wsfast.connect`` with ``async for`` and
``await ws.send``) or ``sync`` (``wsfast.sync.connect``, ``for message in ws``, ``ws.send``,
run in a thread of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import wsfast

MAX_PAYLOAD = 100 * 1024 * 1024
CASE_TIMEOUT = 120.0  # seconds; the slowest case (9.1.6, 16 MiB) takes a few seconds


async def run_events(url: str, deflate: bool, echo: bool) -> list[str | bytes]:
    """Opens one connection, echoes (or collects) its messages, returns once it has closed."""
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()
    received: list[str | bytes] = []
    ws = wsfast.WebSocket(url, per_message_deflate=deflate, max_payload=MAX_PAYLOAD)

    @ws.on("message")
    def message(data: str | bytes, is_binary: bool) -> None:
        if echo:
            ws.send(data, binary=is_binary)
        else:
            received.append(data)

    ws.on("error", lambda exc: None)  # the 'close' that always follows ends the case
    ws.on("close", lambda code, reason: closed.done() or closed.set_result(None))
    try:
        await asyncio.wait_for(asyncio.shield(closed), CASE_TIMEOUT)
    except asyncio.TimeoutError:
        print(f"timeout: {url}", file=sys.stderr, flush=True)
        ws.terminate()
    return received


async def run_asyncio(url: str, deflate: bool, echo: bool) -> list[str | bytes]:
    """As :func:`run_events`, through the asyncio API."""
    received: list[str | bytes] = []

    async def session() -> None:
        try:
            async with wsfast.connect(
                url, per_message_deflate=deflate, max_payload=MAX_PAYLOAD
            ) as ws:
                async for message in ws:
                    if echo:
                        await ws.send(message)
                    else:
                        received.append(message)
        except (wsfast.ConnectionClosed, OSError):
            pass  # the case's verdict is in the report, not here

    try:
        await asyncio.wait_for(session(), CASE_TIMEOUT)
    except asyncio.TimeoutError:
        print(f"timeout: {url}", file=sys.stderr, flush=True)
    return received


def run_sync_blocking(url: str, deflate: bool, echo: bool) -> list[str | bytes]:
    """As :func:`run_events`, through the blocking API (wsfast.sync)."""
    from wsfast.sync import connect

    received: list[str | bytes] = []
    try:
        with connect(url, per_message_deflate=deflate, max_payload=MAX_PAYLOAD) as ws:
            for message in ws:
                if echo:
                    ws.send(message)
                else:
                    received.append(message)
    except (wsfast.ConnectionClosed, OSError):
        pass  # the case's verdict is in the report, not here
    return received


async def run_sync(url: str, deflate: bool, echo: bool) -> list[str | bytes]:
    """:func:`run_sync_blocking` in a thread, bounded as the others (no event loop is used by
    the connection itself)."""
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(run_sync_blocking, url, deflate, echo), CASE_TIMEOUT
        )
    except asyncio.TimeoutError:
        print(f"timeout: {url}", file=sys.stderr, flush=True)
        return []


RUNNERS = {"events": run_events, "asyncio": run_asyncio, "sync": run_sync}


async def main(base: str, agent: str, deflate: bool, api: str = "events") -> None:
    run = RUNNERS[api]
    count_messages = await run(f"{base}/getCaseCount", deflate, echo=False)
    count = int(count_messages[0])
    print(f"{count} cases", flush=True)
    for case in range(1, count + 1):
        await run(f"{base}/runCase?case={case}&agent={agent}", deflate, echo=True)
    await run(f"{base}/updateReports?agent={agent}", deflate, echo=False)
    print("reports updated", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:9001")
    parser.add_argument("--agent", default="wsfast")
    parser.add_argument("--deflate", dest="deflate", action="store_true", default=True)
    parser.add_argument("--no-deflate", dest="deflate", action="store_false")
    parser.add_argument("--api", choices=sorted(RUNNERS), default="events")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args.url.rstrip("/"), args.agent, args.deflate, args.api))

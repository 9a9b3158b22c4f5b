"""``wsfast serve --workers N --backplane URL`` (issue 12, section 3): N processes on one port,
a broadcast from a client on any worker reaching the clients of every worker through a real
redis-server, and a graceful stop of all workers on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from redis_server import RedisServer, redis_binary

import wsfast

pytest.importorskip("redis")
ROOT = Path(__file__).resolve().parent.parent


async def numsub(url: str, channel: str) -> int:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        return int((await client.pubsub_numsub(channel))[0][1])
    finally:
        await client.aclose()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_serve_workers_broadcast_through_redis(sig: int) -> None:
    redis = RedisServer(redis_binary())
    redis.start()
    proc = await serve("--port", "0", "--workers", "2", "--broadcast", "--backplane", redis.url)
    clients: list[wsfast.WebSocket] = []
    try:
        assert proc.stdout is not None
        line = (await wait_for(proc.stdout.readline(), 20)).decode()
        match = re.match(r"listening on (ws://\S+:\d+) \(broadcast, 2 workers, backplane", line)
        assert match, line
        url = match.group(1)
        # Connect until both workers subscribed the topic in Redis (the kernel picks the
        # worker of each connection).
        while await numsub(redis.url, "wsfast:wsfast:broadcast") < 2:
            assert len(clients) < 40, "every connection went to one worker"
            clients.append(await wait_for(wsfast.connect(url)))
            await asyncio.sleep(0.05)
        await clients[0].send("from one")
        await clients[-1].send(b"\x01from another")
        for ws in clients:
            got = {await wait_for(ws.recv()), await wait_for(ws.recv())}
            assert got == {"from one", b"\x01from another"}
        proc.send_signal(sig)
        assert await wait_for(proc.wait(), 20) == 0
        for ws in clients:
            await wait_for(ws.wait_closed())
            assert ws.close_code == 1001
        assert proc.stderr is not None
        assert b"exited with" not in await proc.stderr.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for ws in clients:
            ws.terminate()
        redis.close()


async def serve(*args: str) -> Any:
    """``python -m wsfast serve ARGS`` with piped output."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wsfast",
        "serve",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1"),
    )


async def test_workers_need_at_least_one() -> None:
    proc = await serve("--workers", "0")
    assert await wait_for(proc.wait(), 20) == 2


async def test_a_killed_parent_takes_its_workers_along() -> None:
    proc = await serve("--port", "0", "--workers", "2")
    assert proc.stdout is not None
    line = (await wait_for(proc.stdout.readline(), 20)).decode()
    url = line.split()[2]
    async with wsfast.connect(url) as ws:
        await ws.send("echo")
        assert await wait_for(ws.recv()) == "echo"
        proc.kill()  # SIGKILL: no chance to stop the workers itself
        await proc.wait()
        await wait_for(ws.wait_closed(), 10)
    with pytest.raises(OSError):
        await wsfast.connect(url, handshake_timeout=2)

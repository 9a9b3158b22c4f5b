"""Instructions per echoed message on the server's hot path, counted by callgrind.

Timings on this 2-vCPU guest move by 20-30% with whatever else runs; instruction counts do not
(valgrind counts the same total twice). This drives a server-side connection of the event API
with a counting fake transport: masked 32 B frames in through ``data_received`` (1 per read, and
100 per read as a pipelining client sends them), each echoed by a ``'message'`` listener. The
count of a run with no message is subtracted, so start-up is not charged.

With ``--api asyncio`` the echo is the asyncio API's (a task doing ``async for message in ws:
await ws.send(message)``), and with ``--api both`` both APIs are counted. Every read is then
followed by one turn of the event loop (``asyncio.sleep(0)``), in both APIs, so the two
columns carry the same loop cost and their difference is what the asyncio API adds.

    python benchmarks/bench_hotpath.py                         # this checkout
    python benchmarks/bench_hotpath.py /path/to/other/checkout # and another, side by side
    python benchmarks/bench_hotpath.py --api both              # event API against asyncio API
    python benchmarks/bench_hotpath.py --size 1024             # 1 KiB messages instead of 32 B

It complements ``bench_echo.py`` (which measures time through real sockets); it needs
``valgrind`` (Debian package).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

__all__ = ["main", "count", "drive"]

CASES = ((1, 3000), (100, 60))  # (messages per read, reads)


class _Transport(asyncio.Transport):
    """Takes writes and counts them; never pushes back."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.written = 0
        self.protocol: Any = None

    def write(self, data: Any) -> None:
        self.writes += 1
        self.written += len(data)

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return True


def drive(per_read: int, reads: int, api: str = "plain", size: int = 32) -> None:
    """Echo ``per_read * reads`` messages through one server-side connection.

    ``api`` is ``"plain"`` (event API, no loop turn), ``"events"`` (event API, a loop turn per
    read) or ``"asyncio"`` (the asyncio API, a loop turn per read).
    """
    import wsfast
    from wsfast import websocket
    from wsfast.sender import frame

    async def run() -> None:
        transport = _Transport()
        accept = getattr(websocket, "accept", None)
        if accept is not None:
            ws = accept(transport, "", {}, None, wsfast.ConnectionOptions())
        else:  # checkouts before the sans-I/O protocol (issue 8)
            ws = wsfast.WebSocket(None)
            ws._setup(transport, b"", "", {}, None)  # type: ignore[attr-defined]
        task = None
        if api == "asyncio":

            async def echo() -> None:
                async for message in ws:
                    await ws.send(message)

            task = asyncio.get_running_loop().create_task(echo())
            await asyncio.sleep(0)
        else:
            ws.on("message", lambda data, is_binary: ws.send(data, binary=is_binary))
        chunk = frame(b"x" * size, 2, mask=b"\x01\x02\x03\x04") * per_read
        turn = api != "plain"
        ws.data_received(chunk)  # warm-up: first-use caches
        if turn:
            await asyncio.sleep(0)
        for _ in range(reads):
            ws.data_received(chunk)
            if turn:
                await asyncio.sleep(0)
        for _ in range(3):
            await asyncio.sleep(0)  # batched answers go out at the next loop turn
        framed = size + (2 if size < 126 else 4)
        assert transport.written == (reads + 1) * per_read * framed, transport.written
        if task is not None:
            task.cancel()

    asyncio.run(run())


def count(checkout: str, per_read: int, reads: int, api: str = "plain", size: int = 32) -> int:
    """Instructions callgrind counts for one ``drive`` in a fresh process on ``checkout``."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout))
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        os.path.abspath(__file__),
        "--drive",
        str(per_read),
        str(reads),
        api,
        str(size),
    ]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stderr
    for line in out.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1])
    raise RuntimeError(f"no callgrind total in:\n{out}")


def main(argv: list[str]) -> None:
    if argv[:1] == ["--drive"]:
        drive(int(argv[1]), int(argv[2]), argv[3], int(argv[4]))
        return
    apis = ["plain"]
    size = 32
    while argv[:1] in (["--api"], ["--size"]):
        if argv[0] == "--api":
            choice = {"events": ["events"], "asyncio": ["asyncio"], "both": ["events", "asyncio"]}
            apis = choice[argv[1]]
        else:
            size = int(argv[1])
        argv = argv[2:]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkouts = [here, *argv]
    print(f"{size} B messages")
    print("| checkout | API | 1 msg per read (instr/msg) | 100 msgs per read (instr/msg) |")
    print("| --- | --- | --- | --- |")
    for checkout in checkouts:
        for api in apis:
            cells = []
            for per_read, reads in CASES:
                base = count(checkout, per_read, 0, api, size)
                total = count(checkout, per_read, reads, api, size)
                cells.append(f"{(total - base) / (per_read * reads):,.0f}")
            label = "events (no loop turn)" if api == "plain" else api
            print(f"| {checkout} | {label} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

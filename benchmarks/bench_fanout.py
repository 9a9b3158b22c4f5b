"""Fan-out in one process: ``publish`` against a plain ``for ws in clients: ws.send(data)`` loop.

    python benchmarks/bench_fanout.py --table            # 1,000 and 10,000 subscribers
    python benchmarks/bench_fanout.py --subscribers 1000 --size 32 --messages 200

The server runs in this process with every connection subscribed to one topic; the subscribers
are wsfast clients spread over a few client processes (``--processes``), each holding many
connections and counting what arrives. One run sends ``--messages`` messages to every
subscriber (binary, deflate off), yielding to the event loop between messages so the kernel
buffers drain, and ends when every client process has counted every message. Two figures per
run:

- deliveries/s end to end: subscribers x messages / (first send -> last message counted);
  on a 2-core machine the client processes share the cores with the server, so this is a
  figure of the whole machine;
- send-side deliveries/s: the same deliveries over the time spent inside ``publish()`` or the
  loop alone (framing and handing bytes to the transports), which is what the two ways differ
  in.

The soft ``RLIMIT_NOFILE`` is raised to the hard limit (10,000 subscribers need 10,000 fds in
this process and in the client processes together).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import wsfast  # noqa: E402


def _raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _client_process(url: str, count: int, expected: int, conn: Any) -> None:
    _raise_fd_limit()
    asyncio.run(_clients(url, count, expected, conn))


async def _clients(url: str, count: int, expected: int, conn: Any) -> None:
    received = 0
    done = asyncio.get_running_loop().create_future()

    def on_message(data: Any, is_binary: bool) -> None:
        nonlocal received
        received += 1
        if received == expected and not done.done():
            done.set_result(None)

    sockets: list[wsfast.WebSocket] = []
    for start in range(0, count, 200):
        batch = [
            wsfast.WebSocket(url, per_message_deflate=False)
            for _ in range(min(200, count - start))
        ]
        await asyncio.gather(*(ws.wait_open() for ws in batch))
        for ws in batch:
            ws.on("message", on_message)
        sockets.extend(batch)
    conn.send("ready")
    while True:
        command = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        if command == "stop":
            break
        # A new round: ``command`` is the number of messages each connection will get.
        received = 0
        expected = command * count
        done = asyncio.get_running_loop().create_future()
        conn.send("armed")
        await done
        conn.send(received)
    for ws in sockets:
        ws.terminate()


async def _run(
    subscribers: int, sizes: list[int], messages: int, processes: int, burst: int = 1
) -> list[Any]:
    server = wsfast.WebSocketServer(port=0, host="127.0.0.1", max_connections=None)
    await server.wait_listening()
    server.on("connection", lambda ws, request: server.subscribe(ws, "bench"))
    url = f"ws://127.0.0.1:{server.address()[1]}"
    context = multiprocessing.get_context("spawn")
    pipes = []
    procs = []
    share = [subscribers // processes + (i < subscribers % processes) for i in range(processes)]
    for count in share:
        parent, child = context.Pipe()
        proc = context.Process(target=_client_process, args=(url, count, 0, child))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    loop = asyncio.get_running_loop()
    for pipe in pipes:
        assert await loop.run_in_executor(None, pipe.recv) == "ready"
    while len(server.clients) < subscribers:
        await asyncio.sleep(0.01)
    rows = []
    for size in sizes:
        data = os.urandom(size)
        for mode in ("loop", "publish"):
            for pipe in pipes:
                pipe.send(messages)
            for pipe in pipes:
                assert await loop.run_in_executor(None, pipe.recv) == "armed"
            clients = list(server.clients)
            sending = 0.0
            started = time.perf_counter()
            for i in range(messages):
                t0 = time.perf_counter()
                if mode == "publish":
                    server.publish("bench", data)
                else:
                    for ws in clients:
                        ws.send(data)
                sending += time.perf_counter() - t0
                if (i + 1) % burst == 0:
                    t0 = time.perf_counter()
                    await asyncio.sleep(0)  # the loop turn: publish()'s batches are written
                    sending += time.perf_counter() - t0
            for pipe in pipes:
                await loop.run_in_executor(None, pipe.recv)
            elapsed = time.perf_counter() - started
            deliveries = subscribers * messages
            rows.append((subscribers, size, mode, deliveries / elapsed, deliveries / sending))
            print(
                f"{subscribers:>6} subs {size:>5} B {mode:>7}: "
                f"{deliveries / elapsed:>12,.0f} deliveries/s end to end, "
                f"{deliveries / sending:>12,.0f} deliveries/s send side",
                file=sys.stderr,
                flush=True,
            )
    stats = server.fanout_stats
    assert stats.dropped == 0, stats
    for pipe in pipes:
        pipe.send("stop")
    for proc in procs:
        proc.join(30)
    await server.close()
    return rows


class _NullTransport(asyncio.Transport):
    """A transport that drops what is written: the Python-side cost of a delivery alone."""

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def set_protocol(self, protocol: Any) -> None:
        pass

    def is_reading(self) -> bool:
        return True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _python_side(subscribers: int, sizes: list[int], messages: int) -> list[Any]:
    """publish() and the loop over connections whose transports drop the bytes: what framing
    and writing cost in Python, without the kernel's loopback."""
    from wsfast.options import ConnectionOptions
    from wsfast.websocket import accept

    server = wsfast.WebSocketServer(no_server=True)
    options = ConnectionOptions()
    clients = [accept(_NullTransport(), "", {}, None, options) for _ in range(subscribers)]
    for ws in clients:
        server.subscribe(ws, "bench")
    rows = []
    for size in sizes:
        data = os.urandom(size)
        for mode in ("loop", "publish"):
            started = time.perf_counter()
            for _ in range(messages):
                if mode == "publish":
                    server.publish("bench", data)
                else:
                    for ws in clients:
                        ws.send(data)
                await asyncio.sleep(0)  # publish() writes its batches at the loop turn
            elapsed = time.perf_counter() - started
            rows.append((subscribers, size, mode, subscribers * messages / elapsed))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", action="store_true", help="1,000 and 10,000 subscribers")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--size", type=int, action="append", help="message size (repeatable)")
    parser.add_argument("--messages", type=int, default=0, help="messages per run")
    parser.add_argument("--processes", type=int, default=3, help="client processes")
    parser.add_argument(
        "--burst", type=int, default=1, help="messages sent per event-loop turn (default 1)"
    )
    parser.add_argument(
        "--python-only", action="store_true", help="only the run without sockets"
    )
    args = parser.parse_args()
    hard = _raise_fd_limit()
    sizes = args.size or [32, 4096]
    runs = [(1000, 200), (10000, 30)] if args.table else [(args.subscribers, 100)]
    if args.python_only:
        rows = []
        for subscribers, messages in runs:
            rows += asyncio.run(_python_side(subscribers, sizes, args.messages or messages))
        for subscribers, size, mode, rate in rows:
            print(f"{subscribers:>6} subs {size:>5} B {mode:>7}: {rate:>12,.0f} deliveries/s")
        return
    print(
        f"RLIMIT_NOFILE {hard}; {os.cpu_count()} CPUs; speedups {wsfast.speedups()}; "
        f"{args.burst} message(s) per loop turn"
    )
    rows = []
    for subscribers, messages in runs:
        rows += asyncio.run(
            _run(subscribers, sizes, args.messages or messages, args.processes, args.burst)
        )
    python_rows = []
    for subscribers, messages in runs:
        python_rows += asyncio.run(_python_side(subscribers, sizes, args.messages or messages))
    print()
    print("Python side only (transports that drop the bytes):")
    print("| subscribers | size | loop: deliveries/s | publish: deliveries/s | ratio |")
    print("| --- | --- | --- | --- | --- |")
    python_by_key = {(s, z, m): d for s, z, m, d in python_rows}
    for subscribers, size in dict.fromkeys((s, z) for s, z, _, _ in python_rows):
        lp = python_by_key[subscribers, size, "loop"]
        pp = python_by_key[subscribers, size, "publish"]
        print(f"| {subscribers:,} | {size} B | {lp:,.0f} | {pp:,.0f} | {pp / lp:.2f}x |")
    print()
    print("Over loopback sockets, clients in other processes:")
    print("| subscribers | size | loop: deliveries/s | publish: deliveries/s | ratio "
          "| loop: send side | publish: send side | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    by_key = {(s, z, m): (e, w) for s, z, m, e, w in rows}
    for subscribers, size in dict.fromkeys((s, z) for s, z, _, _, _ in rows):
        le, lw = by_key[subscribers, size, "loop"]
        pe, pw = by_key[subscribers, size, "publish"]
        print(
            f"| {subscribers:,} | {size} B | {le:,.0f} | {pe:,.0f} | {pe / le:.2f}x "
            f"| {lw:,.0f} | {pw:,.0f} | {pw / lw:.2f}x |"
        )


if __name__ == "__main__":
    main()

"""End-to-end echo over 127.0.0.1: wsfast against websockets, aiohttp and picows.

Servers: each server under test runs in its own process started with ``taskset -c 0`` and is
driven by one picows client pinned to the same CPU, so that only the server differs (DESIGN
section 6 explains the pinning). Clients: each client library drives one picows server.
Memory: 500 idle connections opened by hand to a fresh server process; RSS delta / 500.

    python -m pytest benchmarks/ --benchmark-only        # pytest-benchmark (see README.md)
    python benchmarks/bench_echo.py --table [--rounds 5] # plain table of medians
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers  # noqa: E402

__all__ = [
    "CASES",
    "measure_rate",
    "idle_memory",
    "format_table",
    "echo_table",
    "run_case",
    "idle_memory_benchmark",
    "main",
]

# (label, payload size, messages in flight, messages per batch). Each batch lasts 40-100 ms
# on this machine; the large cases had 200 and 20 messages (10-15 ms), short enough for one
# wake-up elsewhere on the VM, or the first message's page faults, to move a median by 10-30%.
CASES: tuple[tuple[str, int, int, int], ...] = (
    ("32 B round trips/s", 32, 1, 2000),
    ("32 B pipelined msg/s", 32, 100, 10000),
    ("1 KiB pipelined msg/s", 1024, 100, 10000),
    ("64 KiB msg/s", 64 * 1024, 1, 1000),
    ("1 MiB msg/s", 1024 * 1024, 1, 100),
)
IDLE_CONNECTIONS = 500
# No memory row: raw is no WebSocket server, and floor's one 256 KiB read buffer per connection
# says nothing of a real server.
NO_MEMORY_ROW = ("raw", "floor")


def case_id(case: tuple[str, int, int, int]) -> str:
    label, size, window, _ = case
    return f"{size}B-w{window}"


def payloads_for(size: int) -> list[bytes]:
    """A few distinct random payloads of ``size`` bytes (cycled, sent as binary)."""
    return [os.urandom(size) for _ in range(4)]


def measure_rate(
    loop: asyncio.AbstractEventLoop, client: Any, payloads: Sequence[Any], window: int, count: int
) -> float:
    """Messages per second over one batch of ``count`` echoes."""
    start = time.perf_counter()
    loop.run_until_complete(client.echo(payloads, count, window))
    return count / (time.perf_counter() - start)


def idle_memory(
    server: str,
    deflate: bool = False,
    count: int = IDLE_CONNECTIONS,
    use_uvloop: bool = True,
    used: bool = False,
) -> tuple[float, float, int]:
    """(KiB per idle connection, handshakes/s, connections that negotiated deflate).

    A fresh server process; 20 connections opened and closed first so that lazily imported
    code and first-use caches are not charged to the connections; then ``count`` idle ones.
    With ``used`` (and ``deflate``), each connection then echoes one compressed 4 KiB text
    message before the memory is read: permessage-deflate in use, both zlib contexts made.
    """
    with peers.ServerProcess(server, deflate=deflate, use_uvloop=use_uvloop) as proc:
        warm, _ = peers.open_idle(proc.port, 20, deflate)
        if used:
            peers.use_deflate(warm)
        for sock in warm:
            sock.close()
        time.sleep(0.5)
        before = proc.rss_kib()
        start = time.perf_counter()
        sockets, negotiated = peers.open_idle(proc.port, count, deflate)
        elapsed = time.perf_counter() - start
        if used:
            peers.use_deflate(sockets)
        time.sleep(0.5)
        after = proc.rss_kib()
        for sock in sockets:
            sock.close()
    return (after - before) / count, count / elapsed, negotiated


def format_table(
    title: str,
    columns: Sequence[str],
    rows: dict[str, list[float | None]],
    reference: str = "wsfast",
    fmt: Callable[[float], str] | None = None,
    higher_is_better: bool = True,
) -> str:
    """A Markdown table; each peer row also shows wsfast / peer (>1 = wsfast ahead)."""

    def cell(value: float | None) -> str:
        if value is None:
            return "n/a"
        if fmt is not None:
            return fmt(value)
        return f"{value / 1000:.1f}k" if value >= 10000 else f"{value:,.0f}"

    ref = rows.get(reference)
    lines = [
        f"### {title}",
        "",
        "| | " + " | ".join(columns) + " |",
        "| --- |" + " --- |" * len(columns),
    ]
    for name, values in rows.items():
        cells = []
        for i, value in enumerate(values):
            text = cell(value)
            if ref is not None and name != reference and value and ref[i]:
                ratio = ref[i] / value if higher_is_better else value / ref[i]
                text += f" (wsfast x{ratio:.2f})"
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def echo_table(
    targets: Sequence[tuple[str, str, str]],
    cases: Sequence[tuple[str, int, int, int]],
    rounds: int,
    deflate: bool = False,
    use_uvloop: bool = True,
    payload_maker: Callable[[int], list[Any]] = payloads_for,
) -> dict[str, list[float | None]]:
    """Median msg/s per (row, case); ``targets`` are (row name, server, client).

    All servers run at once and the rounds go round-robin over them, so a burst of load from
    elsewhere on the machine spreads over every row instead of sinking one.

    Each case has a connection of its own. On one shared connection a case inherits the traffic
    pattern of the one before: pipelined 32 B run after the round-trip case settled, for every
    server measured, at 75k-99k msg/s (each side writing one message per wake-up, client and
    server taking turns on the one CPU), against 170k-205k on a connection that starts
    pipelined (the same servers, the same run).
    """
    loop = peers.new_loop(use_uvloop)
    asyncio.set_event_loop(loop)
    payloads = {case: payload_maker(case[1]) for case in cases}
    procs: dict[str, peers.ServerProcess] = {}
    clients: dict[tuple[str, Any], Any] = {}
    samples: dict[str, dict[Any, list[float]]] = {}
    try:
        for row, server, client in targets:
            if server not in procs:
                procs[server] = peers.ServerProcess(server, deflate=deflate, use_uvloop=use_uvloop)
            samples[row] = {case: [] for case in cases}
            for case in cases:
                clients[row, case] = loop.run_until_complete(
                    peers.open_client(client, procs[server].url, deflate)
                )
                # Warm-up: connection buffers, zlib contexts, caches.
                measure_rate(
                    loop, clients[row, case], payloads[case], case[2], max(2, case[3] // 10)
                )
        for _ in range(rounds):
            for row, _server, _client in targets:
                for case in cases:
                    gc.collect()
                    rate = measure_rate(loop, clients[row, case], payloads[case], case[2], case[3])
                    samples[row][case].append(rate)
    finally:
        peers.close_all(loop, clients.values(), procs.values())
        loop.close()
    return {row: [statistics.median(samples[row][case]) for case in cases] for row in samples}


def server_targets(servers: Sequence[str], client: str = "picows") -> list[tuple[str, str, str]]:
    return [
        (s, s, peers.client_for(s, client))
        for s in servers
        if peers.available(s) and peers.available(peers.client_for(s, client))
    ]


def client_targets(clients: Sequence[str], server: str = "picows") -> list[tuple[str, str, str]]:
    return [(c, server, c) for c in clients if peers.available(c)]


def memory_table(servers: Sequence[str], rounds: int, use_uvloop: bool = True) -> str:
    rows: dict[str, list[float | None]] = {}
    for server in servers:
        if server in NO_MEMORY_ROW or not peers.available(server):
            continue
        plain, shakes, deflated, used = [], [], [], []
        for _ in range(rounds):
            kib, rate, _ = idle_memory(server, False, use_uvloop=use_uvloop)
            plain.append(kib)
            shakes.append(rate)
            if server in peers.DEFLATE_SERVERS:
                kib, _, negotiated = idle_memory(server, True, use_uvloop=use_uvloop)
                deflated.append(kib if negotiated == IDLE_CONNECTIONS else float("nan"))
                kib, _, negotiated = idle_memory(server, True, use_uvloop=use_uvloop, used=True)
                used.append(kib if negotiated == IDLE_CONNECTIONS else float("nan"))
        rows[server] = [
            statistics.median(plain),
            statistics.median(deflated) if deflated else None,
            statistics.median(used) if used else None,
            statistics.median(shakes),
        ]
    lines = [
        f"### Server memory per idle connection ({IDLE_CONNECTIONS} connections, RSS delta; "
        "medians) and sequential handshakes/s",
        "",
        "In use: after one compressed 4 KiB text message echoed on each connection.",
        "",
        "| server | KiB per idle conn | KiB, deflate negotiated | KiB, deflate in use | "
        "handshakes/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, (plain_kib, deflate_kib, used_kib, rate) in rows.items():
        d = "n/a" if deflate_kib is None else f"{deflate_kib:.1f}"
        u = "n/a" if used_kib is None else f"{used_kib:.1f}"
        lines.append(f"| {name} | {plain_kib:.1f} | {d} | {u} | {rate:,.0f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--table", action="store_true", help="print Markdown tables of medians")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--only", choices=("servers", "clients", "memory"), action="append")
    parser.add_argument(
        "--row",
        action="append",
        metavar="NAME",
        help="measure only these servers/clients (repeatable), e.g. --row wsfast --row picows; "
        "with PYTHONPATH pointing at another checkout this compares two trees of wsfast",
    )
    args = parser.parse_args(argv)
    if not args.table:
        parser.print_help()
        return
    peers.pin_to_cpu()
    use_uvloop = not args.no_uvloop
    parts = args.only or ["servers", "clients", "memory"]
    columns = [c[0] for c in CASES]
    servers = [s for s in peers.SERVERS if not args.row or s in args.row]
    clients = [c for c in peers.CLIENTS if not args.row or c in args.row]
    print(peers.describe(args.rounds, use_uvloop) + "\n", flush=True)
    if "servers" in parts:
        rows = echo_table(server_targets(servers), CASES, args.rounds, use_uvloop=use_uvloop)
        print(
            format_table(
                "Servers (picows client; raw = TCP echo, raw client; floor = floor_server.py)",
                columns,
                rows,
            ),
            end="\n\n",
            flush=True,
        )
    if "clients" in parts:
        rows = echo_table(client_targets(clients), CASES, args.rounds, use_uvloop=use_uvloop)
        print(
            format_table("Clients (against a picows server)", columns, rows, reference="wsfast"),
            end="\n\n",
            flush=True,
        )
    if "memory" in parts:
        print(
            memory_table(servers, max(1, min(args.rounds, 3)), use_uvloop),
            end="\n\n",
            flush=True,
        )


def run_case(
    benchmark: Any, loop: Any, client: Any, payloads: Sequence[Any], window: int, count: int
) -> None:
    """pytest-benchmark one batch of ``count`` echoes, after a warm-up batch."""
    loop.run_until_complete(client.echo(payloads, max(2, count // 10), window))
    benchmark.pedantic(
        lambda: loop.run_until_complete(client.echo(payloads, count, window)),
        rounds=5,
        iterations=1,
    )
    benchmark.extra_info["messages"] = count
    benchmark.extra_info["msg_per_s (median)"] = count / benchmark.stats.stats.median


def idle_memory_benchmark(benchmark: Any, server: str, deflate: bool) -> None:
    """KiB per idle connection in ``extra_info``; the time is 500 sequential handshakes."""
    result: dict[str, float] = {}

    def run() -> None:
        kib, rate, negotiated = idle_memory(server, deflate)
        assert negotiated == (IDLE_CONNECTIONS if deflate else 0), "deflate negotiation"
        result["kib_per_conn"] = kib
        result["handshakes_per_s"] = rate

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info.update(result)


# -- pytest-benchmark --------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # the table mode needs no pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.mark.parametrize("case", CASES, ids=case_id)
    @pytest.mark.parametrize("server", [s for s in peers.SERVERS if peers.available(s)])
    def test_server_echo(
        benchmark: Any,
        bench_loop: Any,
        echo_client: Any,
        server: str,
        case: tuple[str, int, int, int],
    ) -> None:
        """One server, driven by a picows client (raw TCP echo by the raw client)."""
        client = echo_client(server, peers.client_for(server), False, case)
        run_case(benchmark, bench_loop, client, payloads_for(case[1]), case[2], case[3])

    @pytest.mark.parametrize("case", CASES, ids=case_id)
    @pytest.mark.parametrize("client_name", [c for c in peers.CLIENTS if peers.available(c)])
    def test_client_echo(
        benchmark: Any,
        bench_loop: Any,
        echo_client: Any,
        client_name: str,
        case: tuple[str, int, int, int],
    ) -> None:
        """One client library against a picows server."""
        client = echo_client("picows", client_name, False, case)
        run_case(benchmark, bench_loop, client, payloads_for(case[1]), case[2], case[3])

    @pytest.mark.parametrize(
        "server", [s for s in peers.SERVERS if s not in NO_MEMORY_ROW and peers.available(s)]
    )
    def test_idle_memory(benchmark: Any, server: str) -> None:
        """KiB per idle connection in ``extra_info``; the time is 500 sequential handshakes."""
        idle_memory_benchmark(benchmark, server, False)


if __name__ == "__main__":
    main()

"""Compressed echo (permessage-deflate negotiated) over 127.0.0.1: wsfast, websockets, aiohttp.

Each server runs in its own process (``taskset -c 0``, as in ``bench_echo.py``) and is driven by
one aiohttp client offering ``permessage-deflate`` (picows has no compression), pinned to the same
CPU. Payloads: JSON-like text sent as text frames, and random bytes sent as binary; several
distinct payloads are cycled, since with context takeover a repeated message would compress to a
single back reference. 32 B and 1 KiB are pipelined (100 in flight); 64 KiB and 1 MiB are round
trips. Each server keeps its own defaults: wsfast's ``threshold`` of 1024 (as ws) leaves its
32 B replies uncompressed, while websockets and aiohttp compress every message.

    python -m pytest benchmarks/bench_echo_deflate.py --benchmark-only
    python benchmarks/bench_echo_deflate.py --table [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers  # noqa: E402
from bench_deflate_core import random_payload, text_payload  # noqa: E402
from bench_echo import echo_table, format_table, idle_memory_benchmark, run_case  # noqa: E402

__all__ = ["CASES", "KINDS", "make_payloads", "main"]

CLIENT = "aiohttp"
# (label, payload size, messages in flight, messages per batch)
CASES: tuple[tuple[str, int, int, int], ...] = (
    ("32 B msg/s", 32, 100, 5000),
    ("1 KiB msg/s", 1024, 100, 3000),
    ("64 KiB msg/s", 64 * 1024, 1, 100),
    ("1 MiB msg/s", 1024 * 1024, 1, 10),
)
KINDS = ("text", "random")
DISTINCT = 8


def make_payloads(kind: str, size: int) -> list[Any]:
    """``DISTINCT`` payloads: ``str`` for text (sent as text frames), ``bytes`` for random."""
    if kind == "text":
        return [text_payload(size, seed).decode() for seed in range(DISTINCT)]
    return [random_payload(size, seed) for seed in range(DISTINCT)]


def case_id(case: tuple[str, int, int, int]) -> str:
    return f"{case[1]}B-w{case[2]}"


def targets() -> list[tuple[str, str, str]]:
    if not peers.available(CLIENT):
        return []
    return [(s, s, CLIENT) for s in peers.DEFLATE_SERVERS if peers.available(s)]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--table", action="store_true", help="print Markdown tables of medians")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument(
        "--kind", choices=KINDS, action="append", help="payload kinds (default: all)"
    )
    parser.add_argument(
        "--row",
        action="append",
        metavar="NAME",
        help="measure only these servers (repeatable); with PYTHONPATH pointing at another "
        "checkout this compares two trees of wsfast",
    )
    args = parser.parse_args(argv)
    if not args.table:
        parser.print_help()
        return
    peers.pin_to_cpu()
    use_uvloop = not args.no_uvloop
    print(peers.describe(args.rounds, use_uvloop) + "\n", flush=True)
    columns = [c[0] for c in CASES]
    rows_wanted = [t for t in targets() if not args.row or t[0] in args.row]
    for kind in args.kind or KINDS:
        rows = echo_table(
            rows_wanted,
            CASES,
            args.rounds,
            deflate=True,
            use_uvloop=use_uvloop,
            payload_maker=lambda size, kind=kind: make_payloads(kind, size),
        )
        print(
            format_table(f"permessage-deflate, {kind} payloads ({CLIENT} client)", columns, rows),
            end="\n\n",
            flush=True,
        )


try:
    import pytest
except ImportError:  # the table mode needs no pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.mark.parametrize("case", CASES, ids=case_id)
    @pytest.mark.parametrize("kind", KINDS)
    @pytest.mark.parametrize("server", [t[1] for t in targets()])
    def test_deflate_echo(
        benchmark: Any,
        bench_loop: Any,
        echo_client: Any,
        server: str,
        kind: str,
        case: tuple[str, int, int, int],
    ) -> None:
        """One server with permessage-deflate negotiated, driven by an aiohttp client."""
        client = echo_client(server, CLIENT, True, case)
        run_case(benchmark, bench_loop, client, make_payloads(kind, case[1]), case[2], case[3])

    @pytest.mark.parametrize("server", [s for s in peers.DEFLATE_SERVERS if peers.available(s)])
    def test_idle_memory_deflate(benchmark: Any, server: str) -> None:
        """KiB per idle connection with permessage-deflate negotiated, in ``extra_info``."""
        idle_memory_benchmark(benchmark, server, True)


if __name__ == "__main__":
    main()

"""uvicorn's WebSocket engines side by side: ``wsfast.uvicorn`` against ``websockets-sansio`` and
``wsproto``, one ASGI echo application (``peers.asgi_echo``), one picows client.

Each server is uvicorn in its own process (uvloop, ``taskset -c 0``) with the engine under test as
``ws=``; the client is pinned to the same CPU (DESIGN section 6). Figures are medians of
``--rounds`` batches, binary messages, no compression (picows offers none). As in
``bench_echo.py --table`` (``echo_table``), every engine runs at once, the rounds go round-robin
over them, and each case has a connection of its own.

    python benchmarks/bench_uvicorn.py [--rounds 5] [--engines uvicorn-wsfast,uvicorn-wsproto]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers  # noqa: E402
from bench_echo import echo_table, server_targets  # noqa: E402

__all__ = ["CASES", "ENGINES", "measure", "main"]

# (label, payload size, messages in flight, messages per batch)
CASES: tuple[tuple[str, int, int, int], ...] = (
    ("32 B round trips/s", 32, 1, 2000),
    ("32 B pipelined msg/s", 32, 100, 10000),
    ("1 MiB msg/s", 1024 * 1024, 1, 20),
)
ENGINES = tuple(peers.UVICORN_ENGINES)


def measure(engines: list[str], rounds: int) -> dict[str, list[float]]:
    """The median rate of each case for each engine, in CASES order."""
    rates = echo_table(server_targets(engines), CASES, rounds)
    return {engine: [rate or 0.0 for rate in row] for engine, row in rates.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args(argv)
    peers.pin_to_cpu()
    engines = [e for e in args.engines.split(",") if peers.available(e)]
    table = measure(engines, args.rounds)
    print(peers.describe(args.rounds, True))
    print("| uvicorn --ws | " + " | ".join(label for label, *_ in CASES) + " |")
    print("| --- |" + " --- |" * len(CASES))
    for engine, rates in table.items():
        print(f"| {engine} | " + " | ".join(f"{rate:,.0f}" for rate in rates) + " |")
    peers_only = [rates for engine, rates in table.items() if engine != "uvicorn-wsfast"]
    if "uvicorn-wsfast" in table and peers_only:
        ours = table["uvicorn-wsfast"]
        ratios = [ours[i] / max(rates[i] for rates in peers_only) for i in range(len(CASES))]
        print("| wsfast / best peer | " + " | ".join(f"{r:.2f}x" for r in ratios) + " |")


if __name__ == "__main__":
    main()

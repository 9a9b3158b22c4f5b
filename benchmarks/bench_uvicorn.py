"""uvicorn's WebSocket engines side by side: ``wsfast.uvicorn`` against ``websockets-sansio`` and
``wsproto``, one ASGI echo application (``peers.asgi_echo``), one picows client.

Each server is uvicorn in its own process (uvloop, ``taskset -c 0``) with the engine under test as
``ws=``; the client is pinned to the same CPU (DESIGN section 6). Figures are medians of
``--rounds`` batches, binary messages, no compression (picows offers none).

    python benchmarks/bench_uvicorn.py [--rounds 5] [--engines uvicorn-wsfast,uvicorn-wsproto]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers  # noqa: E402
from bench_echo import measure_rate, payloads_for  # noqa: E402

__all__ = ["CASES", "ENGINES", "measure", "main"]

# (label, payload size, messages in flight, messages per batch)
CASES: tuple[tuple[str, int, int, int], ...] = (
    ("32 B round trips/s", 32, 1, 2000),
    ("32 B pipelined msg/s", 32, 100, 10000),
    ("1 MiB msg/s", 1024 * 1024, 1, 20),
)
ENGINES = tuple(peers.UVICORN_ENGINES)


def measure(engine: str, rounds: int) -> list[float]:
    """The median rate of each case for ``engine``, in CASES order."""
    loop = peers.new_loop()
    results: list[float] = []
    with peers.ServerProcess(engine) as proc:
        client = loop.run_until_complete(peers.open_client("picows", proc.url))
        try:
            for _, size, window, count in CASES:
                payloads = payloads_for(size)
                measure_rate(loop, client, payloads, window, max(2, count // 10))  # warm-up
                rates = [measure_rate(loop, client, payloads, window, count) for _ in range(rounds)]
                results.append(statistics.median(rates))
        finally:
            peers.close_all(loop, [client], [])
            loop.close()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args(argv)
    peers.pin_to_cpu()
    engines = [e for e in args.engines.split(",") if peers.available(e)]
    table = {engine: measure(engine, args.rounds) for engine in engines}
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

"""Cost of the zlib settings permessage-deflate can use, measured on the raw zlib calls.

Run: ``python benchmarks/bench_deflate_core.py``. Prints, for each level and memLevel, the time to
compress one message (sync flush, context takeover, as ``PerMessageDeflate.compress`` does) and
the compressed size, on text-like and random payloads from 32 B to 1 MiB. The figures chose the
defaults quoted in ``wsfast/permessage_deflate.py``.
"""

from __future__ import annotations

import os
import random
import time
import zlib

__all__ = ["text_payload", "random_payload", "measure", "main"]

SIZES = (32, 1024, 64 * 1024, 1024 * 1024)
SETTINGS = ((1, 8), (6, 8), (9, 8), (6, 9))  # (level, memLevel); 6 is Z_DEFAULT_COMPRESSION


def text_payload(size: int, seed: int = 0) -> bytes:
    """JSON-like chat messages: repetitive keys, varying words and numbers."""
    rng = random.Random(size * 1000 + seed)
    words = ["hello", "world", "message", "status", "online", "price", "user", "text", "ok"]
    parts: list[str] = []
    length = 0
    while length < size:
        item = (
            f'{{"id":{rng.randrange(10**6)},"type":"{rng.choice(words)}",'
            f'"text":"{" ".join(rng.choice(words) for _ in range(rng.randrange(1, 8)))}"}}'
        )
        parts.append(item)
        length += len(item) + 1
    return ",".join(parts).encode()[:size]


def random_payload(size: int, seed: int = 0) -> bytes:
    """Incompressible bytes: the worst case for time spent per output byte."""
    return os.urandom(size)


def measure(
    payloads: list[bytes], level: int, mem_level: int, budget: float = 0.3
) -> tuple[float, float]:
    """Seconds per message and compressed/original ratio, over ``budget`` seconds.

    Distinct payloads are cycled: with context takeover a repeated message would compress to a
    single back reference and measure nothing.
    """
    deflate = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level)
    count = 0
    produced = consumed = 0
    start = time.perf_counter()
    while True:
        payload = payloads[count % len(payloads)]
        out = deflate.compress(payload) + deflate.flush(zlib.Z_SYNC_FLUSH)
        produced += len(out) - 4
        consumed += len(payload)
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed > budget and count >= len(payloads):
            return elapsed / count, produced / consumed


def main() -> None:
    """Print one table row per payload kind and size."""
    header = " ".join(f"L{level}/M{mem:<2}".rjust(20) for level, mem in SETTINGS)
    print(f"{'payload':<14}{header}")
    for kind, make in (("text", text_payload), ("random", random_payload)):
        for size in SIZES:
            # Enough distinct messages to overflow the 32 KiB window, so none is a back reference.
            payloads = [make(size, seed) for seed in range(max(2, min(4096, 2**21 // size)))]
            cells = []
            for level, mem_level in SETTINGS:
                seconds, ratio = measure(payloads, level, mem_level)
                mbps = size / seconds / 1e6
                cells.append(f"{mbps:8.1f}MB/s {ratio:6.1%}".rjust(20))
            print(f"{kind + ' ' + str(size):<14}{' '.join(cells)}")


if __name__ == "__main__":
    main()

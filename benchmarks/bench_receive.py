"""The server's receive path for large masked messages, in process (no sockets, no event loop).

A server-side :class:`~wsfast.receiver.Receiver` is fed one masked message cut into 64 KiB
reads, as a transport hands them over, until its ``'message'`` callback has the final ``bytes``
or ``str``. Cases: 64 KiB and 1 MiB, binary (``binary_type='bytes'``) and text, one frame or 16
fragments. Each figure is the minimum over repeats of ``timeit`` (the least disturbed run on a
loaded machine), per message and as GB/s of payload.

    python benchmarks/bench_receive.py                          # this checkout, as imported
    PYTHONPATH=/other/checkout python benchmarks/bench_receive.py   # another tree, same script
    WSFAST_NO_BUFFER_UTIL=1 python benchmarks/bench_receive.py  # the pure-Python fallback

It uses only the receiver's and sender's public surface, so the same script measures a tree from
before a change. ``python -m pytest benchmarks/bench_receive.py --benchmark-only`` runs the same
cases under pytest-benchmark.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from typing import Any

import pytest

import wsfast
from wsfast.constants import OP_BINARY, OP_CONTINUATION, OP_TEXT
from wsfast.receiver import Receiver
from wsfast.sender import frame

__all__ = ["CASES", "build", "main"]

READ = 64 * 1024
KEY = b"\x37\xfa\x21\x3d"
#: (label, payload size, opcode, fragments)
CASES = [
    ("binary 64 KiB", 64 * 1024, OP_BINARY, 1),
    ("binary 1 MiB", 1024 * 1024, OP_BINARY, 1),
    ("binary 1 MiB, 16 fragments", 1024 * 1024, OP_BINARY, 16),
    ("text 64 KiB", 64 * 1024, OP_TEXT, 1),
    ("text 1 MiB", 1024 * 1024, OP_TEXT, 1),
]


def build(size: int, opcode: int, fragments: int) -> tuple[Any, list[bytes]]:
    """A function that feeds one message to a server-side receiver, and the reads it feeds."""
    payload = (bytes(range(0x20, 0x7F)) * (size // 95 + 1))[:size]  # ASCII: valid as text too
    step = size // fragments
    wire = b"".join(
        bytes(
            frame(
                payload[start : start + step],
                opcode if start == 0 else OP_CONTINUATION,
                fin=start + step >= size,
                mask=KEY,
            )
        )
        for start in range(0, size, step)
    )
    reads = [wire[pos : pos + READ] for pos in range(0, len(wire), READ)]
    got: list[Any] = []
    receiver = Receiver(is_server=True, on_message=lambda data, is_binary: got.append(data))
    feed = receiver.feed

    def run() -> None:
        for read in reads:
            feed(read)
        message = got.pop()
        assert len(message) == size

    run()  # once, to check that it delivers
    return run, reads


def measure(run: Any, repeat: int, budget: float = 0.05) -> float:
    """Seconds per call: the minimum of ``repeat`` timeit runs of about ``budget`` seconds."""
    number = max(1, int(budget / max(timeit.timeit(run, number=1), 1e-7)))
    return min(timeit.repeat(run, number=number, repeat=repeat)) / number


@pytest.mark.parametrize("label, size, opcode, fragments", CASES, ids=[c[0] for c in CASES])
def test_receive(benchmark: Any, label: str, size: int, opcode: int, fragments: int) -> None:
    benchmark.group = f"receive {label}"
    run, _ = build(size, opcode, fragments)
    benchmark(run)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=15, help="timeit repeats (the min counts)")
    args = parser.parse_args(argv)
    print(
        f"wsfast from {wsfast.__file__.rsplit('/', 2)[0]}; speedups: {wsfast.speedups()}",
        file=sys.stderr,
    )
    print("| case | us per message | GB/s |")
    print("| --- | --- | --- |")
    for label, size, opcode, fragments in CASES:
        run, _ = build(size, opcode, fragments)
        seconds = measure(run, args.repeat)
        print(f"| {label} | {seconds * 1e6:,.1f} | {size / seconds / 1e9:.2f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

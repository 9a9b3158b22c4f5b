"""What every harness shares: a byte-stream input decoder and the atheris entry point.

The harnesses decode their input with :class:`Input` rather than atheris' FuzzedDataProvider,
so a seed file reads as "a few option bytes, then the wire bytes", and the same
``TestOneInput`` runs without atheris (tests/test_fuzz_regressions.py replays the seed corpus
and every crash found through it). This module must not import wsfast: each harness imports
wsfast inside :func:`instrumented` so atheris sees its bytecode.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

try:
    import atheris
except ImportError:  # replayed by pytest without atheris
    atheris = None

__all__ = ["Input", "instrumented", "main"]


class Input:
    """Reads option bytes from the front of a fuzz input; the rest is data. Reading past the
    end gives zeros (and empty data), so every input is a valid one."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        pos = self.pos
        if pos >= len(self.data):
            return 0
        self.pos = pos + 1
        return self.data[pos]

    def u16(self) -> int:
        return (self.byte() << 8) | self.byte()

    def bool(self) -> bool:
        return bool(self.byte() & 1)

    def choice(self, options: Any) -> Any:
        return options[self.byte() % len(options)]

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


@contextlib.contextmanager
def instrumented() -> Iterator[None]:
    """Instrument the wsfast modules imported inside the block (coverage feedback)."""
    if atheris is None:
        yield
        return
    with atheris.instrument_imports(include=["wsfast"]):
        yield


def main(test_one_input: Callable[[bytes], None]) -> None:
    """Run libFuzzer on ``test_one_input`` with the command line's libFuzzer flags."""
    if atheris is None:
        raise SystemExit("atheris is not installed: pip install atheris")
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

"""The speedups benchmark behind ``python -m wsfast bench``: native against fallback, in seconds.

Masking and UTF-8 validation at frame sizes from 16 B to 1 MiB, native extension against the
pure-Python fallback, next to the floor and the peers: a plain memory copy (what masking into a
fresh buffer cannot beat), CPython's ``bytes.decode`` (what a Python validator costs), and the
native masks of ``websockets`` and ``aiohttp`` when they are installed. Each figure is the best
of several timed batches, as ns per call and GB/s. ``benchmarks/bench_speedups.py`` measures the
same with pytest-benchmark.

Imported only by the command line, never by ``import wsfast``.
"""

from __future__ import annotations

import importlib
import random
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from . import buffer_util, validation

__all__ = [
    "run",
    "measure",
    "ascii_text",
    "mixed_text",
    "invalid_text",
    "SIZES",
    "peers",
    "size_label",
]

#: Frame sizes of the comparison: a tiny control frame, a 125-byte ping, typical messages, large.
SIZES = (16, 125, 1024, 64 * 1024, 1024 * 1024)

_WORDS = (
    "the quick brown fox jumps café naïve résumé привет мир γειά σου 你好世界 日本語 "
    "こんにちは 😀 🎉 한국어 עברית العربية Ελληνικά Straße ½ € ✓"
).split()


def ascii_text(size: int) -> bytes:
    """``size`` bytes of ASCII."""
    return (b"All work and no play makes Jack a dull boy. " * (size // 44 + 1))[:size]


def mixed_text(size: int, seed: int = 7) -> bytes:
    """About ``size`` bytes of valid multilingual UTF-8 (1- to 4-byte characters, spaces)."""
    rnd = random.Random(seed)
    out = bytearray()
    while len(out) < size + 8:
        out += rnd.choice(_WORDS).encode() + b" "
    # Cut at a character boundary at or below size.
    return out[:size].decode("utf-8", "ignore").encode()


def invalid_text(size: int) -> bytes:
    """Mixed text whose very last byte is invalid: a validator must read everything."""
    data = bytearray(mixed_text(max(size - 1, 0)))
    data.append(0xFF)
    return bytes(data)


Call = tuple[str, dict[str, Any]]  # a statement and its namespace, timed without a wrapper


def measure(calls: dict[str, Call], budget: float) -> dict[str, float]:
    """Best seconds per execution of each call, over about ``budget`` seconds in all.

    The calls take turns, one batch each per round, so all of them meet the same machine: on a
    shared host a background burst then slows every column alike instead of one of them.
    """
    share = budget / max(len(calls), 1)
    timers: dict[str, tuple[timeit.Timer, int]] = {}
    best: dict[str, float] = {}
    for name, (stmt, namespace) in calls.items():
        # CPU time of this process, not wall time: on a shared host a preemption would otherwise
        # count as a slow call (wall-clock figures swung by 15% here under load, CPU time by 3%).
        timer = timeit.Timer(stmt, timer=time.process_time, globals=namespace)
        number = 1
        while True:
            elapsed = timer.timeit(number)
            if elapsed >= share / 20 or number >= 1 << 24:
                break
            number *= 4 if elapsed < share / 200 else 2
        timers[name] = (timer, number)
        best[name] = elapsed / number
    deadline = time.perf_counter() + budget
    while time.perf_counter() < deadline:
        for name, (timer, number) in timers.items():
            best[name] = min(best[name], timer.timeit(number) / number)
    return best


def peers() -> dict[str, Callable[..., Any]]:
    """The peers' native masks that are installed: ``websockets`` and ``aiohttp``."""
    found: dict[str, Callable[..., Any]] = {}
    try:
        from websockets.speedups import apply_mask  # type: ignore[import-not-found,unused-ignore]

        found["websockets"] = apply_mask  # returns a new bytes object
    except ImportError:
        pass
    try:  # aiohttp >= 3.11; in place, (mask, bytearray)
        from aiohttp._websocket.mask import (  # type: ignore[import-not-found,unused-ignore]
            _websocket_mask_cython,
        )

        found["aiohttp"] = _websocket_mask_cython
    except ImportError:
        pass
    return found


def _natives() -> tuple[Any, Any]:
    """The native extensions that are installed (None for a missing one), whatever the
    WSFAST_NO_* variables say: the table compares them with the fallback either way."""
    found: list[Any] = []
    for name in ("wsfast_bufferutil", "wsfast_utf8validate"):
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            found.append(None)
    return found[0], found[1]


def _mask_rows(size: int, bu: Any, peer: dict[str, Callable[..., Any]]) -> list[Any]:
    src = random.Random(size).randbytes(size)
    out = bytearray(size)
    ns = {
        "src": src,
        "key": b"\x37\xfa\x21\x3d",
        "out": out,
        "view": memoryview(out),
        "buf": bytearray(src),
        "n": size,
        "bu": bu,
        "py": buffer_util,
        **peer,
    }
    mask: dict[str, Call] = {}
    unmask: dict[str, Call] = {}
    if bu is not None:
        mask["native"] = ("bu.mask(src, key, out, 0, n)", ns)
        unmask["native"] = ("bu.unmask(buf, key)", ns)
    mask["fallback"] = ("py.py_mask(src, key, out, 0, n)", ns)
    unmask["fallback"] = ("py.py_unmask(buf, key)", ns)
    mask["memcpy"] = ("view[:] = src", ns)
    if "websockets" in peer:
        mask["websockets"] = ("websockets(src, key)", ns)  # allocates its result
    if "aiohttp" in peer:
        unmask["aiohttp"] = ("aiohttp(key, buf)", ns)
    return [("mask (into a buffer)", size, size, mask), ("unmask (in place)", size, size, unmask)]


def _utf8_row(label: str, size: int, data: bytes, u8: Any) -> Any:
    ns = {"data": data, "u8": u8, "validation": validation, "Error": UnicodeDecodeError}
    calls: dict[str, Call] = {}
    if u8 is not None:
        calls["native"] = ("u8.is_valid_utf8(data)", ns)
    calls["fallback"] = ("validation.py_is_valid_utf8(data)", ns)
    calls["bytes.decode"] = ("try:\n    data.decode()\nexcept Error:\n    pass", ns)
    return (label, size, len(data), calls)


def _rows(sizes: Sequence[int]) -> list[tuple[str, int, int, dict[str, Call]]]:
    """(operation, size, bytes per call, {implementation: call}) for every cell of the table."""
    bu, u8 = _natives()
    peer = peers()
    rows: list[tuple[str, int, int, dict[str, Call]]] = []
    for size in sizes:
        rows += _mask_rows(size, bu, peer)
    for label, make in (
        ("utf-8 ascii", ascii_text),
        ("utf-8 mixed", mixed_text),
        ("utf-8 invalid", invalid_text),
    ):
        rows += [_utf8_row(label, size, make(size), u8) for size in sizes]
    return rows


def size_label(n: int) -> str:
    """ "16 B", "64 KiB", "1 MiB": a size as the table prints it."""
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n >> 10} KiB"
    return f"{n} B"


def run(
    seconds: float = 3.0, sizes: Sequence[int] = SIZES, file: TextIO | None = None
) -> list[dict[str, Any]]:
    """Print the comparison table in about ``seconds`` and return its figures.

    Each result is ``{"operation", "size", "implementation", "ns", "gbps"}``.
    """
    file = file or sys.stdout
    bu, u8 = _natives()
    rows = _rows(sizes)
    cells = sum(len(calls) for _, _, _, calls in rows)
    budget = max(seconds, 0.5) / cells
    kernels = (
        f"bufferutil {bu.__version__} ({bu._kernel()})" if bu else "bufferutil: not installed",
        f"utf8validate {u8.__version__} ({u8._kernel()})" if u8 else "utf8validate: not installed",
    )
    print(f"wsfast speedups: {kernels[0]}; {kernels[1]}", file=file)
    print(f"in use: {_in_use()}", file=file)
    print("each cell: ns per call / GB/s, best of batches taken in turns\n", file=file)
    columns = ["native", "fallback", "memcpy", "bytes.decode", "websockets", "aiohttp"]
    width = 19
    header = f"{'operation':<22}{'size':>9}  " + "".join(f"{c:>{width}}" for c in columns)
    print(header, file=file)
    print("-" * len(header), file=file)
    results: list[dict[str, Any]] = []
    for operation, size, nbytes, calls in rows:
        line = f"{operation:<22}{size_label(size):>9}  "
        timings = measure(calls, budget * len(calls))
        for column in columns:
            if column not in timings:
                line += f"{'':>{width}}"
                continue
            seconds_per_call = timings[column]
            ns = seconds_per_call * 1e9
            gbps = nbytes / seconds_per_call / 1e9 if seconds_per_call else float("inf")
            results.append(
                {
                    "operation": operation,
                    "size": size,
                    "implementation": column,
                    "ns": ns,
                    "gbps": gbps,
                }
            )
            line += f"{_ns(ns) + ' / ' + _gbps(gbps):>{width}}"
        print(line, file=file, flush=True)
    return results


def _in_use() -> str:
    parts = []
    for name, native in (("masking", buffer_util.NATIVE), ("utf-8", validation.NATIVE)):
        parts.append(f"{name} {'native' if native else 'fallback'}")
    return ", ".join(parts)


def _ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e4:
        return f"{ns / 1e3:.1f} us"
    return f"{ns:.0f} ns"


def _gbps(gbps: float) -> str:
    return f"{gbps:.2f}" if gbps < 10 else f"{gbps:.1f}"

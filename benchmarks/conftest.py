"""pytest wiring for the benchmarks: collection of ``bench_*.py``, the loop, servers, clients.

The project's ``testpaths`` is ``tests``, so the normal test command never runs these. Asked
for explicitly (``python -m pytest benchmarks/ --benchmark-only``), the ``bench_*.py`` files are
collected by the hook below; ``-o python_files='bench_*.py'`` works too and is not doubled.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers  # noqa: E402


def pytest_addoption(parser: Any) -> None:
    parser.addoption(
        "--bench-no-uvloop",
        action="store_true",
        help="run the echo benchmarks on asyncio's own loop instead of uvloop",
    )


def pytest_collect_file(file_path: Path, parent: Any) -> Any:
    if file_path.suffix != ".py" or not file_path.name.startswith("bench_"):
        return None
    if parent.session.isinitpath(file_path):
        return None  # named on the command line: pytest's own collector takes it
    patterns = parent.config.getini("python_files")
    if any(fnmatch.fnmatch(file_path.name, pattern) for pattern in patterns):
        return None  # pytest's own collector takes it
    return pytest.Module.from_parent(parent, path=file_path)


def pytest_configure(config: Any) -> None:
    # Client and servers share CPU 0 (servers through taskset): DESIGN section 6.
    peers.pin_to_cpu()


@pytest.fixture(scope="session")
def use_uvloop(request: Any) -> bool:
    return not request.config.getoption("--bench-no-uvloop")


@pytest.fixture(scope="session")
def bench_loop(use_uvloop: bool) -> Iterator[asyncio.AbstractEventLoop]:
    loop = peers.new_loop(use_uvloop)
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def echo_client(bench_loop: asyncio.AbstractEventLoop, use_uvloop: bool) -> Iterator[Any]:
    """``echo_client(server, client, deflate, case)``: a connected client, cached for the session.

    One connection per case (``case`` is any hashable tag): on a shared connection a case takes
    on the traffic pattern of the one before (``bench_echo.echo_table`` says how much).
    """
    procs: dict[tuple[str, bool], peers.ServerProcess] = {}
    clients: dict[tuple[str, str, bool, Any], Any] = {}

    def get(server: str, client: str, deflate: bool, case: Any = None) -> Any:
        key = (server, client, deflate, case)
        if key not in clients:
            if (server, deflate) not in procs:
                procs[server, deflate] = peers.ServerProcess(
                    server, deflate=deflate, use_uvloop=use_uvloop
                )
            url = procs[server, deflate].url
            clients[key] = bench_loop.run_until_complete(peers.open_client(client, url, deflate))
        return clients[key]

    yield get
    peers.close_all(bench_loop, clients.values(), procs.values())

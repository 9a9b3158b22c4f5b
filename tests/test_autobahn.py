"""The Autobahn testsuite, driven from pytest (slow; opt in with ``WSFAST_AUTOBAHN``).

    WSFAST_AUTOBAHN=core  -> sections 1-10 (everything but permessage-deflate), server and client
    WSFAST_AUTOBAHN=all   -> also sections 12-13 (permessage-deflate)
    unset                 -> skipped, with the reason

Sections 1-10 run through every front end (``FRONT_ENDS``: ws' event API, the asyncio API,
wsfast.sync and the uvicorn engine, the last as a server only: ``ROLES_OF``); the slow
compression sections through the event API alone (the brief's CI budget; run the
others by hand with ``python tests/autobahn/harness.py ROLE 12-13 --api asyncio``).
Every selected case must pass (behavior OK, NON-STRICT or INFORMATIONAL; behaviorClose OK or
INFORMATIONAL), and wsfast's testees must pass strictly: no NON-STRICT case, on any front end
(wstest's NON-STRICT means an answer it expected was missing or late, e.g. the echo of a message
that came just before an invalid frame). A per-verdict table is printed and merged into
``reports/autobahn-summary.json``.
When ``WSFAST_AUTOBAHN`` is set and ``wstest`` is missing the test fails: install it with
``.ci/install-autobahn.sh``. ``WSFAST_AUTOBAHN_TESTEE=websockets`` runs the stand-in testee;
``WSFAST_AUTOBAHN_JOBS`` (default 2) is how many runs go side by side.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

_HARNESS_PATH = Path(__file__).parent / "autobahn" / "harness.py"
# Loaded by path under its own name: a top-level "autobahn" package is a real PyPI project.
_spec = importlib.util.spec_from_file_location("wsfast_tests_autobahn_harness", _HARNESS_PATH)
assert _spec is not None and _spec.loader is not None
harness = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = harness
_spec.loader.exec_module(harness)

MODES = {"core": ("1-10",), "all": ("1-10", "12-13")}
ROLES = ("server", "client")
# (sections, front end) pairs; the stand-in testee (WSFAST_AUTOBAHN_TESTEE=websockets) has one
# front end, so only the "events" entries apply to it.
FRONT_ENDS = (
    ("1-10", "events"),
    ("12-13", "events"),
    ("1-10", "asyncio"),
    ("1-10", "sync"),
    ("1-10", "uvicorn"),
)
# The roles each front end plays: uvicorn's engine only serves.
ROLES_OF = {
    api: tuple(r for r in ROLES if not (r == "client" and api in harness.SERVER_ONLY_APIS))
    for _, api in FRONT_ENDS
}
# Every (role, sections, front end) run.
RUNS = [(role, sec, api) for sec, api in FRONT_ENDS for role in ROLES_OF[api]]
TESTEE = os.environ.get("WSFAST_AUTOBAHN_TESTEE") or "wsfast"
# Runs at once (WSFAST_AUTOBAHN_JOBS, default 2): wstest is one single-threaded Python 2 process,
# so two runs side by side use both cores of the CI machine.
JOBS = max(1, int(os.environ.get("WSFAST_AUTOBAHN_JOBS", "2") or 2))
# A test may wait for runs queued before its own; each run is bounded by the harness' limit
# (which stops wstest and the testee), so pytest-timeout's limit is the sum plus a margin.
PYTEST_TIMEOUT = (sum(harness.DEFAULT_TIMEOUTS[s] for _, s, _ in RUNS) + 120) * (
    harness.timeout_factor()
)

_pool: ThreadPoolExecutor | None = None
_runs: dict[tuple[str, str, str], Future[Any]] = {}


def _selected_front_ends(mode: str) -> list[tuple[str, str]]:
    return [
        (sec, api)
        for sec, api in FRONT_ENDS
        if sec in MODES[mode] and (TESTEE == "wsfast" or api == "events")
    ]


def _run(role: str, section: str, api: str, mode: str) -> Future[Any]:
    """Starts every selected run on first use, the slowest sections first, JOBS at a time."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=JOBS, thread_name_prefix="autobahn")
        selected = _selected_front_ends(mode)
        for sec, a in sorted(selected, key=lambda sa: -harness.DEFAULT_TIMEOUTS[sa[0]]):
            for r in ROLES_OF[a]:
                _runs[(r, sec, a)] = _pool.submit(harness.run_suite, r, sec, api=a)
    return _runs[(role, section, api)]


@pytest.fixture(scope="module", autouse=True)
def _autobahn_pool() -> Iterator[None]:
    yield
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)


def _selected(section: str) -> str:
    mode = os.environ.get("WSFAST_AUTOBAHN", "").strip().lower()
    if not mode:
        pytest.skip(
            "Autobahn testsuite not requested: set WSFAST_AUTOBAHN=core (sections 1-10) "
            "or WSFAST_AUTOBAHN=all (1-10 and 12-13)"
        )
    if mode not in MODES:
        pytest.fail(f"WSFAST_AUTOBAHN={mode!r}: expected one of {sorted(MODES)}")
    if section not in MODES[mode]:
        pytest.skip(f"sections {section} not in WSFAST_AUTOBAHN={mode} (use 'all')")
    return mode


def _report(result: Any, capsys: pytest.CaptureFixture[str]) -> None:
    summary = harness.write_summary(result)
    with capsys.disabled():  # the figures belong in the log even when the test passes
        print()
        print(result.table())
        print(f"report: {result.outdir}/index.html; summary: {summary}")


@pytest.mark.autobahn
@pytest.mark.timeout(PYTEST_TIMEOUT)
@pytest.mark.parametrize("role, section, api", RUNS, ids=[f"{r}-{s}-{a}" for r, s, a in RUNS])
def test_autobahn(role: str, section: str, api: str, capsys: pytest.CaptureFixture[str]) -> None:
    mode = _selected(section)
    if TESTEE != "wsfast" and api != "events":
        pytest.skip(f"the {TESTEE} stand-in testee has no {api} front end")
    if harness.find_wstest() is None:
        pytest.fail(
            "WSFAST_AUTOBAHN is set but wstest is missing: run .ci/install-autobahn.sh "
            "(or point WSFAST_WSTEST at it)"
        )
    try:
        result = _run(role, section, api, mode).result()
    except harness.AutobahnError as exc:
        if exc.result is not None:  # out of time: show what did run, then fail
            _report(exc.result, capsys)
        raise
    _report(result, capsys)
    failing = result.failing
    assert not failing, (
        f"{len(failing)} of {len(result.cases)} Autobahn cases not passing as {role} "
        f"(sections {section}, {result.path} path, {api} API): "
        + ", ".join(f"{c.case} {c.behavior}/{c.behavior_close}" for c in failing[:30])
    )
    assert result.cases, "the Autobahn report lists no case"
    if TESTEE == "wsfast":
        lax = [c.case for c in result.sorted_cases() if c.behavior == "NON-STRICT"]
        assert not lax, (
            f"{len(lax)} Autobahn cases only NON-STRICT as {role} (sections {section}, "
            f"{result.path} path, {api} API): {', '.join(lax[:30])}"
        )


def test_server_only_front_ends_refuse_the_client_role() -> None:
    assert ("client", "1-10", "uvicorn") not in RUNS
    assert ("server", "1-10", "uvicorn") in RUNS
    with pytest.raises(ValueError, match="uvicorn front end is a server only"):
        harness.run_suite("client", "1-10", api="uvicorn")

"""The Autobahn testsuite, driven from pytest (slow; opt in with ``WSFAST_AUTOBAHN``).

    WSFAST_AUTOBAHN=core  -> sections 1-10 (everything but permessage-deflate), server and client
    WSFAST_AUTOBAHN=all   -> also sections 12-13 (permessage-deflate)
    unset                 -> skipped, with the reason

Every selected case must pass (behavior OK, NON-STRICT or INFORMATIONAL; behaviorClose OK or
INFORMATIONAL). A per-verdict table is printed and merged into ``reports/autobahn-summary.json``.
When ``WSFAST_AUTOBAHN`` is set and ``wstest`` is missing the test fails: install it with
``.ci/install-autobahn.sh``. ``WSFAST_AUTOBAHN_TESTEE=websockets`` runs the stand-in testee.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

_HARNESS_PATH = Path(__file__).parent / "autobahn" / "harness.py"
# Loaded by path under its own name: a top-level "autobahn" package is a real PyPI project.
_spec = importlib.util.spec_from_file_location("wsfast_tests_autobahn_harness", _HARNESS_PATH)
assert _spec is not None and _spec.loader is not None
harness = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = harness
_spec.loader.exec_module(harness)

MODES = {"core": ("1-10",), "all": ("1-10", "12-13")}
# pytest-timeout's limit sits above the harness' own (which stops wstest and the testee first).
PYTEST_TIMEOUTS = {"1-10": 420, "12-13": 1680}


def _selected(section: str) -> None:
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


@pytest.mark.autobahn
@pytest.mark.parametrize(
    "section",
    [
        pytest.param(s, marks=pytest.mark.timeout(t * harness.timeout_factor()))
        for s, t in PYTEST_TIMEOUTS.items()
    ],
)
@pytest.mark.parametrize("role", ["server", "client"])
def test_autobahn(role: str, section: str, capsys: pytest.CaptureFixture[str]) -> None:
    _selected(section)
    if harness.find_wstest() is None:
        pytest.fail(
            "WSFAST_AUTOBAHN is set but wstest is missing: run .ci/install-autobahn.sh "
            "(or point WSFAST_WSTEST at it)"
        )
    result = harness.run_suite(role, section)
    summary = harness.write_summary(result)
    with capsys.disabled():  # the figures belong in the log even when the test passes
        print()
        print(result.table())
        print(f"report: {result.outdir}/index.html; summary: {summary}")
    failing = result.failing
    assert not failing, (
        f"{len(failing)} of {len(result.cases)} Autobahn cases not passing as {role} "
        f"(sections {section}, {result.path} path): "
        + ", ".join(f"{c.case} {c.behavior}/{c.behavior_close}" for c in failing[:30])
    )
    assert result.cases, "the Autobahn report lists no case"

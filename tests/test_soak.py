"""benchmarks/soak.py stays runnable, and its checks can fail.

A few seconds of the soak test with a few hundred connections from two client processes (CI
runs 60 s of it in .ci/run); then a run with a fault injected into the server, which must be
caught. Each run is a subprocess, as a user would start it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import scaled

ROOT = Path(__file__).resolve().parent.parent
SOAK = ROOT / "benchmarks" / "soak.py"

pytestmark = [
    pytest.mark.soak,
    pytest.mark.timeout(scaled(240)),
    # The sdist carries tests/ but not benchmarks/ (MANIFEST.in).
    pytest.mark.skipif(not SOAK.exists(), reason="needs the source checkout (benchmarks/)"),
]


def run_soak(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, str(SOAK), *args, "--drain-timeout", str(scaled(30))],
        capture_output=True,
        text=True,
        timeout=scaled(200),
        env=env,
        cwd=ROOT,
    )


def test_short_soak_run_passes() -> None:
    # Lifetimes of 3 s on average: every end of a connection (clean closes by either side,
    # terminate, TCP reset by either side) and the reconnects happen within the few seconds.
    result = run_soak(
        "--duration", "5", "--connections", "300", "--processes", "2", "--lifetime", "3",
        "--seed", "11",
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "soak: OK" in result.stdout, out
    for line in ("client_resets", "server_terminates", "server_closes", "verified"):
        count = next(row.split()[-1] for row in result.stdout.splitlines() if line in row)
        assert count != "0", f"{line} is 0:\n{out}"


def test_soak_run_catches_a_duplicated_and_a_corrupt_echo() -> None:
    result = run_soak(
        "--duration", "3", "--connections", "50", "--processes", "1", "--lifetime", "30",
        "--seed", "12", "--rate", "200", "--fault",
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "soak: FAILED" in result.stdout, out
    assert "an echo nobody waits for" in result.stdout or "out of order" in result.stdout, out

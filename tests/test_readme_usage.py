"""The Usage block at the top of README.md runs as shown and prints the echoed message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import scaled

README = Path(__file__).resolve().parent.parent / "README.md"


def usage_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Usage\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_usage_block_echoes_hello() -> None:
    env = dict(os.environ, PYTHONPATH=str(README.parent))
    result = subprocess.run(
        [sys.executable, "-c", usage_block()],
        capture_output=True,
        text=True,
        timeout=scaled(30),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello"

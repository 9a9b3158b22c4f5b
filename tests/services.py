"""Helpers for the tests that start real services on 127.0.0.1 (tinyproxy, redis-server)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def installed(binary: str, setup_script: str) -> str | None:
    """The path of ``binary``; runs ``tests/<setup_script>`` first as root where apt-get
    exists and the binary is missing. None when it is still missing."""
    path = shutil.which(binary)
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["sh", str(HERE / setup_script)],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=600,
        )
        path = shutil.which(binary)
    return path

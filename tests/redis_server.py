"""A real ``redis-server`` on a free 127.0.0.1 port, started and stopped by PID (no persistence).

Installed by ``tests/redis_setup.sh`` (``.ci/run`` runs it). In CI (``CI`` set) a missing
redis-server fails the tests that need it; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
from services import free_port, installed


def redis_binary() -> str:
    """The redis-server binary (installed by tests/redis_setup.sh where possible); in CI a
    missing one fails the test, elsewhere it is skipped."""
    path = installed("redis-server", "redis_setup.sh")
    if path is None:
        message = "redis-server is not installed (run tests/redis_setup.sh)"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI must run the backplane tests", pytrace=False)
        pytest.skip(message)
    return path


class RedisServer:
    """One redis-server process on a fixed port; :meth:`stop` and :meth:`start` again keep the
    port, so clients see the same Redis go away and come back."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = tempfile.mkdtemp(prefix="wsf-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        assert self.process is None
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--dir",
                self.directory,
                "--enable-debug-command",
                "local",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        self.process = None
        process.send_signal(signal.SIGKILL)  # gone at once, as a crash or a lost host
        process.wait(timeout=10)

    def command(self, *args: str) -> bytes:
        """Send one inline command and return the first reply bytes (for DEBUG SLEEP etc.)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall((" ".join(args) + "\r\n").encode())
            return sock.recv(4096)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

"""Node ``ws`` peers for the interop tests: install, start, talk to and stop them.

``tests/interop`` holds a tiny npm project (``ws`` ^8) with ``echo_server.js`` and ``client.js``;
``npm install --no-audit --no-fund`` runs there once, when ``node_modules/ws`` is missing.
Processes are started in their own process group and ended by PID. Without ``node``/``npm`` the
tests are skipped, except under CI (``CI`` set), where that is a failure.

Import this module from a test module (the fixtures are found by name there)::

    from node import NodeEchoServer, node_echo_server, run_node_client, pattern, describe
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "INTEROP_DIR",
    "NodeEchoServer",
    "describe",
    "ensure_node_modules",
    "is_binary_spec",
    "node_echo_server",
    "pattern",
    "payload",
    "random_bytes",
    "run_node_client",
    "timeout_factor",
    "wait_listening",
]

INTEROP_DIR = Path(__file__).resolve().parent
Event = dict[str, Any]


def timeout_factor() -> float:
    """One factor scales every test timeout (``WSFAST_TEST_TIMEOUT_FACTOR``, default 1)."""
    return float(os.environ.get("WSFAST_TEST_TIMEOUT_FACTOR", "1") or 1)


_WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", '{"id":',
    '"name":', "null,", "true}", "websocket", "deflate", "window", "message",
)  # fmt: skip


def random_bytes(length: int) -> bytes:
    """``common.js``' randomBytes(): SHA-256 of each 4-byte big-endian block index, in turn."""
    blocks = (hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range((length + 31) // 32))
    return b"".join(blocks)[:length]


def pattern(kind: str, length: int) -> bytes | str:
    """The payloads of ``common.js``' pattern(): binary byte i is i % 251, text is a..z repeated,
    "random" is :func:`random_bytes` (binary), "words" is text made of one word per random byte.
    """
    if kind == "random":
        return random_bytes(length)
    if kind == "words":
        out: list[str] = []
        size = 0
        for b in random_bytes(length):
            if size >= length:
                break
            word = _WORDS[b % 16] + " "
            out.append(word)
            size += len(word)
        return "".join(out)[:length]
    if kind == "binary":
        return bytes(range(251)) * (length // 251) + bytes(range(length % 251))
    return ("abcdefghijklmnopqrstuvwxyz" * (length // 26 + 1))[:length]


def payload(spec: Event) -> bytes | str:
    """A payload described as in ``common.js``: {"text"} | {"hex"} | {"pattern", "length"}."""
    if "pattern" in spec:
        return pattern(spec["pattern"], spec["length"])
    if "hex" in spec:
        return bytes.fromhex(spec["hex"])
    return str(spec.get("text", ""))


def is_binary_spec(spec: Event) -> bool:
    if "binary" in spec:
        return bool(spec["binary"])
    return "hex" in spec or spec.get("pattern") in ("binary", "random")


def describe(data: bytes | str, is_binary: bool | None = None) -> Event:
    """What ``common.js``' describe() prints for the same message."""
    is_binary = isinstance(data, (bytes, bytearray, memoryview)) if is_binary is None else is_binary
    raw = data.encode() if isinstance(data, str) else bytes(data)
    out: Event = {
        "binary": is_binary,
        "length": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
    if len(raw) <= 256:
        out["data"] = raw.hex() if is_binary else raw.decode()
    return out


def _need_node() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm:
        return node, npm
    reason = "node and npm are needed for the interop tests with node's ws"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def ensure_node_modules() -> str:
    """Runs ``npm install`` in tests/interop unless ws is installed; returns the node binary."""
    node, npm = _need_node()
    if (INTEROP_DIR / "node_modules" / "ws" / "package.json").exists():
        return node
    lock_path = Path(tempfile.gettempdir()) / (
        "wsfast-npm-" + hashlib.sha256(str(INTEROP_DIR).encode()).hexdigest()[:12] + ".lock"
    )
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest-xdist workers or parallel runs install once
        if not (INTEROP_DIR / "node_modules" / "ws" / "package.json").exists():
            proc = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund"],
                cwd=INTEROP_DIR,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=300 * timeout_factor(),
            )
            if proc.returncode != 0:
                pytest.fail(f"npm install failed in {INTEROP_DIR}:\n{proc.stdout}\n{proc.stderr}")
    return node


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


class NodeEchoServer:
    """``echo_server.js`` running on 127.0.0.1: its port, and the events it has printed."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        node = ensure_node_modules()
        cmd = [node, str(INTEROP_DIR / "echo_server.js"), "0"]
        if options is not None:
            cmd.append(json.dumps(options))
        self.proc = subprocess.Popen(
            cmd,
            cwd=INTEROP_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.events: list[Event] = []
        self._cond = threading.Condition()
        self._port: int | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._port is not None or self.proc.poll() is not None,
                timeout=30 * timeout_factor(),
            ):
                self.stop()
                raise RuntimeError("node echo server printed no port in time")
        if self._port is None:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            raise RuntimeError(f"node echo server exited with {self.proc.returncode}: {err}")
        self.port: int = self._port
        self.url = f"ws://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            with self._cond:
                if self._port is None and line.isdigit():
                    self._port = int(line)
                elif line:
                    self.events.append(json.loads(line))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def events_for(self, path: str) -> list[Event]:
        with self._cond:
            return [e for e in self.events if e.get("path") == path]

    async def wait_event(
        self, path: str, predicate: Callable[[Event], bool], timeout: float = 10.0
    ) -> Event:
        """Waits (without blocking the event loop) for an event of ``path`` that matches."""
        deadline = time.monotonic() + timeout * timeout_factor()
        while True:
            for event in self.events_for(path):
                if predicate(event):
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching node event for {path}: {self.events_for(path)}")
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        _stop(self.proc)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


@pytest.fixture(scope="module")
def node_echo_server() -> Iterator[NodeEchoServer]:
    """One node ws echo server (no compression, ws' server default) per test module."""
    server = NodeEchoServer()
    try:
        yield server
    finally:
        server.stop()


async def run_node_client(
    url: str, steps: list[Event], *, timeout: float = 30.0, options: dict[str, Any] | None = None
) -> list[Event]:
    """Runs ``client.js`` against ``url`` with a script and returns the events it printed.

    Asynchronous, so a wsfast server in the test's own event loop keeps serving meanwhile.
    """
    node = ensure_node_modules()
    script = {"steps": steps, "timeout": timeout * timeout_factor(), "options": options or {}}
    proc = await asyncio.create_subprocess_exec(
        node,
        str(INTEROP_DIR / "client.js"),
        url,
        json.dumps(script),
        cwd=INTEROP_DIR,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout * timeout_factor() + 10)
    except asyncio.TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise AssertionError(f"node client did not finish against {url}") from None
    events = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    if proc.returncode != 0:
        raise AssertionError(
            f"node client exited with {proc.returncode}: {events} {err.decode(errors='replace')}"
        )
    return events


async def wait_listening(wss: Any, timeout: float = 20.0) -> int:
    """Waits until a wsfast ``WebSocketServer`` is bound and returns its port ('listening' may
    have fired before a listener could be added, so the address is polled as well)."""
    loop = asyncio.get_running_loop()
    listening: asyncio.Future[None] = loop.create_future()

    def settle(exc: BaseException | None = None) -> None:
        if not listening.done():
            if exc is None:
                listening.set_result(None)
            else:
                listening.set_exception(exc)

    wss.on("listening", settle)
    wss.on("error", settle)
    deadline = loop.time() + timeout * timeout_factor()
    while not listening.done():
        try:
            if wss.address()[1]:
                break
        except Exception:
            pass
        if loop.time() > deadline:
            raise AssertionError("wsfast server did not listen")
        await asyncio.wait([listening], timeout=0.02)
    port: int = wss.address()[1]
    return port

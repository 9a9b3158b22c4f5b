"""N worker processes serving one port: the recipe behind ``wsfast serve --workers N``.

The parent binds the port (:func:`listen`) and forks the workers. On Linux each worker opens
its own listening socket on that port with ``SO_REUSEPORT`` and the kernel spreads connections
among them by hash; elsewhere (macOS, the BSDs, where ``SO_REUSEPORT`` does not balance) the
workers share the parent's listening socket. The parent accepts nothing and only supervises.
Topics reach the clients of every worker through a backplane (``backplane="redis://..."``):
the workers share nothing else.

Shutdown: SIGINT or SIGTERM to the parent is passed to every worker, which closes its server
and its clients (1001, going away) and exits; the parent waits for them, then kills what is
left after ``grace`` seconds. Ctrl+C in a terminal reaches the workers directly as well (same
process group): each stops once either way.

```python
import wsfast
from wsfast.workers import listen, run_workers, stopped

async def worker(sock, index, ready):
    server = wsfast.WebSocketServer(sock=sock, backplane="redis://127.0.0.1:6379/0")
    server.on("connection", lambda ws, request: server.subscribe(ws, "chat"))
    await server.wait_listening()
    ready()                # the parent's on_ready() runs once every worker called this
    await stopped()        # SIGINT/SIGTERM
    ...                           # close the clients, then the server

run_workers(worker, 2, listen("127.0.0.1", 8080))
```
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["run_workers", "listen", "stopped", "BACKLOG"]

#: The listen backlog of the workers' sockets (asyncio's default is 100; a burst of
#: reconnecting clients after a restart overflows that).
BACKLOG = 2048

Worker = Callable[[socket.socket, int, Callable[[], None]], Coroutine[Any, Any, "int | None"]]


def listen(
    host: str | None, port: int, *, reuse_port: bool | None = None, backlog: int = BACKLOG
) -> socket.socket:
    """The socket to hand :func:`run_workers` (IPv4 or IPv6 by ``host``; None for every
    address, dual-stack where the system has it).

    With ``reuse_port`` (the default on Linux) it is bound with ``SO_REUSEPORT`` and does not
    listen: it holds the port (port 0 picks one) and each worker opens its own listening socket
    on it, among which the kernel spreads connections by a hash of their addresses. Without,
    it is one listening socket that the workers share; then whichever worker's loop wakes first
    accepts, which on an idle machine gave one worker 199 connections in a row here.
    """
    if reuse_port is None:
        reuse_port = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
    dualstack = host in (None, "", "::") and socket.has_dualstack_ipv6()
    family = socket.AF_INET6 if dualstack or (host and ":" in host) else socket.AF_INET
    if not reuse_port:
        return socket.create_server(
            (host or "", port), family=family, dualstack_ipv6=dualstack, backlog=backlog
        )
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if dualstack:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host or "", port))
    except BaseException:
        sock.close()
        raise
    return sock


def _listener(sock: socket.socket, backlog: int) -> socket.socket:
    """The socket a worker accepts from: ``sock`` itself if it listens (shared), else a new
    listening socket on its address with ``SO_REUSEPORT``."""
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        return sock
    own = socket.socket(sock.family, socket.SOCK_STREAM)
    own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if sock.family == socket.AF_INET6:
        own.setsockopt(
            socket.IPPROTO_IPV6,
            socket.IPV6_V6ONLY,
            sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY),
        )
    own.bind(sock.getsockname()[:2])
    own.listen(backlog)
    sock.close()
    return own


async def stopped() -> None:
    """Return once this process receives SIGINT or SIGTERM (in a worker's event loop)."""
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def resolve() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, resolve)
    await stop


def run_workers(
    worker: Worker,
    workers: int,
    sock: socket.socket,
    *,
    on_ready: Callable[[], None] | None = None,
    grace: float = 10.0,
) -> int:
    """Fork ``workers`` processes that each run ``asyncio.run(worker(sock, index, ready))``.

    ``ready()`` tells the parent that this worker is serving; once all did, ``on_ready()`` runs
    in the parent. Returns 0 when every worker exited with 0 (after a signal, or by itself),
    else 1. Call it before any event loop runs in this process: a forked child must not
    inherit a running loop.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if not hasattr(os, "fork"):
        raise RuntimeError("worker processes need os.fork (Linux, macOS, the BSDs)")
    read_end, write_end = os.pipe()
    # Held open by the parent alone: a worker sees EOF on it when the parent dies (even by
    # SIGKILL) and stops instead of serving on as an orphan.
    alive_read, alive_write = os.pipe()
    pids: list[int] = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, measured by the tests' processes
            os.close(read_end)
            os.close(alive_write)
            _child(worker, sock, index, write_end, alive_read)
        pids.append(pid)
    os.close(write_end)
    os.close(alive_read)
    stopping = False

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        ready = 0
        while ready < workers:
            chunk = os.read(read_end, workers - ready)
            if not chunk:  # every worker closed the pipe: some died before being ready
                break
            ready += len(chunk)
        if ready == workers and on_ready is not None:
            on_ready()
        status = 0
        deadline: float | None = None
        remaining = set(pids)
        while remaining:
            if stopping and deadline is None:
                deadline = time.monotonic() + grace
            if deadline is not None and time.monotonic() > deadline:
                for pid in remaining:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            pid, code = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                time.sleep(0.05)
                continue
            if pid in remaining:
                remaining.discard(pid)
                exit_code = os.waitstatus_to_exitcode(code)
                if exit_code != 0:
                    status = 1
                    print(
                        f"wsfast: worker {pid} exited with {exit_code}", file=sys.stderr, flush=True
                    )
                if not stopping:
                    # One worker gone on its own: stop the others instead of serving less.
                    print(f"wsfast: worker {pid} exited; stopping", file=sys.stderr, flush=True)
                    forward(signal.SIGTERM, None)
        return status
    finally:
        os.close(read_end)
        os.close(alive_write)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _child(worker: Worker, sock: socket.socket, index: int, ready_fd: int, alive_fd: int) -> None:
    """The body of a forked worker: never returns."""
    code = 1
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)

        def ready() -> None:
            with contextlib.suppress(OSError):
                os.write(ready_fd, b"r")

        async def main() -> int | None:
            loop = asyncio.get_running_loop()

            def orphaned() -> None:  # the parent is gone: stop as on SIGTERM
                loop.remove_reader(alive_fd)
                os.kill(os.getpid(), signal.SIGTERM)

            loop.add_reader(alive_fd, orphaned)
            return await worker(sock, index, ready)

        sock = _listener(sock, BACKLOG)
        result: int | None = asyncio.run(main())
        code = 0 if result is None else int(result)
    except KeyboardInterrupt:
        code = 0
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

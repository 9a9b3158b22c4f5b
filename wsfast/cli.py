"""The ``wsfast`` command line: ``connect`` (like wscat), ``serve``, ``info`` and ``bench``.

``python -m wsfast`` and the ``wsfast`` console script both land in :func:`main`. Messages go
to stdout; status lines (connected, disconnected, errors) go to stderr, so the output of
``wsfast connect -x`` can be piped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import platform
import signal
import ssl
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .constants import DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT

__all__ = ["main", "build_parser"]

# How much of a binary message is shown as hex in the interactive client.
_HEX_PREVIEW = 32


def _status(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _show(data: Any) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, list):  # binary_type "fragments"
        data = b"".join(data)
    data = bytes(data)
    preview = data[:_HEX_PREVIEW].hex(" ")
    more = " ..." if len(data) > _HEX_PREVIEW else ""
    return f"<binary, {len(data)} bytes: {preview}{more}>"


def _parse_headers(values: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep or not name.strip():
            raise SystemExit(f'wsfast: invalid header {value!r} (expected "Name: value")')
        headers[name.strip()] = rest.strip()
    return headers


# -- connect ---------------------------------------------------------------------------------


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Read stdin in a daemon thread: works for ttys, pipes and files alike, never blocks exit."""

    def run() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\r\n"))
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=run, name="wsfast-stdin", daemon=True).start()


async def _connect(args: argparse.Namespace) -> int:
    import wsfast

    options: dict[str, Any] = {
        "headers": _parse_headers(args.header or []),
        "per_message_deflate": not args.no_deflate,
        "handshake_timeout": args.timeout,
        "ping_interval": args.ping_interval or None,
        "ping_timeout": args.ping_timeout or None,
    }
    if args.subprotocol:
        options["protocols"] = args.subprotocol
    if args.origin:
        options["origin"] = args.origin
    if args.no_check:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        options["ssl"] = context
    # As wsfast.connect(): the proxy from the environment unless --proxy or --no-proxy says.
    options["proxy"] = None if args.no_proxy else args.proxy or True
    try:
        ws = wsfast.WebSocket(args.url, options.pop("protocols", None), **options)
    except (ValueError, TypeError) as exc:
        _status(f"error: {exc}")
        return 2
    loop = asyncio.get_running_loop()
    failed: list[BaseException] = []
    received = 0
    ws.on("error", failed.append)

    def on_message(data: Any, is_binary: bool) -> None:
        nonlocal received
        received += 1
        if args.execute is not None:
            print(_show(data), flush=True)  # as wscat -x: each message, bare
            return
        print(f"< {_show(data)}", flush=True)

    ws.on("message", on_message)
    if args.show_ping_pong:
        ws.on("ping", lambda data: print(f"< ping {_show(data)}", flush=True))
        ws.on("pong", lambda data: print(f"< pong {_show(data)}", flush=True))
    try:
        await ws.wait_open()
    except Exception as exc:
        _status(f"error: could not connect to {args.url}: {exc}")
        return 1
    if args.execute is not None:
        # As wscat: send, print every message received during the wait (or until the server
        # closes), then close.
        ws.send(args.execute)
        closed = asyncio.ensure_future(ws.wait_closed())
        await asyncio.wait({closed}, timeout=args.wait)
        code = 0
        if failed:
            _status(f"error: {failed[0]}")
            code = 1
        elif not received and closed.done():
            _status(f"error: connection closed before a reply (code {ws.close_code})")
            code = 1
        elif not received:
            _status(f"error: no reply within {args.wait:g} s")
            code = 1
        if ws.ready_state == ws.OPEN:
            ws.close(1000)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ws.wait_closed(), 5)
        closed.cancel()
        return code

    extras = f", subprotocol {ws.protocol}" if ws.protocol else ""
    extras += f", extensions {ws.extensions}" if ws.extensions else ""
    _status(f"connected to {args.url}{extras} (press CTRL+D or CTRL+C to quit)")
    ws.on(
        "close",
        lambda code, reason: _status(
            f"disconnected (code: {code}{', reason: ' + reason if reason else ''})"
        ),
    )
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    _stdin_lines(loop, lines)
    closed = asyncio.ensure_future(ws.wait_closed())
    while not closed.done():
        getter = asyncio.ensure_future(lines.get())
        await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            getter.cancel()
            break
        line = getter.result()
        if line is None:  # end of stdin: close normally, as wscat does
            if ws.ready_state == ws.OPEN:
                ws.close(1000)
            break
        if ws.ready_state != ws.OPEN:
            break
        if args.slash and line.startswith("/"):
            _slash(ws, line)
        else:
            ws.send(line)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(closed), 10)
    if failed:
        _status(f"error: {failed[0]}")
        return 1
    return 0


def _slash(ws: Any, line: str) -> None:
    command, _, rest = line[1:].partition(" ")
    if command == "ping":
        ws.ping(rest.encode())
    elif command == "pong":
        ws.pong(rest.encode())
    elif command == "close":
        code_text, _, reason = rest.partition(" ")
        ws.close(int(code_text) if code_text else 1000, reason)
    else:
        _status(f"unknown command /{command} (known: /ping, /pong, /close [code [reason]])")


# -- serve -----------------------------------------------------------------------------------


async def _serve(
    args: argparse.Namespace,
    sock: Any = None,
    ready: Callable[[], None] | None = None,
) -> int:
    import wsfast

    where: dict[str, Any] = {"sock": sock} if sock is not None else {"port": args.port}
    server = wsfast.WebSocketServer(
        host=None if sock is not None else args.host,
        per_message_deflate=bool(args.deflate),
        ping_interval=args.ping_interval or None,
        ping_timeout=args.ping_timeout or None,
        backplane=args.backplane,
        **where,
    )
    backplane_ready = asyncio.get_running_loop().create_future()

    def on_backplane(connected: bool, error: BaseException | None) -> None:
        if not backplane_ready.done():
            backplane_ready.set_result(None)
        if connected:
            _status(f"backplane connected: {args.backplane}")
        else:
            _status(f"backplane lost ({error}); local clients still served, retrying")

    if args.backplane:
        server.on("backplane", on_backplane)

    def on_connection(ws: wsfast.WebSocket, request: Any) -> None:
        peer = request.remote_address
        if args.verbose:
            _status(f"connection from {peer[0] if peer else '?'}")
        if args.broadcast:
            # Every client on every worker and server sharing the backplane.
            server.subscribe(ws, _BROADCAST_TOPIC)

            def on_message(data: Any, is_binary: bool) -> None:
                server.publish(_BROADCAST_TOPIC, data, binary=is_binary)

        else:

            def on_message(data: Any, is_binary: bool) -> None:
                ws.send(data, binary=is_binary)

        ws.on("message", on_message)
        if args.verbose:
            ws.on("error", lambda exc: _status(f"error: {exc}"))
        else:
            ws.on("error", lambda exc: None)
        if args.verbose:
            ws.on("close", lambda code, reason: _status(f"closed {code} {reason}".rstrip()))

    server.on("connection", on_connection)
    server.on("error", lambda exc: None)
    try:
        await server.wait_listening()
    except OSError as exc:
        _status(f"error: cannot listen on {args.host}:{args.port}: {exc}")
        return 1
    if args.backplane:
        # Ready once Redis answered or failed once: either way local clients are served.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(backplane_ready), 10)
    if ready is not None:
        ready()
    else:
        print(f"listening on {_ws_url(server.address())} ({_mode(args)})", flush=True)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(sig, _resolve, stop)
    await asyncio.wait(
        {stop, asyncio.ensure_future(server.serve_forever())}, return_when=asyncio.FIRST_COMPLETED
    )
    closing = server.close()
    for client in list(server.clients):
        client.close(1001)
    if server.clients:
        await asyncio.wait(
            [asyncio.ensure_future(c.wait_closed()) for c in server.clients], timeout=5
        )
    await closing
    return 0


# The topic of ``serve --broadcast``: every client subscribes to it.
_BROADCAST_TOPIC = "wsfast:broadcast"


def _ws_url(address: Any) -> str:
    host, port = address[0], address[1]
    shown = f"[{host}]" if ":" in host else host
    return f"ws://{shown}:{port}"


def _mode(args: argparse.Namespace) -> str:
    mode = "broadcast" if args.broadcast else "echo"
    if args.workers > 1:
        mode += f", {args.workers} workers"
    if args.backplane:
        mode += f", backplane {args.backplane}"
    return mode


def _serve_workers(args: argparse.Namespace) -> int:
    """``serve --workers N``: N forked processes accepting from one listening socket."""
    from .workers import listen, run_workers

    if args.broadcast and not args.backplane:
        _status("warning: --broadcast without --backplane reaches the clients of one worker only")
    try:
        sock = listen(args.host, args.port)
    except OSError as exc:
        _status(f"error: cannot listen on {args.host}:{args.port}: {exc}")
        return 1
    address = sock.getsockname()

    def on_ready() -> None:
        print(f"listening on {_ws_url(address)} ({_mode(args)})", flush=True)

    async def worker(sock: Any, index: int, ready: Callable[[], None]) -> int:
        return await _serve(args, sock, ready)

    try:
        return run_workers(worker, args.workers, sock, on_ready=on_ready)
    finally:
        sock.close()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# -- info and bench --------------------------------------------------------------------------


def _info() -> int:
    import wsfast

    print(f"wsfast {wsfast.__version__}")
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}) "
        f"on {platform.system()} {platform.machine()}"
    )
    broken = []
    for name, status in wsfast.speedups_status().items():
        print(f"speedup {name}: {status.detail}")
        if status.state == "no-native-module":
            broken.append(status.distribution)
    if broken:
        _status(
            f"warning: {', '.join(broken)} installed without the native module: see above "
            "(wsfast works, on its slower pure-Python fallback)"
        )
    from .permessage_deflate import ZLIB_BACKEND

    print(f"permessage-deflate: {ZLIB_BACKEND} (zlib-ng when installed, unless WSFAST_NO_ZLIB_NG)")
    try:
        uvloop = importlib.import_module("uvloop")
        print(f"uvloop {getattr(uvloop, '__version__', '?')}: available")
    except ImportError:
        print("uvloop: not installed")
    return 0


_BENCHES = (
    ("wsfast._bench_speedups", "the speedups against the pure-Python fallback"),
    ("wsfast._bench_echo", "an echo round trip over loopback"),
)


def _bench() -> int:
    ran = 0
    for module_name, what in _BENCHES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if exc.name == module_name or module_name.startswith(f"{exc.name}."):
                _status(f"note: skipped {what}: {module_name} is not part of this installation")
            else:  # the module exists but needs something that is missing
                _status(f"note: skipped {what}: {module_name} could not be imported ({exc})")
            continue
        print(f"== {what} ({module_name})", flush=True)
        result = module.run()
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        ran += 1
    return 0 if ran else 1


async def _await(awaitable: Any) -> Any:
    return await awaitable


# -- entry point -----------------------------------------------------------------------------


def _version() -> str:
    from . import __version__

    return __version__


def _keepalive_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ping-interval",
        type=float,
        default=DEFAULT_PING_INTERVAL,
        metavar="SECONDS",
        help=f"send a ping every SECONDS (default {DEFAULT_PING_INTERVAL:g}; 0: never)",
    )
    p.add_argument(
        "--ping-timeout",
        type=float,
        default=DEFAULT_PING_TIMEOUT,
        metavar="SECONDS",
        help=(
            "drop the connection when a ping's pong is later than SECONDS "
            f"(default {DEFAULT_PING_TIMEOUT:g}; 0: wait for ever)"
        ),
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``wsfast`` command."""
    parser = argparse.ArgumentParser(
        prog="wsfast", description="wsfast: WebSocket client and server on the command line"
    )
    parser.add_argument("--version", action="version", version=f"wsfast {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("connect", help="connect to a WebSocket server (interactive, like wscat)")
    p.add_argument("url", help="ws://, wss:// or ws+unix:// URL")
    p.add_argument(
        "-H",
        "--header",
        action="append",
        metavar='"NAME: VALUE"',
        help="an extra request header (repeatable)",
    )
    p.add_argument(
        "-s",
        "--subprotocol",
        action="append",
        metavar="PROTOCOL",
        help="a subprotocol to offer (repeatable)",
    )
    p.add_argument("-o", "--origin", help="the Origin header")
    p.add_argument(
        "-x",
        "--execute",
        metavar="MESSAGE",
        help="send MESSAGE, print the messages received during --wait, then close",
    )
    p.add_argument(
        "-w",
        "--wait",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="with -x: print every message received for SECONDS, then close (default 2)",
    )
    p.add_argument(
        "-P",
        "--ping",
        "--show-ping-pong",
        dest="show_ping_pong",
        action="store_true",
        help="print pings and pongs received",
    )
    p.add_argument(
        "--slash",
        action="store_true",
        help="enable /ping, /pong and /close [code [reason]] commands",
    )
    p.add_argument(
        "-n",
        "--no-check",
        action="store_true",
        help="do not verify the server's TLS certificate (self-signed certificates)",
    )
    p.add_argument("--no-deflate", action="store_true", help="do not offer permessage-deflate")
    proxy = p.add_mutually_exclusive_group()
    proxy.add_argument(
        "--proxy",
        metavar="URL",
        help="connect through this proxy: http://, https://, socks4://, socks4a://, socks5:// or "
        "socks5h:// (remote DNS), with user:password@ when it wants credentials; SOCKS needs "
        'pip install "wsfast[socks]" (default: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and '
        "NO_PROXY from the environment, as wsfast.connect)",
    )
    proxy.add_argument(
        "--no-proxy", action="store_true", help="connect directly, whatever the environment says"
    )
    p.add_argument(
        "-t",
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="opening handshake timeout (default 10)",
    )
    _keepalive_arguments(p)

    p = sub.add_parser("serve", help="run an echo (or broadcast) server")
    p.add_argument("-p", "--port", type=int, default=8080, help="port (default 8080, 0: any)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    p.add_argument(
        "-b",
        "--broadcast",
        action="store_true",
        help="send every message to every client instead of echoing it",
    )
    p.add_argument("--deflate", action="store_true", help="accept permessage-deflate")
    p.add_argument("-v", "--verbose", action="store_true", help="log connections to stderr")
    p.add_argument(
        "-w",
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N processes sharing the port (default 1); with --broadcast, use --backplane",
    )
    p.add_argument(
        "--backplane",
        metavar="URL",
        help="join topics with other workers and servers through Redis (redis://host:6379/0; "
        "needs pip install wsfast[redis])",
    )
    _keepalive_arguments(p)

    sub.add_parser("info", help="versions and the active speedups")
    sub.add_parser("bench", help="the speedups against the fallback, and an echo round trip")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    if args.command == "info":
        return _info()
    if args.command == "bench":
        return _bench()
    if args.command == "serve" and args.workers != 1:
        if args.workers < 1:
            _status("error: --workers must be at least 1")
            return 2
        return _serve_workers(args)
    runner = _connect if args.command == "connect" else _serve
    try:
        return asyncio.run(runner(args))
    except KeyboardInterrupt:
        return 130

"""The command line (``python -m wsfast``), run as subprocesses against real loopback peers."""

from __future__ import annotations

import asyncio
import importlib
import io
import os
import re
import shutil
import ssl
import subprocess
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import scaled, url_of, wait_for
from test_proxy import _free_port, microsocks  # noqa: F401  (the fixture factory, by name)

import wsfast

ROOT = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m wsfast ARGS`` to completion (blocking: only for peers in other processes)."""
    return subprocess.run(
        [sys.executable, "-m", "wsfast", *args],
        capture_output=True,
        text=True,
        timeout=scaled(timeout),
        env=_env(**env),
        cwd=ROOT,
    )


async def spawn(*args: str) -> asyncio.subprocess.Process:
    """``python -m wsfast ARGS`` as an asyncio subprocess with piped stdin, stdout and stderr."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wsfast",
        *args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
        cwd=ROOT,
    )


async def acli(*args: str, stdin: bytes | None = None, timeout: float = 30) -> tuple[int, str, str]:
    """``python -m wsfast ARGS`` without blocking the loop (for peers in this process)."""
    proc = await spawn(*args)
    out, err = await wait_for(proc.communicate(stdin or b""), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class ServeProcess:
    """A ``wsfast serve`` subprocess on a free port."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str) -> None:
        self.proc = proc
        self.url = url


@pytest.fixture
async def serve_cli() -> AsyncIterator[Any]:
    procs: list[asyncio.subprocess.Process] = []

    async def start(*args: str) -> ServeProcess:
        proc = await spawn("serve", "--port", "0", *args)
        procs.append(proc)
        assert proc.stdout is not None
        line = (await wait_for(proc.stdout.readline(), 20)).decode()
        match = re.match(r"listening on (ws://\S+:\d+) \((echo|broadcast)\)", line)
        assert match, line
        return ServeProcess(proc, match.group(1))

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.terminate()
            await wait_for(proc.wait(), 10)


def test_info() -> None:
    result = run_cli("info")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"wsfast {wsfast.__version__}" in out
    assert re.search(r"^python \d+\.\d+", out, re.M)
    for name in ("bufferutil", "utf8validate"):
        version = wsfast.speedups()[name]
        line = re.search(rf"^speedup {name}: (.*)$", out, re.M)
        assert line, out
        if version:
            assert version in line.group(1)
        else:
            assert "pure-Python fallback" in line.group(1)


def test_info_says_a_speedup_was_switched_off() -> None:
    result = run_cli("info", WSFAST_NO_BUFFER_UTIL="1", WSFAST_NO_UTF_8_VALIDATE="1")
    assert result.returncode == 0
    assert (
        "speedup bufferutil: pure-Python fallback (WSFAST_NO_BUFFER_UTIL is set)" in result.stdout
    )
    assert (
        "speedup utf8validate: pure-Python fallback (WSFAST_NO_UTF_8_VALIDATE is set)"
        in result.stdout
    )


def test_info_names_the_zlib_in_use() -> None:
    from wsfast.permessage_deflate import ZLIB_BACKEND

    result = run_cli("info")
    assert result.returncode == 0, result.stderr
    assert f"permessage-deflate: {ZLIB_BACKEND} " in result.stdout
    off = run_cli("info", WSFAST_NO_ZLIB_NG="1")
    assert re.search(r"^permessage-deflate: zlib \d", off.stdout, re.M), off.stdout


def test_zlib_ng_is_used_when_installed() -> None:
    # wsfast[speedups] brings zlib-ng; the switch keeps the standard module.
    import importlib.util

    from wsfast import permessage_deflate

    installed = importlib.util.find_spec("zlib_ng") is not None
    switched_off = bool(os.environ.get("WSFAST_NO_ZLIB_NG"))
    expected = "zlib-ng " if installed and not switched_off else "zlib "
    assert permessage_deflate.ZLIB_BACKEND.startswith(expected)
    if os.environ.get("WSFAST_EXPECT_SPEEDUPS") == "1" and not switched_off:
        assert installed, "WSFAST_EXPECT_SPEEDUPS=1 but zlib-ng (wsfast[speedups]) is missing"


def test_help_and_missing_command() -> None:
    assert run_cli("--help").returncode == 0
    result = run_cli()
    assert result.returncode == 2 and "COMMAND" in result.stderr


def _bench_with(stubs: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    # Modules of other developers are stubbed (a str: a module whose run() prints it; None:
    # missing), so the test does not depend on them nor run a real benchmark.
    code = (
        "import sys, types\n"
        f"for name, text in {stubs!r}.items():\n"
        "    if text is None:\n"
        "        sys.modules[name] = None\n"
        "    else:\n"
        "        m = types.ModuleType(name)\n"
        "        m.run = (lambda t: lambda: print(t))(text)\n"
        "        sys.modules[name] = m\n"
        "from wsfast.__main__ import main\n"
        "sys.exit(main(['bench']))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60
    )


def test_bench_runs_both_modules() -> None:
    result = _bench_with({"wsfast._bench_speedups": "SPEEDUPS RAN", "wsfast._bench_echo": "ECHO"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.index("SPEEDUPS RAN") < result.stdout.index("ECHO")
    assert "note" not in result.stderr


def test_bench_notes_a_missing_module() -> None:
    result = _bench_with({"wsfast._bench_speedups": None, "wsfast._bench_echo": "ECHO RAN"})
    assert result.returncode == 0
    assert "ECHO RAN" in result.stdout
    assert "note: skipped" in result.stderr and "wsfast._bench_speedups" in result.stderr
    result = _bench_with({"wsfast._bench_speedups": None, "wsfast._bench_echo": None})
    assert result.returncode == 1
    assert result.stderr.count("note: skipped") == 2


async def test_serve_and_connect_execute_round_trip(serve_cli: Any) -> None:
    server = await serve_cli()
    code, out, err = await acli("connect", server.url, "-x", "hello wsfast")
    assert (code, out) == (0, "hello wsfast\n"), err
    # Also with compression offered and accepted.
    server = await serve_cli("--deflate")
    async with wsfast.connect(server.url) as ws:
        assert ws.extensions == "permessage-deflate"
    code, out, err = await acli("connect", server.url, "-x", "x" * 1000)
    assert (code, out) == (0, "x" * 1000 + "\n"), err


async def test_interactive_connect_reads_stdin_lines(serve_cli: Any) -> None:
    server = await serve_cli()
    code, out, err = await acli("connect", server.url, stdin=b"first line\nsecond\n")
    assert code == 0, err
    assert out.splitlines() == ["< first line", "< second"]
    assert "connected to" in err and "disconnected (code: 1000)" in err


async def test_serve_broadcast(serve_cli: Any) -> None:
    server = await serve_cli("--broadcast")
    async with wsfast.connect(server.url) as a, wsfast.connect(server.url) as b:
        await a.send("to everyone")
        assert await wait_for(a.recv()) == "to everyone"
        assert await wait_for(b.recv()) == "to everyone"
        await b.send(b"\x00\x01")
        assert await wait_for(a.recv()) == b"\x00\x01"


async def test_connect_sends_headers_and_subprotocols(make_server: Any) -> None:
    server = await make_server(handle_protocols=lambda protocols, request: protocols[-1])
    seen: dict[str, Any] = {}

    def on_connection(ws: wsfast.WebSocket, request: Any) -> None:
        seen["headers"] = request.headers
        seen["protocol"] = ws.protocol
        ws.on("message", lambda data, is_binary: ws.send(f"{data} via {ws.protocol}"))

    server.on("connection", on_connection)
    code, out, err = await acli(
        "connect",
        url_of(server),
        "-H",
        "X-Token: abc 123",
        "--header",
        "X-Other:two",
        "-s",
        "chat",
        "-s",
        "superchat",
        "-o",
        "https://example.test",
        "-x",
        "hi",
    )
    assert (code, out) == (0, "hi via superchat\n"), err
    assert seen["headers"]["x-token"] == "abc 123" and seen["headers"]["x-other"] == "two"
    assert seen["headers"]["origin"] == "https://example.test"
    offered = seen["headers"]["sec-websocket-protocol"].split(",")
    assert [p.strip() for p in offered] == ["chat", "superchat"]


@pytest.fixture(scope="module")
def cli_socks(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("microsocks")("cli", "cli user", "pa:ss")


async def test_connect_through_a_proxy(make_server: Any, cli_socks: Any) -> None:
    server = await make_server()
    server.on("connection", lambda ws, req: ws.on("message", lambda data, b: ws.send(data)))
    # socks5h, and the name resolved by the proxy; credentials percent-encoded in the URL.
    url = url_of(server).replace("127.0.0.1", "localhost")
    proxy = cli_socks.url.replace("socks5://", "socks5h://")
    code, out, err = await acli("connect", url, "--proxy", proxy, "-x", "hi")
    assert (code, out) == (0, "hi\n"), err
    refused = proxy.replace("pa%3Ass", "wrong")
    code, out, err = await acli("connect", url, "--proxy", refused, "-x", "hi")
    assert code == 1 and "The SOCKS proxy" in err and "authentication failure" in err, err
    assert "Traceback" not in err and "wrong" not in err
    down = f"http://127.0.0.1:{_free_port()}"
    code, out, err = await acli("connect", url, "--proxy", down, "-x", "hi")
    assert code == 1 and "Cannot reach the proxy" in err and "Traceback" not in err
    code, out, err = await acli("connect", url_of(server), "--no-proxy", "-x", "hi")
    assert (code, out) == (0, "hi\n"), err
    code, out, err = await acli("connect", url, "--no-proxy", "--proxy", down, "-x", "hi")
    assert code == 2 and "not allowed with" in err
    result = run_cli("connect", "--help")
    assert "socks5h://" in result.stdout and "--no-proxy" in result.stdout


async def test_connect_shows_pings_and_slash_commands(make_server: Any) -> None:
    server = await make_server()
    closed: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
    pongs: list[bytes] = []

    def on_connection(ws: wsfast.WebSocket, request: Any) -> None:
        ws.ping(b"are you there")
        ws.on("ping", lambda data: ws.send(f"pinged {data.decode()}"))
        ws.on("pong", pongs.append)
        ws.on("close", lambda code, reason: closed.set_result((code, reason)))

    server.on("connection", on_connection)
    proc = await spawn("connect", url_of(server), "-P", "--slash")
    assert proc.stdin is not None and proc.stdout is not None
    line = await wait_for(proc.stdout.readline(), 20)
    assert (
        line.decode().rstrip("\n") == "< ping <binary, 13 bytes: " + b"are you there".hex(" ") + ">"
    )
    proc.stdin.write(b"/ping knock\n")
    try:
        lines = [(await wait_for(proc.stdout.readline(), 20)).decode() for _ in range(2)]
        # The server's automatic pong comes before the message its 'ping' listener sends.
        assert lines == ["< pong <binary, 5 bytes: 6b 6e 6f 63 6b>\n", "< pinged knock\n"]
        proc.stdin.write(b"/nope\n/close 4000 bye now\n")
        await proc.stdin.drain()
        assert await wait_for(closed, 20) == (4000, "bye now")
        proc.stdin.close()
        out, err = await wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err
    assert "unknown command /nope" in err.decode()
    assert "disconnected (code: 4000, reason: bye now)" in err.decode()


async def test_connect_to_a_closed_port_fails_clearly() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    code, out, err = await acli("connect", f"ws://127.0.0.1:{port}/", "-x", "hi")
    assert code != 0 and out == ""
    assert f"error: could not connect to ws://127.0.0.1:{port}/" in err
    assert "Traceback" not in err
    code, out, err = await acli("connect", f"ws://127.0.0.1:{port}/")  # interactive too
    assert code != 0 and "could not connect" in err and "Traceback" not in err


async def test_connect_reports_refused_handshake_and_bad_input(make_server: Any) -> None:
    server = await make_server(verify_client=lambda info: (False, 403, "Forbidden"))
    code, out, err = await acli("connect", url_of(server), "-x", "hi")
    assert code == 1 and "403" in err and "Traceback" not in err
    code, out, err = await acli("connect", "http//not a url", "-x", "hi")
    assert code == 2 and err.startswith("error:") and "Traceback" not in err
    code, out, err = await acli("connect", url_of(server), "-H", "no colon", "-x", "hi")
    assert code != 0 and "invalid header" in err


async def test_connect_execute_without_reply(make_server: Any) -> None:
    server = await make_server()
    server.on("connection", lambda ws, request: None)  # never answers
    code, out, err = await acli("connect", url_of(server), "-x", "hi", "-w", "0.3")
    assert code == 1 and "no reply within 0.3 s" in err
    server2 = await make_server()
    server2.on("connection", lambda ws, request: ws.on("message", lambda *a: ws.close(4001)))
    code, out, err = await acli("connect", url_of(server2), "-x", "hi")
    assert code == 1 and "closed before a reply (code 4001)" in err


async def test_connect_execute_prints_every_message_of_the_wait(make_server: Any) -> None:
    server = await make_server()

    def on_connection(ws: Any, request: Any) -> None:
        def answer(data: Any, is_binary: bool) -> None:
            for n in range(3):
                ws.send(f"{data} #{n}")

        ws.on("message", answer)

    server.on("connection", on_connection)
    code, out, err = await acli("connect", url_of(server), "-x", "hi", "-w", "0.5")
    assert code == 0, err
    assert out.splitlines() == ["hi #0", "hi #1", "hi #2"]


def test_version() -> None:
    import wsfast

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"wsfast {wsfast.__version__}"


async def test_serve_port_in_use_fails_clearly(make_server: Any) -> None:
    server = await make_server()
    host, port = server.address()
    code, out, err = await acli("serve", "--host", host, "--port", str(port))
    assert code == 1 and f"cannot listen on {host}:{port}" in err


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for localhost and 127.0.0.1: (cert, key) paths."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


NEEDS_OPENSSL = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@NEEDS_OPENSSL
async def test_no_check_accepts_a_self_signed_certificate(tmp_path: Path, make_server: Any) -> None:
    cert, key = self_signed_cert(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = await make_server(ssl=context)
    server.on("connection", lambda ws, req: ws.on("message", lambda d, b: ws.send(d)))
    host, port = server.address()
    url = f"wss://{host}:{port}/"
    code, out, err = await acli("connect", url, "-x", "secure")
    assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in err  # verification is on by default
    code, out, err = await acli("connect", url, "--no-check", "-x", "secure")
    assert (code, out) == (0, "secure\n"), err


def test_console_script_entry_point_resolves() -> None:
    import importlib

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module_name, _, attr = scripts["wsfast"].partition(":")
    entry = getattr(importlib.import_module(module_name), attr)
    assert entry(["info"]) == 0


# -- the same commands in this process (a worker thread runs their event loop) ----------------


async def test_in_process_execute_and_interactive(
    echo_server: wsfast.WebSocketServer, capsys: Any, monkeypatch: Any
) -> None:
    from wsfast import cli

    url = url_of(echo_server)
    code = await asyncio.to_thread(cli.main, ["connect", url, "-x", "in process", "--no-deflate"])
    assert code == 0 and capsys.readouterr().out == "in process\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO("one\ntwo\n"))
    code = await asyncio.to_thread(cli.main, ["connect", url, "-P", "-H", "X-A: b"])
    captured = capsys.readouterr()
    assert code == 0 and captured.out == "< one\n< two\n"
    assert "disconnected (code: 1000)" in captured.err


async def test_in_process_binary_and_failures(make_server: Any, capsys: Any) -> None:
    from wsfast import cli

    server = await make_server()
    server.on(
        "connection", lambda ws, request: ws.on("message", lambda d, b: ws.send(b"\x00" * 40))
    )
    code = await asyncio.to_thread(cli.main, ["connect", url_of(server), "-x", "binary please"])
    assert code == 0
    assert capsys.readouterr().out == "<binary, 40 bytes: " + " ".join(["00"] * 32) + " ...>\n"
    code = await asyncio.to_thread(cli.main, ["connect", "ftp://nope/", "-x", "hi"])
    assert code == 2 and "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        await asyncio.to_thread(cli.main, ["connect", url_of(server), "-H", "bad"])


def test_in_process_info_and_bench(capsys: Any, monkeypatch: Any) -> None:
    from wsfast import cli

    assert cli.main(["info"]) == 0
    assert "speedup bufferutil:" in capsys.readouterr().out
    echo = types.ModuleType("wsfast._bench_echo")

    async def run() -> None:
        print("async bench ran")

    echo.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wsfast._bench_echo", echo)
    monkeypatch.setitem(sys.modules, "wsfast._bench_speedups", None)
    assert cli.main(["bench"]) == 0
    captured = capsys.readouterr()
    assert "async bench ran" in captured.out and "note: skipped" in captured.err
    assert "is not part of this installation" in captured.err

    real_import = importlib.import_module

    def import_module(name: str) -> Any:
        if name == "wsfast._bench_speedups":  # present, but a dependency of it is missing
            raise ImportError("No module named 'picows'", name="picows")
        return real_import(name)

    monkeypatch.setattr(cli.importlib, "import_module", import_module)
    assert cli.main(["bench"]) == 0
    assert "could not be imported (No module named 'picows')" in capsys.readouterr().err

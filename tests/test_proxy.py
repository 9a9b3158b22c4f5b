"""The ``proxy=`` option against real proxies on 127.0.0.1 (issue 5; issue 10, section 4).

- tinyproxy: the ``http://`` CONNECT proxy. Its docs: "If no ConnectPort line is found, all
  ports are allowed", so the open proxies have none, and the refusing proxy allows only port
  443 (CONNECT elsewhere gets 403).
- microsocks: the SOCKS5 server (``socks5://``, ``socks5h://``), with and without
  ``-u user -P password``.
- pproxy (PyPI, in the ``test`` extra): ``socks4://`` and the ``https://`` proxy (HTTP CONNECT
  over TLS, ``http+ssl`` with a certificate of tests/certs.py).

Each test module run starts its own instances in the foreground and stops them by PID.
tinyproxy and microsocks are installed by ``tests/proxy_setup.sh`` (or here, with apt-get, when
running as root). Without a server its tests are skipped, except under CI (the ``CI`` variable
set), where a missing server fails them: .ci/run installs every one.
"""

from __future__ import annotations

import base64
import errno
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from certs import client_context, make_certs, server_context
from conftest import scaled
from test_transports import Events, echo_once, echo_server, raw_server, within, ws_url

import wsfast
from wsfast.proxy import ProxyError, connect_request, parse_proxy_url, select_proxy
from wsfast.url import parse_url

HERE = Path(__file__).parent


@dataclass
class Proxy:
    """A running tinyproxy: its URL (with credentials when it wants them) and its log."""

    url: str
    port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _missing(what: str) -> Any:
    """Skip the test, or fail it under CI, where every proxy server must be installed (on
    Windows there is no package of tinyproxy or microsocks: skipped there)."""
    message = f"{what} is not installed (run tests/proxy_setup.sh; pip install -e '.[test]')"
    if os.environ.get("CI") and sys.platform != "win32":
        pytest.fail(f"{message}: CI must install it (.ci/run, .github/workflows/ci.yml)")
    pytest.skip(message)


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _ensure_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None and _is_root() and shutil.which("apt-get"):
        subprocess.run(
            ["sh", str(HERE / "proxy_setup.sh")],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=600,
        )
        path = shutil.which(name)
    if path is None:
        _missing(name)
    assert path is not None
    return path


class _Servers:
    """Proxy server processes of one test module, each waited for on its port, stopped by PID."""

    def __init__(self, prefix: str) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix=prefix))
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], port: int, log: Path, what: str) -> None:
        with open(log, "ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self.processes.append(process)
        deadline = time.monotonic() + scaled(10)
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{what} did not start: {log.read_text(errors='replace')}")
                time.sleep(0.05)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def tinyproxy() -> Iterator[Any]:
    """A factory of tinyproxy instances: ``tinyproxy(name, *config_lines)``."""
    binary = _ensure_binary("tinyproxy")
    servers = _Servers("wsf-tinyproxy-")
    directory = servers.directory

    def start(name: str, *extra: str, credentials: str = "") -> Proxy:
        port = _free_port()
        log = directory / f"{name}.log"
        config = directory / f"{name}.conf"
        lines = [
            f"Port {port}",
            "Listen 127.0.0.1",
            "Timeout 30",
            "MaxClients 20",
            "Allow 127.0.0.1",
            f'LogFile "{log}"',
            "LogLevel Info",
            *extra,
        ]
        if _is_root():
            # As root tinyproxy drops privileges to this user; it must still write its log.
            lines += ["User nobody", "Group nogroup"]
            directory.chmod(0o777)
            log.touch()
            log.chmod(0o666)
        config.write_text("\n".join(lines) + "\n")
        # Its own log is the LogFile; what it prints goes to a side file.
        servers.start(
            [binary, "-d", "-c", str(config)], port, directory / f"{name}.out", "tinyproxy"
        )
        userinfo = f"{credentials}@" if credentials else ""
        return Proxy(f"http://{userinfo}127.0.0.1:{port}", port, log)

    yield start
    servers.stop()


@pytest.fixture(scope="module")
def microsocks() -> Iterator[Any]:
    """A factory of microsocks instances (SOCKS5): ``microsocks(name, user=..., password=...)``;
    the URL has the credentials percent-encoded."""
    binary = _ensure_binary("microsocks")
    servers = _Servers("wsf-microsocks-")

    def start(name: str, user: str = "", password: str = "", scheme: str = "socks5") -> Proxy:
        port = _free_port()
        log = servers.directory / f"{name}.log"
        argv = [binary, "-i", "127.0.0.1", "-p", str(port)]
        if user:
            argv += ["-u", user, "-P", password]
        servers.start(argv, port, log, "microsocks")
        userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user else ""
        return Proxy(f"{scheme}://{userinfo}127.0.0.1:{port}", port, log)

    yield start
    servers.stop()


# pproxy prefers uvloop when it is installed, whose get_event_loop() wants a loop set first;
# Python 3.14's asyncio wants one set too.
_PPROXY_MAIN = """
import asyncio, sys
sys.modules["uvloop"] = None
asyncio.set_event_loop(asyncio.new_event_loop())
from pproxy.server import main
sys.argv[0] = "pproxy"
main()
"""


@dataclass
class PProxy:
    """pproxy's listeners: ``socks4://`` and ``https://`` (its certificate: ``certs``)."""

    socks4: Proxy
    https: Proxy
    certs: Any


@pytest.fixture(scope="module")
def pproxy() -> Iterator[PProxy]:
    if importlib.util.find_spec("pproxy") is None:
        _missing("pproxy")
    servers = _Servers("wsf-pproxy-")
    certs = make_certs(servers.directory)
    socks4_port, https_port = _free_port(), _free_port()
    log = servers.directory / "pproxy.log"
    argv = [
        sys.executable,
        "-c",
        _PPROXY_MAIN,
        "-l",
        f"socks4://127.0.0.1:{socks4_port}",
        "-l",
        f"http+ssl://127.0.0.1:{https_port}",
        "--ssl",
        f"{certs.server_cert},{certs.server_key}",
        "-v",
    ]
    servers.start(argv, https_port, log, "pproxy")
    yield PProxy(
        Proxy(f"socks4://127.0.0.1:{socks4_port}", socks4_port, log),
        Proxy(f"https://127.0.0.1:{https_port}", https_port, log),
        certs,
    )
    servers.stop()


@pytest.fixture(scope="module")
def open_proxy(tinyproxy: Any) -> Proxy:
    proxy: Proxy = tinyproxy("open")
    return proxy


@pytest.fixture(scope="module")
def auth_proxy(tinyproxy: Any) -> Proxy:
    proxy: Proxy = tinyproxy("auth", "BasicAuth wsuser s3cr3t-pw", credentials="wsuser:s3cr3t-pw")
    return proxy


@pytest.fixture(scope="module")
def refusing_proxy(tinyproxy: Any) -> Proxy:
    proxy: Proxy = tinyproxy("refusing", "ConnectPort 443")
    return proxy


def test_connect_request_bytes() -> None:
    assert connect_request("127.0.0.1", 8080) == (
        b"CONNECT 127.0.0.1:8080 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
    )
    token = base64.b64encode(b"u:p@ss").decode()
    assert connect_request("::1", 443, "u:p%40ss") == (
        b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n"
        + f"Proxy-Authorization: Basic {token}\r\n\r\n".encode()
    )


async def test_ws_through_the_proxy(open_proxy: Proxy) -> None:
    async with echo_server() as server:
        port = server.address()[1]
        ws = wsfast.WebSocket(ws_url(server, "/via-proxy?x=1"), proxy=open_proxy.url)
        assert await echo_once(ws, "through tinyproxy") == "through tinyproxy"
        await ws.send(b"\xff" * 70000)
        assert await within(ws.recv()) == b"\xff" * 70000
        assert server.requests[0].path == "/via-proxy?x=1"  # type: ignore[attr-defined]
        ws.close()
        await within(ws.wait_closed())
        assert ws.close_code == 1005
    # The proxy saw the tunnel request: the connection really went through it.
    assert f"CONNECT 127.0.0.1:{port}" in open_proxy.log_text()


async def test_wss_through_the_proxy_with_tls_inside_the_tunnel(
    open_proxy: Proxy, tmp_path: Path
) -> None:
    certs = make_certs(tmp_path)
    async with echo_server(ssl=server_context(certs)) as server:
        port = server.address()[1]
        url = ws_url(server, "/secure", scheme="wss")
        ws = wsfast.WebSocket(url, proxy=open_proxy.url, ssl=client_context(certs))
        assert await echo_once(ws, "tls in a tunnel") == "tls in a tunnel"
        assert server.requests[0].secure is True  # type: ignore[attr-defined]
        assert ws.transport is not None
        assert ws.transport.get_extra_info("ssl_object") is not None
        ws.close()
        await within(ws.wait_closed())
    assert f"CONNECT 127.0.0.1:{port}" in open_proxy.log_text()


async def test_wss_through_the_proxy_still_verifies_the_server(
    open_proxy: Proxy, tmp_path: Path
) -> None:
    certs = make_certs(tmp_path)
    async with echo_server(ssl=server_context(certs)) as server:
        ws = wsfast.WebSocket(
            ws_url(server, scheme="wss"), proxy=open_proxy.url, ssl=client_context()
        )
        events = Events(ws)
        error = await events.failed()
        assert isinstance(error, OSError)
        assert "CERTIFICATE_VERIFY_FAILED" in str(error)
        assert not server.requests  # type: ignore[attr-defined]


async def test_proxy_credentials_are_sent(auth_proxy: Proxy) -> None:
    async with echo_server() as server:
        ws = wsfast.WebSocket(ws_url(server), proxy=auth_proxy.url)
        assert await echo_once(ws) == "hello"
        ws.close()
        await within(ws.wait_closed())
        # Proxy-Authorization is for the proxy: it never reaches the WebSocket server.
        assert "proxy-authorization" not in server.requests[0].headers  # type: ignore[attr-defined]


async def test_proxy_without_credentials_gets_407(auth_proxy: Proxy) -> None:
    async with echo_server() as server:
        bare = auth_proxy.url.replace("wsuser:s3cr3t-pw@", "")
        ws = wsfast.WebSocket(ws_url(server), proxy=bare)
        events = Events(ws)
        error = await events.failed()
        assert isinstance(error, ProxyError)
        assert error.http_status == 407
        assert str(error).startswith("Proxy refused the tunnel: 407")
        assert events.close_args[0] == 1006


async def test_proxy_that_refuses_the_port_gets_403(refusing_proxy: Proxy) -> None:
    async with echo_server() as server:
        ws = wsfast.WebSocket(ws_url(server), proxy=refusing_proxy.url)
        events = Events(ws)
        error = await events.failed()
        assert isinstance(error, ProxyError)
        assert isinstance(error, wsfast.HandshakeError)
        assert error.code == "WS_ERR_PROXY"
        assert error.http_status == 403
        assert "403" in str(error)
        assert ws.ready_state == wsfast.WebSocket.CLOSED
        assert not server.requests  # type: ignore[attr-defined]


@pytest.mark.parametrize("scheme", ["http", "https", "socks4", "socks5", "socks5h"])
async def test_unreachable_proxy_is_a_proxy_error_then_close(scheme: str) -> None:
    port = _free_port()
    ws = wsfast.WebSocket("ws://127.0.0.1:9/", proxy=f"{scheme}://u:secret@127.0.0.1:{port}")
    events = Events(ws)
    error = await events.failed()
    assert isinstance(error, ProxyError)
    assert str(error).startswith(f"Cannot reach the proxy 127.0.0.1:{port}: ")
    assert "secret" not in str(error)
    # The cause: the OSError, ECONNREFUSED (python-socks' ProxyConnectionError for SOCKS).
    assert isinstance(error.__cause__, OSError)
    assert error.__cause__.errno == errno.ECONNREFUSED
    assert events.close_args[0] == 1006


async def test_proxy_that_hangs_up_before_answering() -> None:
    async def hang_up(reader: Any, writer: Any) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 Conn")  # half a head, then the end
        await writer.drain()

    async with raw_server(hang_up) as port:
        ws = wsfast.WebSocket("ws://127.0.0.1:9/", proxy=f"http://127.0.0.1:{port}")
        error = await Events(ws).failed()
        assert isinstance(error, ProxyError)
        assert "closed the connection" in str(error)


async def test_proxy_that_answers_garbage() -> None:
    async def garbage(reader: Any, writer: Any) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await reader.read()

    async with raw_server(garbage) as port:
        ws = wsfast.WebSocket("ws://127.0.0.1:9/", proxy=f"http://127.0.0.1:{port}")
        error = await Events(ws).failed()
        assert isinstance(error, ProxyError)
        assert "Invalid response from the proxy" in str(error)


async def test_proxy_bytes_after_the_connect_answer_reach_the_handshake() -> None:
    # Bytes in the same segment as the proxy's 200 belong to the tunnel, not to the proxy's
    # answer: here a fake proxy sends the server's (unexpected) answer right behind its 200.
    async def eager(reader: Any, writer: Any) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"CONNECT 127.0.0.1:9 HTTP/1.1\r\n")
        writer.write(
            b"HTTP/1.1 200 Connection established\r\n\r\n"
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"
        )
        await reader.read()

    async with raw_server(eager) as port:
        ws = wsfast.WebSocket("ws://127.0.0.1:9/", proxy=f"http://127.0.0.1:{port}")
        error = await Events(ws).failed()
        assert isinstance(error, wsfast.HandshakeError)
        assert error.http_status == 503


async def test_unsupported_proxy_scheme() -> None:
    ws = wsfast.WebSocket("ws://127.0.0.1:9/", proxy="ftp://user:secret@127.0.0.1:21")
    error = await Events(ws).failed()
    assert isinstance(error, ValueError)
    assert "use http://, https://, socks4://, socks4a://, socks5://, socks5h://" in str(error)
    assert "secret" not in str(error)


@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_handshake_timeout_covers_a_proxy_that_never_answers(scheme: str) -> None:
    async def silent(reader: Any, writer: Any) -> None:
        await reader.read()

    async with raw_server(silent) as port:
        ws = wsfast.WebSocket(
            "ws://127.0.0.1:9/", proxy=f"{scheme}://127.0.0.1:{port}", handshake_timeout=0.2
        )
        error = await Events(ws).failed()
        assert isinstance(error, wsfast.WebSocketError)
        assert error.code == "WS_ERR_HANDSHAKE_TIMEOUT"


# -- proxy URLs and the environment (proxy=True) ----------------------------------------------


@pytest.mark.parametrize(
    "proxy_url, expected",
    [
        ("http://127.0.0.1", ("http", "127.0.0.1", 80, None, None)),
        ("HTTPS://proxy.example", ("https", "proxy.example", 443, None, None)),
        ("socks4://h:1081", ("socks4", "h", 1081, None, None)),
        ("socks4a://h", ("socks4a", "h", 1080, None, None)),
        ("socks5://u:p@h", ("socks5", "h", 1080, "u", "p")),
        ("socks5h://us%40er:p%3Aw%2Fd%20@[::1]:9050", ("socks5h", "::1", 9050, "us@er", "p:w/d ")),
        ("http://user@h:3128/", ("http", "h", 3128, "user", "")),
    ],
    ids=["http", "https", "socks4", "socks4a", "socks5", "socks5h-encoded", "user-only"],
)
def test_parse_proxy_url(proxy_url: str, expected: tuple[Any, ...]) -> None:
    proxy = parse_proxy_url(proxy_url)
    assert (proxy.scheme, proxy.host, proxy.port, proxy.username, proxy.password) == expected


_PROXY_VARIABLES = [
    f"{name}_proxy" for name in ("http", "https", "all", "no", "ws", "wss", "ftp")
] + ["REQUEST_METHOD"]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment without any proxy variable (a developer's own must not leak in)."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "env, url, expected",
    [
        ({}, "ws://example.com/", None),
        ({"HTTP_PROXY": "http://p:1"}, "ws://example.com/", "http://p:1"),
        ({"HTTP_PROXY": "http://p:1"}, "wss://example.com/", None),
        ({"HTTPS_PROXY": "http://p:2"}, "wss://example.com/", "http://p:2"),
        ({"HTTPS_PROXY": "http://p:2"}, "ws://example.com/", None),
        ({"ALL_PROXY": "socks5h://p:3"}, "ws://example.com/", "socks5h://p:3"),
        ({"ALL_PROXY": "socks5h://p:3"}, "wss://example.com/", "socks5h://p:3"),
        ({"ALL_PROXY": "socks5://p:3", "HTTPS_PROXY": "http://p:2"}, "wss://e.com/", "http://p:2"),
        ({"WSS_PROXY": "http://p:4", "HTTPS_PROXY": "http://p:2"}, "wss://e.com/", "http://p:4"),
        (
            {"HTTP_PROXY": "http://UPPER:1", "http_proxy": "http://lower:1"},
            "ws://e.com/",
            "http://lower:1",
        ),
        ({"http_proxy": "p:3128"}, "ws://e.com/", "http://p:3128"),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "*"}, "ws://example.com/", None),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "example.com"}, "ws://example.com/", None),
        (
            {"HTTP_PROXY": "http://p:1", "NO_PROXY": "x.org, example.com"},
            "ws://a.example.com/",
            None,
        ),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": ".example.com"}, "ws://example.com/", None),
        (
            {"HTTP_PROXY": "http://p:1", "NO_PROXY": "example.com"},
            "ws://notexample.com/",
            "http://p:1",
        ),
        (
            {"HTTP_PROXY": "http://p:1", "no_proxy": "example.com:8080"},
            "ws://example.com:8080/",
            None,
        ),
        (
            {"HTTP_PROXY": "http://p:1", "no_proxy": "example.com:8080"},
            "ws://example.com:9090/",
            "http://p:1",
        ),
        ({"HTTP_PROXY": "http://p:1"}, "ws://127.0.0.1:8080/", None),
        ({"HTTP_PROXY": "http://p:1"}, "ws://127.4.5.6/", None),
        ({"HTTP_PROXY": "http://p:1"}, "ws://localhost:8080/", None),
        ({"HTTP_PROXY": "http://p:1"}, "ws://[::1]:8080/", None),
        ({"HTTP_PROXY": "http://p:1"}, "ws+unix:///tmp/s.sock", None),
    ],
    ids=[
        "none",
        "http-for-ws",
        "http-not-for-wss",
        "https-for-wss",
        "https-not-for-ws",
        "all-for-ws",
        "all-for-wss",
        "https-before-all",
        "wss-before-https",
        "lower-case-wins",
        "no-scheme-is-http",
        "no-proxy-star",
        "no-proxy-host",
        "no-proxy-suffix",
        "no-proxy-leading-dot",
        "no-proxy-not-a-suffix",
        "no-proxy-port",
        "no-proxy-other-port",
        "loopback-v4",
        "loopback-v4-range",
        "localhost",
        "loopback-v6",
        "unix",
    ],
)
def test_proxy_from_the_environment(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], url: str, expected: str | None
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    assert select_proxy(True, parse_url(url)) == expected


def test_explicit_proxy_applies_to_every_host(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("NO_PROXY", "*")
    loopback = parse_url("ws://127.0.0.1:8080/")
    assert select_proxy("socks5://p:1", loopback) == "socks5://p:1"
    assert select_proxy(None, loopback) is None
    assert select_proxy(False, loopback) is None
    assert select_proxy("", loopback) is None


@asynccontextmanager
async def _recording_proxy(
    answer: bytes, greeting: bytes = b""
) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A fake proxy that records each request and answers ``answer``: an HTTP proxy (the
    request is a CONNECT head), or with ``greeting`` a SOCKS5 one (the greeting answers the
    client's first 3 bytes: one method, no authentication), or a SOCKS4 one (``b"\x00"``: no
    greeting, the request is what the first read gets)."""
    requests: list[bytes] = []

    async def handler(reader: Any, writer: Any) -> None:
        if not greeting:
            requests.append(await reader.readuntil(b"\r\n\r\n"))
        else:
            if greeting != b"\x00":
                await reader.readexactly(3)
                writer.write(greeting)
            requests.append(await reader.read(512))
        writer.write(answer)
        await writer.drain()

    async with raw_server(handler) as port:
        yield port, requests


@pytest.mark.parametrize(
    "variable, url, target",
    [
        ("HTTP_PROXY", "ws://wsfast-env.test/", b"wsfast-env.test:80"),
        ("https_proxy", "wss://wsfast-env.test/", b"wsfast-env.test:443"),
        ("ALL_PROXY", "ws://wsfast-env.test:8080/", b"wsfast-env.test:8080"),
    ],
)
async def test_connect_reads_the_proxy_from_the_environment(
    clean_env: pytest.MonkeyPatch, variable: str, url: str, target: bytes
) -> None:
    async with _recording_proxy(b"HTTP/1.1 403 Forbidden\r\n\r\n") as (port, heads):
        clean_env.setenv(variable, f"http://127.0.0.1:{port}")
        with pytest.raises(ProxyError) as info:
            await within(wsfast.connect(url))
        assert info.value.http_status == 403
        assert heads and heads[0].startswith(b"CONNECT " + target + b" HTTP/1.1\r\n")


async def test_connect_goes_direct_to_loopback_whatever_the_environment(
    clean_env: pytest.MonkeyPatch,
) -> None:
    async with _recording_proxy(b"HTTP/1.1 403 Forbidden\r\n\r\n") as (port, heads):
        clean_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        clean_env.setenv("ALL_PROXY", f"http://127.0.0.1:{port}")
        async with echo_server() as server:
            async with wsfast.connect(ws_url(server)) as ws:
                await ws.send("direct")
                assert await within(ws.recv()) == "direct"
        assert not heads


async def test_websocket_and_proxy_none_ignore_the_environment(
    clean_env: pytest.MonkeyPatch,
) -> None:
    # ws' WebSocket never reads the environment, nor does connect(proxy=None): this name does
    # not resolve, so the attempt fails at DNS or on connecting, never at the proxy.
    async with _recording_proxy(b"HTTP/1.1 403 Forbidden\r\n\r\n") as (port, heads):
        clean_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        for options in ({}, {"proxy": None}):
            ws = wsfast.WebSocket(
                "ws://wsfast-env.invalid./", handshake_timeout=scaled(2), **options
            )
            error = await Events(ws).failed()
            assert not isinstance(error, ProxyError)
        assert not heads


# -- SOCKS (microsocks, pproxy) and the https:// proxy (pproxy) --------------------------------


async def _echo_through(
    proxy_url: str, scheme: str, tmp_path: Path, host: str = "127.0.0.1", **options: Any
) -> wsfast.WebSocket:
    """Open a ws:// or wss:// echo server, connect through ``proxy_url``, check an echo."""
    certs = make_certs(tmp_path)
    server_options: dict[str, Any] = {"ssl": server_context(certs)} if scheme == "wss" else {}
    if scheme == "wss":
        options["ssl"] = client_context(certs)
    async with echo_server(**server_options) as server:
        url = f"{scheme}://{host}:{server.address()[1]}/through?proxy=1"
        async with wsfast.connect(url, proxy=proxy_url, **options) as ws:
            await ws.send("through the proxy")
            assert await within(ws.recv()) == "through the proxy"
            await ws.send(b"\x00" * 70000)
            assert await within(ws.recv()) == b"\x00" * 70000
        assert server.requests[0].path == "/through?proxy=1"  # type: ignore[attr-defined]
        assert server.requests[0].secure is (scheme == "wss")  # type: ignore[attr-defined]
        assert "proxy-authorization" not in server.requests[0].headers  # type: ignore[attr-defined]
    return ws


@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_socks5_with_credentials(microsocks: Any, scheme: str, tmp_path: Path) -> None:
    # The password needs percent-encoding in the URL; the proxy gets it decoded.
    proxy = microsocks("auth", user="ws user", password="p@ss:w/rd%")
    assert "p%40ss%3Aw%2Frd%25" in proxy.url
    await _echo_through(proxy.url, scheme, tmp_path)


@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_socks5h_resolves_the_name_at_the_proxy(
    microsocks: Any, scheme: str, tmp_path: Path
) -> None:
    proxy = microsocks("open-h", scheme="socks5h")
    await _echo_through(proxy.url, scheme, tmp_path, host="localhost")


async def test_socks5_without_credentials(microsocks: Any, tmp_path: Path) -> None:
    await _echo_through(microsocks("open").url, "ws", tmp_path, host="localhost")


@pytest.mark.parametrize(
    "userinfo, message",
    [
        ("ws%20user:wrong@", "authentication failure"),
        ("", "No acceptable authentication methods"),
    ],
    ids=["wrong-password", "no-credentials"],
)
async def test_socks5_refused_credentials(microsocks: Any, userinfo: str, message: str) -> None:
    proxy = microsocks("auth-refusing", user="ws user", password="right")
    url = proxy.url.replace("ws%20user:right@", userinfo)
    async with echo_server() as server:
        ws = wsfast.WebSocket(ws_url(server), proxy=url)
        events = Events(ws)
        error = await events.failed()
        assert isinstance(error, ProxyError)
        assert error.code == "WS_ERR_PROXY"
        assert str(error).startswith(f"The SOCKS proxy 127.0.0.1:{proxy.port} refused: ")
        assert message in str(error)
        assert events.close_args[0] == 1006
        assert not server.requests  # type: ignore[attr-defined]


async def test_socks5_proxy_that_cannot_reach_the_server(microsocks: Any) -> None:
    proxy = microsocks("open-closed-target")
    ws = wsfast.WebSocket(f"ws://127.0.0.1:{_free_port()}/", proxy=proxy.url)
    error = await Events(ws).failed()
    assert isinstance(error, ProxyError)
    assert "refused" in str(error)


@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_socks4(pproxy: PProxy, scheme: str, tmp_path: Path) -> None:
    await _echo_through(pproxy.socks4.url, scheme, tmp_path)


@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_https_proxy(pproxy: PProxy, scheme: str, tmp_path: Path) -> None:
    proxy_ssl = client_context(pproxy.certs)
    if scheme == "wss" and sys.version_info < (3, 11):
        with pytest.raises(NotImplementedError, match="Python 3.11"):
            await _echo_through(pproxy.https.url, scheme, tmp_path, proxy_ssl=proxy_ssl)
        return
    ws = await _echo_through(pproxy.https.url, scheme, tmp_path, proxy_ssl=proxy_ssl)
    assert ws.close_code == 1000


async def test_https_proxy_certificate_is_verified(pproxy: PProxy) -> None:
    async with echo_server() as server:
        ws = wsfast.WebSocket(ws_url(server), proxy=pproxy.https.url)  # the default CAs
        error = await Events(ws).failed()
        assert isinstance(error, ProxyError)
        assert f"TLS with the proxy 127.0.0.1:{pproxy.https.port} failed" in str(error)
        assert "CERTIFICATE_VERIFY_FAILED" in str(error)
        assert not server.requests  # type: ignore[attr-defined]


async def test_socks_without_python_socks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "python_socks", None)
    ws = wsfast.WebSocket("ws://127.0.0.1:9/", proxy="socks5://127.0.0.1:1080")
    error = await Events(ws).failed()
    assert isinstance(error, ImportError)
    assert 'pip install "wsfast[socks]"' in str(error)


_SOCKS5_REFUSED = b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00"
_SOCKS4_REJECTED = b"\x00\x5b\x00\x00\x00\x00\x00\x00"


@pytest.mark.parametrize(
    "scheme, greeting, answer",
    [
        ("socks5h", b"\x05\x00", _SOCKS5_REFUSED),
        ("socks5", b"\x05\x00", _SOCKS5_REFUSED),
        ("socks4a", b"\x00", _SOCKS4_REJECTED),
    ],
)
async def test_remote_dns_sends_the_name(scheme: str, greeting: bytes, answer: bytes) -> None:
    async with _recording_proxy(answer, greeting) as (port, requests):
        ws = wsfast.WebSocket("ws://localhost:8080/", proxy=f"{scheme}://127.0.0.1:{port}")
        error = await Events(ws).failed()
        assert isinstance(error, ProxyError)
        assert "refused" in str(error)
    request = requests[0]
    if scheme == "socks5h":  # VER 5, CMD 1, RSV, ATYP 3 (a name), its length, name, port
        assert request == b"\x05\x01\x00\x03\x09localhost\x1f\x90"
    elif scheme == "socks5":  # an address resolved here: ATYP 1 or 4, never the name
        assert request[3] in (1, 4) and b"localhost" not in request
    else:  # VN 4, CD 1, port, 0.0.0.x, an empty user id, then the name
        assert request[:7] == b"\x04\x01\x1f\x90\x00\x00\x00"
        assert request.endswith(b"\x00localhost\x00")

"""The ``proxy=`` option against a real HTTP CONNECT proxy (tinyproxy) on 127.0.0.1 (issue 5).

Each test module run starts its own tinyproxy instances with generated configurations, in the
foreground (``-d``), and stops them by PID. tinyproxy is installed by ``tests/proxy_setup.sh``
(or here, with apt-get, when running as root); without it these tests are skipped. Its docs:
"If no ConnectPort line is found, all ports are allowed", so the open proxies have none, and the
refusing proxy allows only port 443 (CONNECT elsewhere gets 403).
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from certs import client_context, make_certs, server_context
from conftest import scaled
from services import free_port, installed
from test_transports import Events, echo_once, echo_server, raw_server, within, ws_url

import wsfast
from wsfast.proxy import ProxyError, connect_request

HERE = Path(__file__).parent


@dataclass
class Proxy:
    """A running tinyproxy: its URL (with credentials when it wants them) and its log."""

    url: str
    port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _ensure_tinyproxy() -> str:
    path = installed("tinyproxy", "proxy_setup.sh")
    if path is None:
        pytest.skip("tinyproxy is not installed (run tests/proxy_setup.sh)")
    return path


@pytest.fixture(scope="module")
def tinyproxy() -> Iterator[Any]:
    """A factory of tinyproxy instances: ``tinyproxy(name, *config_lines)``."""
    binary = _ensure_tinyproxy()
    directory = Path(tempfile.mkdtemp(prefix="wsf-tinyproxy-"))
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str, *extra: str, credentials: str = "") -> Proxy:
        port = free_port()
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
        if os.geteuid() == 0:
            # As root tinyproxy drops privileges to this user; it must still write its log.
            lines += ["User nobody", "Group nogroup"]
            directory.chmod(0o777)
            log.touch()
            log.chmod(0o666)
        config.write_text("\n".join(lines) + "\n")
        process = subprocess.Popen(
            [binary, "-d", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        deadline = time.monotonic() + scaled(10)
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"tinyproxy did not start: {log.read_text(errors='replace')}")
                time.sleep(0.05)
        userinfo = f"{credentials}@" if credentials else ""
        return Proxy(f"http://{userinfo}127.0.0.1:{port}", port, log)

    yield start
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    shutil.rmtree(directory, ignore_errors=True)


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


async def test_unreachable_proxy_is_an_error_then_close() -> None:
    ws = wsfast.WebSocket("ws://127.0.0.1:9/", proxy=f"http://127.0.0.1:{free_port()}")
    events = Events(ws)
    assert isinstance(await events.failed(), ConnectionRefusedError)


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
    ws = wsfast.WebSocket("ws://127.0.0.1:9/", proxy="socks5://127.0.0.1:1080")
    error = await Events(ws).failed()
    assert isinstance(error, ValueError)
    assert "only http://" in str(error)


async def test_handshake_timeout_covers_a_proxy_that_never_answers() -> None:
    async def silent(reader: Any, writer: Any) -> None:
        await reader.read()

    async with raw_server(silent) as port:
        ws = wsfast.WebSocket(
            "ws://127.0.0.1:9/", proxy=f"http://127.0.0.1:{port}", handshake_timeout=0.2
        )
        error = await Events(ws).failed()
        assert isinstance(error, wsfast.WebSocketError)
        assert error.code == "WS_ERR_HANDSHAKE_TIMEOUT"

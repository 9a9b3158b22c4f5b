"""The server's answers to raw HTTP, compared with node's ``ws`` 8.23 in port mode.

The same bytes go over a socket to a node ``WebSocketServer({port})`` and to a wsfast
``WebSocketServer(port=...)``; the status, the headers that matter, the body and whether the
connection was closed are compared. Where wsfast differs on purpose, the test says so:

* the 426 to a plain request: Node keeps the connection alive for more HTTP requests (with
  ``Date`` and ``Keep-Alive``); wsfast answers no other HTTP, so it says ``Connection: close``,
  closes, and adds the ``Upgrade: websocket`` that RFC 9110 15.5.22 requires of a 426;
* a head Node's parser refuses: Node answers ``Connection: close`` with no body; wsfast gives the
  same status and ``Connection: close`` with the reason as a body;
* ``HTTP/2.0`` in a request line: Node's llhttp takes it as a version it knows and ws upgrades;
  wsfast speaks HTTP/1.x only (RFC 9112 2.3: "HTTP/2.0" is no HTTP/1.x version) and answers 400.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import interop_node

import wsfast
from wsfast.handshake import Headers

node = interop_node()

pytestmark = pytest.mark.interop

TIMEOUT = 10.0 * node.timeout_factor()
# How long a connection that should stay open is watched for a close.
QUIET = 0.3 * node.timeout_factor()

# ws' port mode with an echo 'connection' listener; prints its port, then serves until killed.
NODE_SERVER = """
const { WebSocketServer } = require('ws');
const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' }, () => {
  const { version } = require('ws/package.json');
  console.log(JSON.stringify({ port: wss.address().port, version }));
});
wss.on('connection', (ws) => ws.on('message', (data, binary) => ws.send(data, { binary })));
"""

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def request(
    path: str = "/",
    version: str = "HTTP/1.1",
    method: str = "GET",
    eol: str = "\r\n",
    **headers: Any,
) -> bytes:
    """An upgrade request; keyword headers (``_`` for ``-``) replace or, as None, remove."""
    fields: dict[str, str | None] = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    fields.update((name.replace("_", "-"), value) for name, value in headers.items())
    lines = [f"{method} {path} {version}"]
    lines += [f"{name}: {value}" for name, value in fields.items() if value is not None]
    return (eol.join(lines) + eol + eol).encode("latin-1")


@dataclass
class Answer:
    """What a server answered to some bytes."""

    status: int
    headers: Headers
    body: bytes
    closed: bool


async def exchange(port: int, data: bytes) -> Answer:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        lines = raw[:-4].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = Headers(
            (name, value.strip()) for name, _, value in (line.partition(":") for line in lines[1:])
        )
        length = headers.get("content-length")
        body = b""
        if length is not None:
            body = await asyncio.wait_for(reader.readexactly(int(length)), TIMEOUT)
        elif status != 101:
            body = await asyncio.wait_for(reader.read(), TIMEOUT)
        try:
            rest = await asyncio.wait_for(reader.read(), QUIET)
            closed = rest == b""
        except (asyncio.TimeoutError, ConnectionResetError):
            closed = False
        return Answer(status, headers, body, closed or reader.at_eof())
    finally:
        writer.close()


@pytest.fixture(scope="module")
def node_port() -> Iterator[int]:
    binary = node.ensure_node_modules()
    proc = subprocess.Popen(
        [binary, "-e", NODE_SERVER],
        cwd=node.INTEROP_DIR,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"node exited: {err}")
        info = json.loads(line)
        assert info["version"].startswith("8."), info
        yield int(info["port"])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


@pytest.fixture
async def wsfast_port() -> AsyncIterator[int]:
    server = wsfast.WebSocketServer(port=0, host="127.0.0.1")
    server.on("connection", lambda ws, req: ws.on("message", lambda d, b: ws.send(d, binary=b)))
    await asyncio.wait_for(server.wait_listening(), TIMEOUT)
    yield server.address()[1]
    for ws in list(server.clients):
        ws.terminate()
    await server.close()


async def both(node_port: int, wsfast_port: int, data: bytes) -> tuple[Answer, Answer]:
    return await exchange(node_port, data), await exchange(wsfast_port, data)


# (bytes sent); ws' own answers (abortHandshake): status, body, headers and close all equal.
WS_ANSWERS = [
    pytest.param(request(method="POST"), id="post-405"),
    pytest.param(request(Upgrade="h2c"), id="bad-upgrade-400"),
    pytest.param(request(Sec_WebSocket_Key=None), id="no-key-400"),
    pytest.param(request(Sec_WebSocket_Key="dGhlIHNhbXBsZQ=="), id="short-key-400"),
    pytest.param(request(Sec_WebSocket_Version="7"), id="version-7-400"),
    pytest.param(request(Sec_WebSocket_Version=None), id="no-version-400"),
    pytest.param(request(Sec_WebSocket_Protocol="chat, chat"), id="duplicate-protocol-400"),
    pytest.param(request(Sec_WebSocket_Protocol="a b"), id="bad-protocol-400"),
]


@pytest.mark.parametrize("data", WS_ANSWERS)
async def test_handshake_refusals_as_ws(node_port: int, wsfast_port: int, data: bytes) -> None:
    theirs, ours = await both(node_port, wsfast_port, data)
    assert ours.status == theirs.status
    assert ours.body == theirs.body
    for name in ("content-type", "content-length", "connection", "sec-websocket-version"):
        assert ours.headers.get(name) == theirs.headers.get(name), name
    assert theirs.closed and ours.closed


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(request(), id="version-13"),
        pytest.param(request(Sec_WebSocket_Version="8"), id="version-8"),
        pytest.param(request(version="HTTP/1.0"), id="http-1.0"),
        pytest.param(request(Connection="keep-alive, Upgrade", Upgrade="WebSocket"), id="tokens"),
        pytest.param(request(Sec_WebSocket_Protocol="chat, superchat"), id="subprotocols"),
    ],
)
async def test_upgrades_as_ws(node_port: int, wsfast_port: int, data: bytes) -> None:
    theirs, ours = await both(node_port, wsfast_port, data)
    assert (theirs.status, ours.status) == (101, 101)
    for name in ("upgrade", "connection", "sec-websocket-accept", "sec-websocket-protocol"):
        assert ours.headers.get(name) == theirs.headers.get(name), name
    assert not theirs.closed and not ours.closed


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="plain-get"),
        pytest.param(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", id="plain-post"),
        pytest.param(request(Connection=None), id="no-connection-header"),
        pytest.param(request(Connection="keep-alive"), id="connection-keep-alive"),
        pytest.param(request(Upgrade=None), id="no-upgrade-header"),
    ],
)
async def test_plain_requests_get_426_as_ws(node_port: int, wsfast_port: int, data: bytes) -> None:
    theirs, ours = await both(node_port, wsfast_port, data)
    assert (theirs.status, ours.status) == (426, 426)
    assert ours.body == theirs.body == b"Upgrade Required"
    assert ours.headers["content-type"] == theirs.headers["content-type"] == "text/plain"
    assert ours.headers["content-length"] == theirs.headers["content-length"]
    # The divergences written down above: Node keeps the connection for more HTTP requests.
    assert theirs.headers["connection"] == "keep-alive" and not theirs.closed
    assert ours.headers["connection"] == "close" and ours.closed
    assert ours.headers["upgrade"] == "websocket" and "upgrade" not in theirs.headers


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(request(version="HTTP/1.9"), id="http-1.9"),
        pytest.param(request("/a\x00b"), id="nul-in-target"),
        pytest.param(request("/a\x01b"), id="control-in-target"),
        pytest.param(request("/a\x7fb"), id="del-in-target"),
        pytest.param(request("/a b"), id="space-in-target"),
        pytest.param(request(eol="\n"), id="lf-only"),
        pytest.param(b"GET / HTTP/1.1\nHost: x\n", id="lf-only-unfinished"),
        pytest.param(request(X_Bad="a\x01b"), id="control-in-header-value"),
        pytest.param(request(X_Big="a" * 20000), id="head-over-16-KiB"),
        pytest.param(b"\x16\x03\x01\x02\x00 not http\r\n\r\n", id="tls-to-plain-port"),
    ],
)
async def test_malformed_heads_answered_and_closed_as_node(
    node_port: int, wsfast_port: int, data: bytes
) -> None:
    theirs, ours = await both(node_port, wsfast_port, data)
    assert ours.status == theirs.status
    assert ours.status in (400, 431)
    assert ours.headers["connection"] == theirs.headers["connection"] == "close"
    assert theirs.closed and ours.closed
    # The divergence written down above: a body with the reason.
    assert theirs.body == b""
    assert ours.body and ours.headers["content-length"] == str(len(ours.body))


async def test_http_2_0_request_line_is_refused_unlike_node(
    node_port: int, wsfast_port: int
) -> None:
    theirs, ours = await both(node_port, wsfast_port, request(version="HTTP/2.0"))
    assert theirs.status == 101
    assert ours.status == 400 and ours.closed

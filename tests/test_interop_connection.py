"""Issue 8's connection behaviours next to node's ws 8.23, over the same raw peers.

The raw server and raw clients of ``test_connection_behaviour.py`` drive a node ws client or a
node ws ``WebSocketServer`` with the same bytes they send to wsfast, and what comes back is
compared: the close frame's code, the half-close, or the termination without a close frame.

Where ws differs, the test asserts both facts, so the divergence stays visible:

* a client that fails the connection on a server's protocol error: ws' ``'close'`` event
  reports 1006 (it received no close frame), wsfast reports the code it sent (1002, 1009...);
* ``maxFragments``: ws' default is 16384, so it refuses Autobahn 9.3/9.4's 4 MiB message in
  65536 fragments with 1008; wsfast has no count limit by default (memory is bounded by bytes).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from conftest import RawPeer, interop_node, wait_for
from test_connection_behaviour import (
    CLIENT_ERRORS,
    FLOODS,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    PING,
    SERVER_ERRORS,
    SMALL_RCVBUF,
    RawSession,
    close_code_of,
    flood,
    fragmented,
    one_session,
    parse_frames,
    raw_server,
    read_all,
    sends,
    server_frame,
    small_window_websocket,
)

from wsfast import WebSocket, WebSocketServer

node = interop_node()

pytestmark = pytest.mark.interop

TIMEOUT = 30.0 * node.timeout_factor()

# A ws client: prints its 'open', 'error' (with err.code) and 'close' events as JSON lines and
# exits on 'close'.
_CLIENT_JS = r"""
const WebSocket = require('ws');
const [url, options] = [process.argv[1], JSON.parse(process.argv[2])];
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const ws = new WebSocket(url, options);
let pings = 0;
ws.on('ping', () => pings++);
ws.on('open', () => out({ event: 'open' }));
ws.on('message', (data) => out({ event: 'message', length: data.length }));
ws.on('error', (e) => out({ event: 'error', code: e.code, message: e.message }));
ws.on('close', (code) => { out({ event: 'close', code, pings }); process.exit(0); });
"""

# A ws server with the options given: prints its port, then for each connection (by request
# path) its 'message', 'error' and 'close' events; 'close' carries the count of pings seen.
_SERVER_JS = r"""
const { WebSocketServer } = require('ws');
const options = JSON.parse(process.argv[1]);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...options }, () => {
  out({ port: wss.address().port });
});
wss.on('connection', (ws, req) => {
  const path = req.url;
  let pings = 0;
  ws.on('ping', () => pings++);
  ws.on('message', (data, binary) => {
    out({ event: 'message', path, length: data.length });
    ws.send(data, { binary });
  });
  ws.on('error', (e) => out({ event: 'error', path, code: e.code }));
  ws.on('close', (code) => out({ event: 'close', path, code, pings }));
});
"""


async def run_node_client(url: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    binary = node.ensure_node_modules()
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-e",
        _CLIENT_JS,
        url,
        json.dumps(options),
        cwd=node.INTEROP_DIR,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except asyncio.TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise AssertionError(f"node client did not finish against {url}") from None
    assert proc.returncode == 0, err.decode(errors="replace")
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


class NodeServer:
    """``_SERVER_JS`` running; its port and the events it printed."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.address = ("127.0.0.1", port)
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            if line.strip():
                self.events.append(json.loads(line))

    async def event(self, path: str, name: str) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while True:
            for event in self.events:
                if event.get("path") == path and event.get("event") == name:
                    return event
            if loop.time() > deadline:
                raise AssertionError(f"node printed no {name} for {path}: {self.events}")
            await asyncio.sleep(0.01)

    def of(self, path: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("path") == path]


@asynccontextmanager
async def node_server(**options: Any) -> AsyncIterator[NodeServer]:
    binary = node.ensure_node_modules()
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-e",
        _SERVER_JS,
        json.dumps(options),
        cwd=node.INTEROP_DIR,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        first = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
        assert first, "node server exited before listening"
        server = NodeServer(proc, json.loads(first)["port"])
        yield server
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def node_peer(server: NodeServer, path: str, rcvbuf: int | None = None) -> RawPeer:
    return await small_window_websocket(server.address, path, rcvbuf)


# == 1. the client role: the same raw server, a wsfast and a node client ======================


@pytest.mark.parametrize(("bad", "options", "code", "error"), CLIENT_ERRORS)
async def test_client_close_frame_matches_node(
    bad: bytes, options: dict[str, Any], code: int, error: str
) -> None:
    node_options: dict[str, Any] = {"perMessageDeflate": False}
    if "max_payload" in options:
        node_options["maxPayload"] = options["max_payload"]
    async with raw_server(sends(bad)) as (url, sessions):
        theirs = await run_node_client(url, node_options)
        node_session = await one_session(sessions)
        ws = WebSocket(url, per_message_deflate=False, **options)
        await wait_for(ws.wait_closed(), 15.0)
        await wait_for(sessions[1].done.wait(), 15.0)
        ours_session = sessions[1]
    node_closes = node_session.close_frames()
    our_closes = ours_session.close_frames()
    assert len(node_closes) == len(our_closes) == 1
    assert close_code_of(our_closes[0][2]) == close_code_of(node_closes[0][2]) == code
    assert our_closes[0][2] == node_closes[0][2], "same close payload (code, no reason)"
    assert node_session.eof and ours_session.eof, "both half-close after the close frame"
    # The error: same WS_ERR_* code on both.
    node_errors = [e for e in theirs if e["event"] == "error"]
    assert [e["code"] for e in node_errors] == [error]
    # The divergence: node's 'close' says 1006 (no close frame came back), wsfast's says the
    # code it sent.
    assert [e["code"] for e in theirs if e["event"] == "close"] == [1006]
    assert ws.close_code == code


async def test_client_max_fragments_matches_node() -> None:
    four = fragmented(4, 8, masked=False)[0]
    five = fragmented(5, 8, masked=False)[0]
    async with raw_server(sends(four + five)) as (url, sessions):
        theirs = await run_node_client(url, {"perMessageDeflate": False, "maxFragments": 4})
        ws = WebSocket(url, per_message_deflate=False, max_fragments=4)
        await wait_for(ws.wait_closed(), 15.0)
        await until_sessions(sessions, 2)
    codes = [close_code_of(s.close_frames()[0][2]) for s in sessions]
    assert codes == [1008, 1008]
    assert [e["length"] for e in theirs if e["event"] == "message"] == [32]
    assert [e["code"] for e in theirs if e["event"] == "error"] == [
        "WS_ERR_TOO_MANY_BUFFERED_PARTS"
    ]
    assert ws.close_code == 1008


async def until_sessions(sessions: list[RawSession], count: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while len(sessions) < count or not all(s.done.is_set() for s in sessions):
        assert loop.time() < deadline
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(("batch", "pause"), FLOODS)
async def test_client_ping_flood_terminated_like_node(batch: int, pause: float) -> None:
    ping = server_frame(b"p" * 125, OP_PING)

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Any) -> None:
        await flood(writer, ping, lambda: False, 200_000, batch, pause)
        data, s.reset = await read_all(reader)
        s.received += data

    terminated = 0
    async with raw_server(script, rcvbuf=SMALL_RCVBUF) as (url, sessions):
        theirs = await run_node_client(url, {"perMessageDeflate": False})
        ws = WebSocket(url, per_message_deflate=False)
        await wait_for(ws.wait_closed(), 30.0)
        await until_sessions(sessions, 2)
    for session in sessions:
        kinds = {f[0] for f in session.frames()}
        assert OP_CLOSE not in kinds and kinds <= {OP_PONG}
        terminated += 1
    assert [e["code"] for e in theirs if e["event"] == "close"] == [1006]
    assert not [e for e in theirs if e["event"] == "error"]
    assert ws.close_code == 1006
    assert terminated == 2


# == 2. the server role: the same raw client bytes, a wsfast and a node server ================


@pytest.mark.parametrize(("bad", "options", "code", "error"), SERVER_ERRORS)
async def test_server_close_frame_matches_node(
    bad: bytes, options: dict[str, Any], code: int, error: str
) -> None:
    node_options = {"maxPayload": options["max_payload"]} if "max_payload" in options else {}
    ours = WebSocketServer(port=0, host="127.0.0.1", **options)
    accepted: asyncio.Future[WebSocket] = asyncio.get_running_loop().create_future()
    ours.on("connection", lambda ws, request: accepted.set_result(ws))
    try:
        await wait_for(ours.wait_listening())
        async with node_server(**node_options) as theirs:
            answers = []
            for address in (theirs.address, ours.address()):
                peer = await small_window_websocket(address, "/bad", None)
                peer.write(bad)
                b0, opcode, payload = await peer.read_frame()
                data, reset = await read_all(peer.reader)
                answers.append((b0, opcode, payload, data, reset))
                peer.close()
            close = await theirs.event("/bad", "close")
            errors = [e["code"] for e in theirs.of("/bad") if e["event"] == "error"]
        ws = await wait_for(accepted)
        await wait_for(ws.wait_closed())
    finally:
        await wait_for(ours.close())
    # Same close frame, then a half-close (EOF with nothing after the frame), on both.
    assert answers[0] == answers[1]
    assert answers[0][:2] == (0x88, OP_CLOSE) and close_code_of(answers[0][2]) == code
    assert answers[0][3:] == (b"", False)
    assert errors == [error]
    # The divergence, as on the client role: ws' 'close' reports 1006 (no close frame came
    # back), wsfast's the code it sent.
    assert close["code"] == 1006
    assert ws.close_code == code


async def test_server_max_fragments_matches_node() -> None:
    four = fragmented(4, 8)[0]
    five = fragmented(5, 8)[0]
    async with node_server(maxFragments=4) as server:
        peer = await node_peer(server, "/frag", rcvbuf=None)
        peer.write(four)
        _, opcode, payload = await peer.read_frame()
        assert (opcode, len(payload)) == (0x2, 32), "4 fragments: accepted and echoed"
        peer.write(five)
        _, opcode, payload = await peer.read_frame()
        assert (opcode, close_code_of(payload)) == (OP_CLOSE, 1008)
        await read_all(peer.reader)
        peer.close()
        await server.event("/frag", "close")
        errors = [e["code"] for e in server.of("/frag") if e["event"] == "error"]
    assert errors == ["WS_ERR_TOO_MANY_BUFFERED_PARTS"]


async def test_node_default_max_fragments_refuses_autobahn_9_3() -> None:
    # The divergence on purpose: ws' default maxFragments is 16384; wsfast's is no limit
    # (test_connection_behaviour.test_default_has_no_fragment_limit accepts this message).
    frames, _ = fragmented(65536, 64)
    async with node_server(maxPayload=100 * 1024 * 1024) as server:
        peer = await node_peer(server, "/many", rcvbuf=None)
        peer.write(frames)
        _, opcode, payload = await peer.read_frame()
        assert (opcode, close_code_of(payload)) == (OP_CLOSE, 1008)
        peer.close()
        await server.event("/many", "close")
        errors = [e["code"] for e in server.of("/many") if e["event"] == "error"]
    assert errors == ["WS_ERR_TOO_MANY_BUFFERED_PARTS"]


# == 4. a ping flood against node's server ======================================================


@pytest.mark.parametrize(("batch", "pause"), FLOODS)
async def test_server_ping_flood_terminated_like_node(batch: int, pause: float) -> None:
    path = f"/flood-{batch}"
    ours = WebSocketServer(port=0, host="127.0.0.1")
    accepted: asyncio.Future[WebSocket] = asyncio.get_running_loop().create_future()
    ours.on("connection", lambda ws, request: accepted.set_result(ws))
    terminated = 0
    try:
        await wait_for(ours.wait_listening())
        async with node_server() as theirs:
            # node's ws server
            peer = await node_peer(theirs, path)
            closed = lambda: any(e["event"] == "close" for e in theirs.of(path))  # noqa: E731
            sent = await wait_for(flood(peer.writer, PING, closed, 400_000, batch, pause), 60.0)
            close = await theirs.event(path, "close")
            data, _ = await read_all(peer.reader)
            peer.close()
            frames, _ = parse_frames(data)
            kinds = {f[0] for f in frames}
            assert OP_CLOSE not in kinds and kinds <= {OP_PONG}, "no close frame from node"
            assert close["code"] == 1006
            assert not [e for e in theirs.of(path) if e["event"] == "error"]
            assert close["pings"] <= sent
            if batch < 60:
                assert close["pings"] > 3 * batch
            terminated += 1
        # wsfast's server, the same flood
        peer = await small_window_websocket(ours.address(), path)
        ws = await wait_for(accepted)
        pings = 0

        def count(data: bytes) -> None:
            nonlocal pings
            pings += 1

        ws.on("ping", count)
        gone = lambda: ws.ready_state == WebSocket.CLOSED  # noqa: E731
        sent = await wait_for(flood(peer.writer, PING, gone, 400_000, batch, pause), 60.0)
        await wait_for(ws.wait_closed())
        data, _ = await read_all(peer.reader)
        peer.close()
        frames, _ = parse_frames(data)
        kinds = {f[0] for f in frames}
        assert OP_CLOSE not in kinds and kinds <= {OP_PONG}, "no close frame from wsfast"
        assert ws.close_code == 1006
        assert pings <= sent
        if batch < 60:
            assert pings > 3 * batch
        terminated += 1
    finally:
        await wait_for(ours.close())
    assert terminated == 2

"""wsfast.uvicorn: uvicorn's WebSocket engine, under a real uvicorn serving Starlette and FastAPI.

Each test starts ``uvicorn.Server`` in-process on a free port with ``ws=
"wsfast.uvicorn:WebSocketProtocol"`` and stops it at the end (bounded). Clients: ``websockets``,
node's ``ws`` (``tests/interop``) and raw TCP peers for what a library client hides (pings left
unanswered, a message and an invalid frame in one write).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from conftest import RawPeer, client_frame, interop_node, scaled, upgrade_request, wait_for

uvicorn = pytest.importorskip("uvicorn")
starlette_applications = pytest.importorskip("starlette.applications")
fastapi = pytest.importorskip("fastapi")
websockets_client = pytest.importorskip("websockets.asyncio.client")
websockets_exceptions = pytest.importorskip("websockets.exceptions")

from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import WebSocketRoute  # noqa: E402
from starlette.websockets import WebSocket, WebSocketDisconnect  # noqa: E402

import wsfast.uvicorn  # noqa: E402

ENGINE = "wsfast.uvicorn:WebSocketProtocol"
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA

# What the applications saw, per test: ("disconnect", code, reason) and the like.
seen: list[tuple[Any, ...]] = []


async def starlette_echo(ws: WebSocket) -> None:
    """Accepts with the first subprotocol offered and a header; echoes; "close" closes."""
    offered = ws.scope["subprotocols"]
    await ws.accept(subprotocol=offered[0] if offered else None, headers=[(b"x-engine", b"wsfast")])
    seen.append(("path", ws.scope["path"], ws.scope["query_string"]))
    while True:
        event = await ws.receive()
        if event["type"] == "websocket.disconnect":
            seen.append(("disconnect", event["code"], event.get("reason", "")))
            return
        text = event.get("text")
        if text == "close":
            await ws.close(4001, "bye")
            seen.append(("closed", await ws.receive()))
            return
        if text == "raise":
            raise RuntimeError("the application failed")
        if text is not None:
            await ws.send_text(text)
        else:
            await ws.send_bytes(event["bytes"])


async def starlette_deny(ws: WebSocket) -> None:
    await ws.send_denial_response(PlainTextResponse("nope", status_code=403))


async def starlette_reject(ws: WebSocket) -> None:
    await ws.close()


async def starlette_wait(ws: WebSocket) -> None:
    """Accepts, then waits for the disconnect (shutdown tests)."""
    await ws.accept()
    event = await ws.receive()
    seen.append(("disconnect", event["code"], event.get("reason", "")))


starlette_app = starlette_applications.Starlette(
    routes=[
        WebSocketRoute("/echo", starlette_echo),
        WebSocketRoute("/deny", starlette_deny),
        WebSocketRoute("/reject", starlette_reject),
        WebSocketRoute("/wait", starlette_wait),
    ]
)

fastapi_app = fastapi.FastAPI()


@fastapi_app.websocket("/ws/{room}")
async def fastapi_echo(websocket: fastapi.WebSocket, room: str) -> None:
    await websocket.accept(
        subprotocol="chat" if "chat" in websocket.scope["subprotocols"] else None
    )
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                seen.append(("disconnect", message["code"], message.get("reason", "")))
                return
            if message.get("text") is not None:
                await websocket.send_text(f"{room}:{message['text']}")
            else:
                await websocket.send_bytes(message["bytes"][::-1])
    except WebSocketDisconnect:  # pragma: no cover - receive() returns the event above
        seen.append(("disconnect-exc",))


@fastapi_app.websocket("/private")
async def fastapi_private(websocket: fastapi.WebSocket) -> None:
    raise fastapi.WebSocketException(code=1008)


class Running:
    """A uvicorn server running in this event loop."""

    def __init__(self, server: Any, task: asyncio.Task[None]) -> None:
        self.server = server
        self.task = task
        self.port: int = server.servers[0].sockets[0].getsockname()[1]

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    @property
    def connections(self) -> set[Any]:
        return self.server.server_state.connections  # type: ignore[no-any-return]

    async def stop(self, seconds: float = 10.0) -> None:
        self.server.should_exit = True
        await wait_for(asyncio.shield(self.task), scaled(seconds))


@asynccontextmanager
async def serving(app: Any, **options: Any) -> AsyncIterator[Running]:
    seen.clear()
    options.setdefault("log_level", "warning")
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        ws=ENGINE,
        lifespan="off",
        timeout_graceful_shutdown=5,
        **options,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # older uvicorn; newer ones capture politely
    task = asyncio.ensure_future(server.serve())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(10)
    while not server.started:
        if task.done():
            task.result()
        assert loop.time() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    running = Running(server, task)
    try:
        yield running
    finally:
        if not task.done():
            server.should_exit = True
            try:
                await wait_for(asyncio.shield(task), scaled(10))
            finally:
                if not task.done():
                    server.force_exit = True
                    task.cancel()


async def until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(seconds)
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def raw_connect(running: Running, path: str = "/echo") -> RawPeer:
    reader, writer = await wait_for(asyncio.open_connection("127.0.0.1", running.port))
    peer = RawPeer(reader, writer)
    peer.write(upgrade_request(path))
    status, _, _ = await peer.read_head()
    assert status == 101
    return peer


def test_engine_class_is_what_uvicorn_loads() -> None:
    config = uvicorn.Config(starlette_app, ws=ENGINE, lifespan="off")
    config.load()
    assert config.ws_protocol_class is wsfast.uvicorn.WebSocketProtocol


# -- Starlette, websockets client ----------------------------------------------------------------


async def test_accept_with_subprotocol_and_headers_then_text_and_bytes() -> None:
    async with serving(starlette_app) as running:
        async with websockets_client.connect(
            running.url("/echo?x=1"), subprotocols=["chat", "other"]
        ) as ws:
            assert ws.subprotocol == "chat"
            assert ws.response.headers["x-engine"] == "wsfast"
            await ws.send("héllo")
            assert await wait_for(ws.recv()) == "héllo"
            await ws.send(b"\x00\xff" * 40000)
            assert await wait_for(ws.recv()) == b"\x00\xff" * 40000
        await until(lambda: ("disconnect", 1000, "") in seen)
        assert ("path", "/echo", b"x=1") in seen


async def test_client_close_code_and_reason_reach_the_app() -> None:
    async with serving(starlette_app) as running:
        async with websockets_client.connect(running.url("/echo")) as ws:
            await ws.close(4000, "client-bye")
        await until(lambda: any(s[0] == "disconnect" for s in seen))
        assert ("disconnect", 4000, "client-bye") in seen
        await until(lambda: not running.connections)


async def test_app_close_code_and_reason_reach_the_client() -> None:
    async with serving(starlette_app) as running:
        async with websockets_client.connect(running.url("/echo")) as ws:
            await ws.send("close")
            with pytest.raises(websockets_exceptions.ConnectionClosed):
                await wait_for(ws.recv())
            assert ws.close_code == 4001
            assert ws.close_reason == "bye"
        await until(lambda: any(s[0] == "closed" for s in seen))
        (event,) = [s[1] for s in seen if s[0] == "closed"]
        assert event["type"] == "websocket.disconnect"
        await until(lambda: not running.connections)


async def test_denial_response_with_body() -> None:
    async with serving(starlette_app) as running:
        with pytest.raises(websockets_exceptions.InvalidStatus) as info:
            await wait_for(websockets_client.connect(running.url("/deny")))
        response = info.value.response
        assert response.status_code == 403
        assert response.body == b"nope"
        await until(lambda: not running.connections)


async def test_close_before_accept_is_a_403() -> None:
    async with serving(starlette_app) as running:
        with pytest.raises(websockets_exceptions.InvalidStatus) as info:
            await wait_for(websockets_client.connect(running.url("/reject")))
        assert info.value.response.status_code == 403


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=1)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


async def test_handshake_lines_as_uvicorns_own_engines_write_them() -> None:
    """uvicorn.error at INFO: one line per handshake, accepted, refused (403) or denied;
    TRACE: connection made and lost (uvicorn's --log-level trace)."""
    lines = Lines()
    log = logging.getLogger("uvicorn.error")
    async with serving(starlette_app, log_level="trace") as running:
        log.addHandler(lines)
        try:
            async with websockets_client.connect(running.url("/echo?room=1")) as ws:
                await ws.send("x")
                assert await wait_for(ws.recv()) == "x"
            for path in ("/reject", "/deny"):
                with pytest.raises(websockets_exceptions.InvalidStatus):
                    await wait_for(websockets_client.connect(running.url(path)))
            await until(lambda: not running.connections)
        finally:
            log.removeHandler(lines)
    info = [text for level, text in lines.lines if level == logging.INFO]
    assert [text.partition(" - ")[2] for text in info] == [
        '"WebSocket /echo?room=1" [accepted]',
        '"WebSocket /reject" 403',
        '"WebSocket /deny" 403',
    ]
    assert all(text.startswith("127.0.0.1:") for text in info)
    trace = [text.partition(" - ")[2] for level, text in lines.lines if level < logging.DEBUG]
    assert trace.count("WebSocket connection made") == 3
    assert trace.count("WebSocket connection lost") == 3


async def test_ws_max_size_closes_with_1009() -> None:
    async with serving(starlette_app, ws_max_size=1024) as running:
        async with websockets_client.connect(running.url("/echo")) as ws:
            await ws.send(b"x" * 1024)
            assert await wait_for(ws.recv()) == b"x" * 1024
            await ws.send(b"x" * 1025)
            with pytest.raises(websockets_exceptions.ConnectionClosed):
                await wait_for(ws.recv())
            assert ws.close_code == 1009
        await until(lambda: ("disconnect", 1009, "") in seen)


async def test_an_app_that_raises_after_accept_closes_with_1011() -> None:
    async with serving(starlette_app) as running:
        async with websockets_client.connect(running.url("/echo")) as ws:
            await ws.send("raise")
            with pytest.raises(websockets_exceptions.ConnectionClosed):
                await wait_for(ws.recv())
            assert ws.close_code == 1011


@pytest.mark.parametrize("deflate", [True, False], ids=["deflate", "no-deflate"])
async def test_ws_per_message_deflate(deflate: bool) -> None:
    async with serving(starlette_app, ws_per_message_deflate=deflate) as running:
        async with websockets_client.connect(running.url("/echo")) as ws:
            header = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            assert ("permessage-deflate" in header) is deflate
            text = "compressible " * 1000
            await ws.send(text)
            assert await wait_for(ws.recv()) == text


async def test_ws_max_queue_pauses_reading() -> None:
    """With the app not reading, at most ws_max_queue messages are taken off the socket."""
    started = asyncio.Event()
    release = asyncio.Event()
    protocols: list[Any] = []

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        started.set()
        await release.wait()
        count = 0
        while (await receive())["type"] == "websocket.receive":
            count += 1
        seen.append(("count", count))

    async with serving(slow, ws_max_queue=4) as running:
        async with websockets_client.connect(running.url("/")) as ws:
            await wait_for(started.wait())
            protocols.extend(running.connections)
            for _ in range(200):
                await ws.send(b"m" * 20000)
            await asyncio.sleep(0.2)
            (proto,) = protocols
            assert 4 <= len(proto.queue) <= 5
            release.set()
            await asyncio.sleep(0.2)
        await until(lambda: bool(seen))
        assert seen == [("count", 200)]


# -- keepalive -----------------------------------------------------------------------------------


async def test_ping_interval_sends_pings_and_a_missed_pong_closes_with_1011() -> None:
    async with serving(starlette_app, ws_ping_interval=0.2, ws_ping_timeout=0.3) as running:
        peer = await raw_connect(running)
        b0, opcode, payload = await peer.read_frame()
        assert opcode == OP_PING
        # Not answered: the engine gives up after ws_ping_timeout (one more ping at most).
        pings = 1
        b0, opcode, payload = await peer.read_frame()
        while opcode == OP_PING and pings < 5:
            pings += 1
            b0, opcode, payload = await peer.read_frame()
        assert opcode == OP_CLOSE, f"still pinging after {pings} unanswered pings"
        assert int.from_bytes(payload[:2], "big") == 1011
        assert await peer.at_eof()
        await until(lambda: ("disconnect", 1011, "") in seen)
        await until(lambda: not running.connections)
        peer.close()


async def test_answered_pings_keep_the_connection_open() -> None:
    async with serving(starlette_app, ws_ping_interval=0.1, ws_ping_timeout=0.2) as running:
        peer = await raw_connect(running)
        pings = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.0
        while loop.time() < end:
            b0, opcode, payload = await peer.read_frame()
            assert opcode == OP_PING
            pings += 1
            peer.write(client_frame(payload, OP_PONG))
        assert pings >= 5
        peer.write(client_frame(b"still here", OP_TEXT))
        b0, opcode, payload = await peer.read_frame()
        while opcode == OP_PING:
            b0, opcode, payload = await peer.read_frame()
        assert (opcode, payload) == (OP_TEXT, b"still here")
        peer.close()


# -- held protocol errors ------------------------------------------------------------------------


async def test_a_message_before_an_invalid_frame_is_answered_before_the_1002() -> None:
    async with serving(starlette_app) as running:
        peer = await raw_connect(running)
        # One write: a text message, then a frame with a reserved opcode (RFC 6455 5.2).
        peer.write(client_frame(b"first", OP_TEXT) + client_frame(b"", 0x3))
        frames = [await peer.read_frame() for _ in range(2)]
        assert [(op, data) for _, op, data in frames] == [
            (OP_TEXT, b"first"),
            (OP_CLOSE, (1002).to_bytes(2, "big")),
        ]
        assert await peer.at_eof()
        await until(lambda: ("disconnect", 1002, "") in seen)
        peer.close()


# -- graceful shutdown ---------------------------------------------------------------------------


async def test_graceful_shutdown_closes_with_1012_and_does_not_hang() -> None:
    async with serving(starlette_app) as running:
        async with websockets_client.connect(running.url("/wait")) as ws:
            await until(lambda: len(running.connections) == 1)
            await running.stop(seconds=5)
            with pytest.raises(websockets_exceptions.ConnectionClosed):
                await wait_for(ws.recv())
            assert ws.close_code == 1012
        assert not running.connections
        assert ("disconnect", 1012, "") in seen


async def test_graceful_shutdown_with_an_unresponsive_client_is_bounded() -> None:
    """A peer that never answers the 1012 is dropped after the close timeout."""
    wsfast_timeout = wsfast.uvicorn.CLOSE_TIMEOUT
    try:
        wsfast.uvicorn.CLOSE_TIMEOUT = 0.5
        async with serving(starlette_app) as running:
            peer = await raw_connect(running, "/wait")
            await until(lambda: len(running.connections) == 1)
            await running.stop(seconds=5)
            assert not running.connections
            peer.close()
    finally:
        wsfast.uvicorn.CLOSE_TIMEOUT = wsfast_timeout


async def test_the_connection_leaves_uvicorns_set_when_it_closes() -> None:
    async with serving(starlette_app) as running:
        for _ in range(3):
            async with websockets_client.connect(running.url("/echo")) as ws:
                await ws.send("x")
                await wait_for(ws.recv())
                assert len(running.connections) == 1
            await until(lambda: not running.connections)
        peer = await raw_connect(running)
        peer.close()  # dropped without a closing handshake
        await until(lambda: not running.connections)
        await running.stop(seconds=5)


# -- FastAPI, websockets and node's ws -----------------------------------------------------------


async def test_fastapi_path_parameters_text_and_bytes() -> None:
    async with serving(fastapi_app) as running:
        async with websockets_client.connect(running.url("/ws/lobby"), subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"
            await ws.send("hi")
            assert await wait_for(ws.recv()) == "lobby:hi"
            await ws.send(b"abc")
            assert await wait_for(ws.recv()) == b"cba"
        await until(lambda: ("disconnect", 1000, "") in seen)


async def test_fastapi_websocket_exception_before_accept_is_a_403() -> None:
    async with serving(fastapi_app) as running:
        with pytest.raises(websockets_exceptions.InvalidStatus) as info:
            await wait_for(websockets_client.connect(running.url("/private")))
        assert info.value.response.status_code == 403


node = interop_node()

# A ws client: sends a text and a binary message, closes with 4000 once both came back, and
# prints what it saw as JSON lines.
_NODE_CLIENT_JS = r"""
const WebSocket = require('ws');
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const ws = new WebSocket(process.argv[1], ['chat']);
const got = [];
ws.on('open', () => {
  out({ event: 'open', protocol: ws.protocol, extensions: ws.extensions });
  ws.send('from node');
  ws.send(Buffer.from([1, 2, 3, 4]));
});
ws.on('message', (data, isBinary) => {
  got.push(isBinary ? [...data] : data.toString());
  if (got.length === 2) { out({ event: 'messages', got }); ws.close(4000, 'node-bye'); }
});
ws.on('error', (e) => out({ event: 'error', message: e.message }));
ws.on('close', (code, reason) => {
  out({ event: 'close', code, reason: reason.toString() });
  process.exit(0);
});
"""


async def run_node_client(url: str) -> list[dict[str, Any]]:
    binary = node.ensure_node_modules()
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-e",
        _NODE_CLIENT_JS,
        url,
        cwd=node.INTEROP_DIR,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), scaled(30))
    except asyncio.TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise AssertionError(f"node client did not finish against {url}") from None
    assert proc.returncode == 0, err.decode(errors="replace")
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


@pytest.mark.interop
async def test_node_ws_client_against_fastapi() -> None:
    async with serving(fastapi_app) as running:
        events = await run_node_client(running.url("/ws/node"))
        assert events[0]["event"] == "open"
        assert events[0]["protocol"] == "chat"
        assert "permessage-deflate" in events[0]["extensions"]
        assert events[1] == {"event": "messages", "got": ["node:from node", [4, 3, 2, 1]]}
        assert events[2] == {"event": "close", "code": 4000, "reason": "node-bye"}
        await until(lambda: ("disconnect", 4000, "node-bye") in seen)
        await until(lambda: not running.connections)


@pytest.mark.interop
async def test_node_ws_client_against_starlette() -> None:
    async with serving(starlette_app) as running:
        events = await run_node_client(running.url("/echo"))
        assert events[1] == {"event": "messages", "got": ["from node", [1, 2, 3, 4]]}
        assert events[2]["code"] == 4000

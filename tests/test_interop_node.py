"""Interop with node's ``ws`` 8, both ways, over 127.0.0.1.

* wsfast client -> node ``ws`` echo server (``tests/interop/echo_server.js``)
* node ``ws`` client (``tests/interop/client.js``) -> wsfast echo server

Covered (issue 2, "Done when"): text (ASCII and multi-byte), binary, empty, 125/126/127/65535/
65536-byte and 4 MiB messages, fragmented messages (including a code point split across
fragments), ping payloads (empty, short, 125 bytes) each way with the pong echoing them, and close
code and reason each way (including no code -> 1005 and a 123-byte reason). Written against the
public API of DESIGN section 3 (ws' event API); node's side prints what it saw as JSON lines,
compared by length and SHA-256 (and in full when short).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
from conftest import interop_node

import wsfast

node = interop_node()

node_echo_server = node.node_echo_server  # the module-scoped fixture, found here by name
describe, payload, is_binary_spec = node.describe, node.payload, node.is_binary_spec

pytestmark = pytest.mark.interop

MiB = 1024 * 1024
TIMEOUT = 20.0 * node.timeout_factor()
_ids = itertools.count()

MESSAGES: list[Any] = [
    pytest.param({"text": "hello"}, id="text"),
    pytest.param({"text": "h\u00e9llo w\u00f6rld \u20ac \U0001f600"}, id="text-utf8"),
    pytest.param({"text": ""}, id="empty-text"),
    pytest.param({"hex": ""}, id="empty-binary"),
    pytest.param({"hex": "00017f80feff"}, id="binary"),
] + [
    pytest.param({"pattern": kind, "length": n}, id=f"{kind}-{n}")
    for n in (125, 126, 127, 65535, 65536, 4 * MiB)
    for kind in ("text", "binary")
]

# A message in fragments: each part a payload spec; "binary" is the message's type.
FRAGMENTED: list[Any] = [
    pytest.param(
        {"parts": [{"text": "fra"}, {"text": "gmen"}, {"text": "ted"}], "binary": False}, id="text"
    ),
    # "é" = c3 a9 split across two text fragments: valid as a whole, so no 1007 on a prefix.
    pytest.param(
        {"parts": [{"hex": "68c3"}, {"hex": "a96c6c6f"}], "binary": False},
        id="text-split-code-point",
    ),
    pytest.param(
        {"parts": [{"hex": "0001"}, {"hex": ""}, {"hex": "feff"}], "binary": True},
        id="binary-with-empty-fragment",
    ),
    pytest.param(
        {"parts": [{"pattern": "binary", "length": 70000}] * 3, "binary": True}, id="binary-3x70000"
    ),
]

PINGS = [
    pytest.param("", id="empty"),
    pytest.param("00ff70696e67", id="short"),
    pytest.param(bytes(range(125)).hex(), id="125-bytes"),
]

CLOSES = [
    pytest.param(1000, "", id="1000"),
    pytest.param(4001, "bye \u00e9\u20ac", id="4001-utf8-reason"),
    pytest.param(3000, "r" * 123, id="3000-123-byte-reason"),
    pytest.param(None, "", id="no-code-1005"),
]


def _assembled(fragments: dict[str, Any]) -> tuple[bytes | str, bool]:
    raw = b"".join(
        p.encode() if isinstance(p, str) else p for p in map(payload, fragments["parts"])
    )
    binary = bool(fragments["binary"])
    return (raw if binary else raw.decode()), binary


def _strip(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("event", "path")}


def _as_sent(data: bytes | str, binary: bool) -> bytes | str:
    """What a message of this type must arrive as: str for text, bytes for binary."""
    if binary:
        return data.encode() if isinstance(data, str) else data
    return data.decode() if isinstance(data, bytes) else data


class Peer:
    """Records a wsfast WebSocket's events (DESIGN section 3 event API)."""

    def __init__(self, ws: Any) -> None:
        loop = asyncio.get_running_loop()
        self.ws = ws
        self.messages: list[tuple[bytes | str, bool]] = []
        self.pings: list[bytes] = []
        self.pongs: list[bytes] = []
        self.errors: list[BaseException] = []
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[tuple[int, str]] = loop.create_future()
        self._changed = asyncio.Event()
        ws.on("open", lambda: self.opened.done() or self.opened.set_result(None))
        ws.on("message", lambda data, is_binary: self._add(self.messages, (data, is_binary)))
        ws.on("ping", lambda data: self._add(self.pings, bytes(data)))
        ws.on("pong", lambda data: self._add(self.pongs, bytes(data)))
        ws.on("error", lambda exc: self._add(self.errors, exc))
        ws.on("close", self._on_close)

    def _add(self, box: list[Any], item: Any) -> None:
        box.append(item)
        self._changed.set()

    def _on_close(self, code: int, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result((code, reason))
        if not self.opened.done():
            self.opened.set_exception(AssertionError(f"closed before open: {code} {reason}"))
        self._changed.set()

    async def wait(self, box: list[Any], count: int) -> list[Any]:
        async def until() -> None:
            while len(box) < count:
                if self.closed.done():
                    raise AssertionError(f"closed {self.closed.result()} with {box}")
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), TIMEOUT)
        return box

    async def wait_closed(self) -> tuple[int, str]:
        return await asyncio.wait_for(asyncio.shield(self.closed), TIMEOUT)


async def _open_client(url: str, **options: Any) -> Peer:
    peer = Peer(wsfast.WebSocket(url, **options))
    await asyncio.wait_for(asyncio.shield(peer.opened), TIMEOUT)
    return peer


def _cmd(**command: Any) -> str:
    return "__cmd__" + json.dumps(command)


# --- wsfast client -> node ws server ---------------------------------------------------------


@pytest.fixture
def path() -> str:
    return f"/interop/{next(_ids)}"


@pytest.mark.parametrize("spec", MESSAGES)
async def test_client_echo(node_echo_server: Any, path: str, spec: dict[str, Any]) -> None:
    data, binary = payload(spec), is_binary_spec(spec)
    peer = await _open_client(node_echo_server.url + path)
    peer.ws.send(data, binary=binary)
    [(got, got_binary)] = await peer.wait(peer.messages, 1)
    seen = await node_echo_server.wait_event(path, lambda e: e["event"] == "message")
    assert _strip(seen) == describe(data, binary)
    assert got_binary is binary
    assert got == _as_sent(data, binary)
    peer.ws.close(1000)
    assert await peer.wait_closed() == (1000, "")
    assert not peer.errors


@pytest.mark.parametrize("fragments", FRAGMENTED)
async def test_client_sends_fragments(
    node_echo_server: Any, path: str, fragments: dict[str, Any]
) -> None:
    whole, binary = _assembled(fragments)
    peer = await _open_client(node_echo_server.url + path)
    parts = fragments["parts"]
    for i, part in enumerate(parts):
        peer.ws.send(payload(part), binary=binary, fin=i == len(parts) - 1)
    seen = await node_echo_server.wait_event(path, lambda e: e["event"] == "message")
    assert _strip(seen) == describe(whole, binary)
    [(got, got_binary)] = await peer.wait(peer.messages, 1)
    assert (got, got_binary) == (whole, binary)
    peer.ws.close(1000)
    await peer.wait_closed()


@pytest.mark.parametrize("fragments", FRAGMENTED)
async def test_client_receives_fragments(
    node_echo_server: Any, path: str, fragments: dict[str, Any]
) -> None:
    whole, binary = _assembled(fragments)
    peer = await _open_client(node_echo_server.url + path)
    peer.ws.send(_cmd(op="fragments", **fragments))
    [(got, got_binary)] = await peer.wait(peer.messages, 1)
    assert (got, got_binary) == (whole, binary)
    peer.ws.close(1000)
    await peer.wait_closed()


@pytest.mark.parametrize("hex_payload", PINGS)
async def test_client_ping(node_echo_server: Any, path: str, hex_payload: str) -> None:
    peer = await _open_client(node_echo_server.url + path)
    peer.ws.ping(bytes.fromhex(hex_payload))
    seen = await node_echo_server.wait_event(path, lambda e: e["event"] == "ping")
    assert seen["hex"] == hex_payload
    [pong] = await peer.wait(peer.pongs, 1)
    assert pong == bytes.fromhex(hex_payload)
    peer.ws.close(1000)
    await peer.wait_closed()


@pytest.mark.parametrize("hex_payload", PINGS)
async def test_client_answers_ping(node_echo_server: Any, path: str, hex_payload: str) -> None:
    peer = await _open_client(node_echo_server.url + path)
    peer.ws.send(_cmd(op="ping", hex=hex_payload))
    [ping] = await peer.wait(peer.pings, 1)
    assert ping == bytes.fromhex(hex_payload)
    seen = await node_echo_server.wait_event(path, lambda e: e["event"] == "pong")
    assert seen["hex"] == hex_payload  # auto_pong echoes the payload
    peer.ws.close(1000)
    await peer.wait_closed()


@pytest.mark.parametrize(("code", "reason"), CLOSES)
async def test_client_closes(
    node_echo_server: Any, path: str, code: int | None, reason: str
) -> None:
    peer = await _open_client(node_echo_server.url + path)
    if code is None:
        peer.ws.close()
    else:
        peer.ws.close(code, reason)
    expected = (1005, "") if code is None else (code, reason)
    seen = await node_echo_server.wait_event(path, lambda e: e["event"] == "close")
    assert (seen["code"], seen["reason"]) == expected
    assert await peer.wait_closed() == expected  # ws echoes the code and reason
    assert peer.ws.ready_state == wsfast.WebSocket.CLOSED
    assert not peer.errors


@pytest.mark.parametrize(("code", "reason"), CLOSES)
async def test_server_closes_client(
    node_echo_server: Any, path: str, code: int | None, reason: str
) -> None:
    peer = await _open_client(node_echo_server.url + path)
    peer.ws.send(_cmd(op="close", code=code, reason=reason) if code else _cmd(op="close"))
    expected = (1005, "") if code is None else (code, reason)
    assert await peer.wait_closed() == expected
    seen = await node_echo_server.wait_event(path, lambda e: e["event"] == "close")
    assert (seen["code"], seen["reason"]) == expected  # wsfast echoed them
    assert not peer.errors


# --- node ws client -> wsfast server ---------------------------------------------------------


class WsfastEchoServer:
    """A wsfast echo server recording each connection's events by request path; text messages
    "__cmd__{json}" make it act, as echo_server.js does."""

    def __init__(self) -> None:
        self.peers: dict[str, Peer] = {}
        self.wss: Any = None

    async def start(self) -> str:
        loop = asyncio.get_running_loop()
        listening: asyncio.Future[None] = loop.create_future()
        self.wss = wsfast.WebSocketServer(port=0, host="127.0.0.1")
        self.wss.on("connection", self._connection)
        self.wss.on("listening", lambda: listening.done() or listening.set_result(None))
        self.wss.on("error", lambda exc: listening.done() or listening.set_exception(exc))
        deadline = loop.time() + TIMEOUT
        while not listening.done():  # 'listening' may have fired before the listener was added
            try:
                if self.wss.address()[1]:
                    break
            except Exception:
                pass
            assert loop.time() < deadline, "wsfast server did not listen"
            await asyncio.wait([listening], timeout=0.02)
        host, port = self.wss.address()[:2]
        return f"ws://127.0.0.1:{port}"

    def _connection(self, ws: Any, request: Any) -> None:
        peer = self.peers[request.path] = Peer(ws)
        peer.opened.set_result(None)

        @ws.on("message")
        def message(data: bytes | str, is_binary: bool) -> None:
            if not is_binary and isinstance(data, str) and data.startswith("__cmd__"):
                peer.messages.pop()  # a command, not a message of the test
                self._command(ws, json.loads(data[len("__cmd__") :]))
            else:
                ws.send(data, binary=is_binary)

    @staticmethod
    def _command(ws: Any, cmd: dict[str, Any]) -> None:
        if cmd["op"] == "close":
            if cmd.get("code") is None:
                ws.close()
            else:
                ws.close(cmd["code"], cmd.get("reason", ""))
        elif cmd["op"] == "ping":
            ws.ping(bytes.fromhex(cmd["hex"]))
        elif cmd["op"] == "fragments":
            parts = cmd["parts"]
            for i, part in enumerate(parts):
                ws.send(payload(part), binary=bool(cmd["binary"]), fin=i == len(parts) - 1)

    def peer(self, path: str) -> Peer:
        assert path in self.peers, f"no wsfast connection for {path}: {sorted(self.peers)}"
        return self.peers[path]

    def close(self) -> None:
        if self.wss is not None:
            self.wss.close()


@pytest.fixture
async def wsfast_server() -> Any:
    server = WsfastEchoServer()
    url = await server.start()
    try:
        yield server, url
    finally:
        server.close()


def _events(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


def _send_step(spec: dict[str, Any]) -> dict[str, Any]:
    return {"op": "send", "binary": is_binary_spec(spec), **spec}


@pytest.mark.parametrize("spec", MESSAGES)
async def test_server_echo(wsfast_server: Any, path: str, spec: dict[str, Any]) -> None:
    server, url = wsfast_server
    data, binary = payload(spec), is_binary_spec(spec)
    events = await node.run_node_client(
        url + path,
        [
            _send_step(spec),
            {"op": "wait", "messages": 1},
            {"op": "close", "code": 1000},
        ],
    )
    assert [_strip(e) for e in _events(events, "message")] == [describe(data, binary)]
    assert _events(events, "close")[0]["code"] == 1000
    peer = server.peer(path)
    assert peer.messages == [(_as_sent(data, binary), binary)]
    assert await peer.wait_closed() == (1000, "")
    assert not _events(events, "error")


@pytest.mark.parametrize("fragments", FRAGMENTED)
async def test_server_receives_fragments(
    wsfast_server: Any, path: str, fragments: dict[str, Any]
) -> None:
    server, url = wsfast_server
    whole, binary = _assembled(fragments)
    events = await node.run_node_client(
        url + path,
        [
            {"op": "fragments", **fragments},
            {"op": "wait", "messages": 1},
            {"op": "close", "code": 1000},
        ],
    )
    assert server.peer(path).messages == [(whole, binary)]
    assert [_strip(e) for e in _events(events, "message")] == [describe(whole, binary)]


@pytest.mark.parametrize("fragments", FRAGMENTED)
async def test_server_sends_fragments(
    wsfast_server: Any, path: str, fragments: dict[str, Any]
) -> None:
    _, url = wsfast_server
    whole, binary = _assembled(fragments)
    events = await node.run_node_client(
        url + path,
        [
            {"op": "send", "text": _cmd(op="fragments", **fragments)},
            {"op": "wait", "messages": 1},
            {"op": "close", "code": 1000},
        ],
    )
    assert [_strip(e) for e in _events(events, "message")] == [describe(whole, binary)]


@pytest.mark.parametrize("hex_payload", PINGS)
async def test_server_answers_ping(wsfast_server: Any, path: str, hex_payload: str) -> None:
    server, url = wsfast_server
    events = await node.run_node_client(
        url + path,
        [
            {"op": "ping", "hex": hex_payload},
            {"op": "wait", "pongs": 1},
            {"op": "close", "code": 1000},
        ],
    )
    assert [e["hex"] for e in _events(events, "pong")] == [hex_payload]
    assert server.peer(path).pings == [bytes.fromhex(hex_payload)]


@pytest.mark.parametrize("hex_payload", PINGS)
async def test_server_ping(wsfast_server: Any, path: str, hex_payload: str) -> None:
    server, url = wsfast_server
    events = await node.run_node_client(
        url + path,
        [
            {"op": "send", "text": _cmd(op="ping", hex=hex_payload)},
            {"op": "wait", "pings": 1},
            {"op": "close", "code": 1000},
        ],
    )
    assert [e["hex"] for e in _events(events, "ping")] == [hex_payload]
    peer = server.peer(path)
    await peer.wait(peer.pongs, 1)
    assert peer.pongs == [bytes.fromhex(hex_payload)]  # node's auto-pong echoes the payload


@pytest.mark.parametrize(("code", "reason"), CLOSES)
async def test_node_client_closes(
    wsfast_server: Any, path: str, code: int | None, reason: str
) -> None:
    server, url = wsfast_server
    step: dict[str, Any] = (
        {"op": "close"} if code is None else {"op": "close", "code": code, "reason": reason}
    )
    events = await node.run_node_client(url + path, [step])
    expected = (1005, "") if code is None else (code, reason)
    [closed] = _events(events, "close")
    assert (closed["code"], closed["reason"]) == expected  # wsfast echoed them
    assert await server.peer(path).wait_closed() == expected
    assert not _events(events, "error")


@pytest.mark.parametrize(("code", "reason"), CLOSES)
async def test_server_closes_node_client(
    wsfast_server: Any, path: str, code: int | None, reason: str
) -> None:
    server, url = wsfast_server
    command = _cmd(op="close") if code is None else _cmd(op="close", code=code, reason=reason)
    events = await node.run_node_client(url + path, [{"op": "send", "text": command}])
    expected = (1005, "") if code is None else (code, reason)
    [closed] = _events(events, "close")
    assert (closed["code"], closed["reason"]) == expected
    assert await server.peer(path).wait_closed() == expected
    assert not _events(events, "error")

"""permessage-deflate interop with node's ``ws`` 8, both ways, over 127.0.0.1 (issue 3).

* wsfast client -> node ``ws`` echo server (``tests/interop/echo_server.js``)
* node ``ws`` client (``tests/interop/client.js``) -> wsfast echo server

Every connection runs through :class:`Tap`, a TCP relay that records the handshake headers and
the header of every frame each way, so the tests see what went over the wire: RSV1 on the first
frame of a compressed message only, ``compress=False`` honoured, context takeover (a repeated
message shrinks with it and repeats byte for byte without it) and the compressed size.

Covered: each of the four parameters alone and in combinations (``CONFIGS``), text and binary,
small (under and over the 1024-byte threshold), empty and 1 MiB (text-like and random)
messages, several in a row on one connection, fragmented messages each way, the negotiated
extension names, parameters and response header against what ``ws`` reports, a window of 8
bits (we deflate with 9, ``ws`` inflates with 8) on 1 MiB of text, and node clients' offers
that a wsfast server and a ``ws`` server with the same options must accept or refuse alike
(and a wsfast client offering and accepting as a ws client does).

Two divergences from ws that these tests found are fixed and kept covered: ws' threshold
applies only without context takeover, and an empty options dict enables permessage-deflate.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import interop_node

import wsfast
from wsfast.sender import SAMPLE_FROM, _incompressible

node = interop_node()

describe, payload, is_binary_spec = node.describe, node.payload, node.is_binary_spec

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

MiB = 1024 * 1024
THRESHOLD = 1024
TIMEOUT = 30.0 * node.timeout_factor()
PMD = "permessage-deflate"
_ids = itertools.count()

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0, 1, 2


# --- configurations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """perMessageDeflate options of the client and of the server (snake_case, ws' names)."""

    client: dict[str, Any]
    server: dict[str, Any]


def _both(**options: Any) -> Config:
    return Config(dict(options), dict(options))


CONFIGS = [
    pytest.param(Config({}, {}), id="defaults"),
    pytest.param(_both(server_no_context_takeover=True), id="server_no_context_takeover"),
    pytest.param(_both(client_no_context_takeover=True), id="client_no_context_takeover"),
    *(
        pytest.param(_both(server_max_window_bits=bits), id=f"server_max_window_bits-{bits}")
        for bits in (9, 10, 15)
    ),
    *(
        pytest.param(_both(client_max_window_bits=bits), id=f"client_max_window_bits-{bits}")
        for bits in (True, 8, 10, 15)
    ),
    # The server alone sets a parameter; the client offers ws' defaults.
    pytest.param(Config({}, {"client_max_window_bits": 10}), id="server-sets-client-bits-10"),
    pytest.param(
        Config({}, {"server_max_window_bits": 9, "server_no_context_takeover": True}),
        id="server-sets-server-bits-9-no-takeover",
    ),
    pytest.param(
        _both(
            server_no_context_takeover=True,
            client_no_context_takeover=True,
            server_max_window_bits=8,
            client_max_window_bits=8,
        ),
        id="both-no-takeover-both-bits-8",
    ),
    pytest.param(
        _both(client_max_window_bits=15, server_max_window_bits=9), id="client-15-server-9"
    ),
    pytest.param(
        _both(client_no_context_takeover=True, server_max_window_bits=10, threshold=100),
        id="client-no-takeover-server-10-threshold-100",
    ),
]


def _camel(options: dict[str, Any]) -> dict[str, Any]:
    """ws' perMessageDeflate object for snake_case options."""
    return {
        k.split("_")[0] + "".join(w.title() for w in k.split("_")[1:]): v
        for k, v in options.items()
    }


def _wsfast_option(options: dict[str, Any]) -> dict[str, Any] | bool:
    # An empty dict must mean ws' defaults (test_empty_options_dict_enables_deflate); until it
    # does, True says the same thing.
    return options or True


# --- the tap: a relay that records frame headers ------------------------------------------------


@dataclass
class Frame:
    fin: bool
    rsv1: bool
    opcode: int
    length: int


@dataclass
class Direction:
    """One direction of a tapped connection: its HTTP head, then the headers of its frames."""

    head: bytes = b""
    frames: list[Frame] = field(default_factory=list)
    _buffer: bytearray = field(default_factory=bytearray)
    _in_head: bool = True
    _skip: int = 0

    def feed(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        while True:
            if self._in_head:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                self.head = bytes(buf[: end + 4])
                del buf[: end + 4]
                self._in_head = False
            if self._skip:
                n = min(self._skip, len(buf))
                del buf[:n]
                self._skip -= n
                if self._skip:
                    return
            if len(buf) < 2:
                return
            b0, b1 = buf[0], buf[1]
            length, offset = b1 & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, offset = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, offset = int.from_bytes(buf[2:10], "big"), 10
            if b1 & 0x80:
                offset += 4
            if len(buf) < offset:
                return
            self.frames.append(Frame(bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, length))
            del buf[:offset]
            self._skip = length

    def header(self, name: str) -> str | None:
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    def data_frames(self) -> list[Frame]:
        return [f for f in self.frames if f.opcode in (OP_CONTINUATION, OP_TEXT, OP_BINARY)]

    def messages(self) -> list[list[Frame]]:
        """Data frames grouped by message."""
        out: list[list[Frame]] = []
        for frame in self.data_frames():
            if frame.opcode != OP_CONTINUATION:
                out.append([])
            out[-1].append(frame)
        return out


@dataclass
class Tapped:
    up: Direction = field(default_factory=Direction)  # client -> server
    down: Direction = field(default_factory=Direction)  # server -> client


class Tap:
    """A TCP relay on 127.0.0.1 in front of ``target_port``, one :class:`Tapped` a connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections: list[Tapped] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> Tap:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def only(self) -> Tapped:
        assert len(self.connections) == 1, self.connections
        return self.connections[0]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        tapped = Tapped()
        self.connections.append(tapped)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, tapped.up), self._pipe(up_reader, writer, tapped.down)
            )
        finally:
            for w in (writer, up_writer):
                w.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: Direction
    ) -> None:
        try:
            while data := await reader.read(256 * 1024):
                direction.feed(data)  # recorded before the peer can see it
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            writer.close()


# --- peers ------------------------------------------------------------------------------------


class Peer:
    """Records a wsfast WebSocket's messages and close."""

    def __init__(self, ws: Any) -> None:
        loop = asyncio.get_running_loop()
        self.ws = ws
        self.messages: list[tuple[bytes | str, bool]] = []
        self.errors: list[BaseException] = []
        self.pings: list[bytes] = []
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[tuple[int, str]] = loop.create_future()
        self._changed = asyncio.Event()
        ws.on("open", self._on_open)
        ws.on("message", self._on_message)
        ws.on("ping", lambda data: self.pings.append(bytes(data)))
        ws.on("error", self._on_error)
        ws.on("close", self._on_close)

    def _on_open(self) -> None:
        if not self.opened.done():
            self.opened.set_result(None)

    def _on_message(self, data: bytes | str, is_binary: bool) -> None:
        self.messages.append((data, is_binary))
        self._changed.set()

    def _on_error(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self._changed.set()

    def _on_close(self, code: int, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result((code, reason))
        if not self.opened.done():
            self.opened.set_exception(AssertionError(f"closed before open: {code} {reason}"))
        self._changed.set()

    async def wait_messages(self, count: int) -> list[tuple[bytes | str, bool]]:
        async def until() -> None:
            while len(self.messages) < count:
                if self.closed.done():
                    raise AssertionError(
                        f"closed {self.closed.result()} after {len(self.messages)} of {count} "
                        f"messages, errors {self.errors}"
                    )
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), TIMEOUT)
        return self.messages

    async def wait_closed(self) -> tuple[int, str]:
        return await asyncio.wait_for(asyncio.shield(self.closed), TIMEOUT)


def _cmd(**command: Any) -> str:
    return "__cmd__" + json.dumps(command)


class WsfastEchoServer:
    """A wsfast echo server with permessage-deflate options; "__cmd__{json}" text messages
    make it send (``send`` and ``fragments``, with ``compress``), as echo_server.js does."""

    def __init__(self, per_message_deflate: Any) -> None:
        self.per_message_deflate = per_message_deflate
        self.peers: dict[str, Peer] = {}
        self.wss: Any = None
        self.port = 0

    async def __aenter__(self) -> WsfastEchoServer:
        self.wss = wsfast.WebSocketServer(
            port=0, host="127.0.0.1", per_message_deflate=self.per_message_deflate
        )
        self.wss.on("connection", self._connection)
        await node.wait_listening(self.wss, TIMEOUT)
        self.port = self.wss.address()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.wss.close()

    def _connection(self, ws: Any, request: Any) -> None:
        peer = self.peers[request.path] = Peer(ws)
        peer.opened.set_result(None)

        def message(data: bytes | str, is_binary: bool) -> None:
            if not is_binary and isinstance(data, str) and data.startswith("__cmd__"):
                peer.messages.pop()  # a command, not a message of the test
                cmd = json.loads(data[len("__cmd__") :])
                compress = cmd.get("compress")
                if cmd["op"] == "send":
                    ws.send(payload(cmd), binary=is_binary_spec(cmd), compress=compress)
                elif cmd["op"] == "fragments":
                    parts = cmd["parts"]
                    for i, part in enumerate(parts):
                        ws.send(
                            payload(part),
                            binary=bool(cmd["binary"]),
                            fin=i == len(parts) - 1,
                            compress=compress,
                        )
            else:
                ws.send(data, binary=is_binary)

        ws.on("message", message)

    def peer(self, path: str) -> Peer:
        assert path in self.peers, f"no wsfast connection for {path}: {sorted(self.peers)}"
        return self.peers[path]


class NodeServers:
    """node ws echo servers, one per set of perMessageDeflate options, for a module."""

    def __init__(self) -> None:
        self._servers: dict[str, Any] = {}

    def get(self, options: dict[str, Any] | bool) -> Any:
        key = json.dumps(options, sort_keys=True)
        if key not in self._servers:
            pmd = _camel(options) if isinstance(options, dict) else options
            self._servers[key] = node.NodeEchoServer({"perMessageDeflate": pmd})
        return self._servers[key]

    def stop(self) -> None:
        for server in self._servers.values():
            server.stop()


@pytest.fixture(scope="module")
def node_servers() -> Any:
    servers = NodeServers()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def path() -> str:
    return f"/deflate/{next(_ids)}"


def _events(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


def _strip(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k in ("binary", "length", "sha256", "data")}


def _as_received(data: bytes | str, binary: bool) -> bytes | str:
    if binary:
        return data.encode() if isinstance(data, str) else data
    return data.decode() if isinstance(data, bytes) else data


# --- the conversation: many messages on one connection --------------------------------------


@dataclass(frozen=True)
class Action:
    """What the client does: send a message, send it in fragments, or ask the server to."""

    kind: str  # "send" | "fragments" | "command"
    spec: dict[str, Any]  # a payload spec (send), or {"parts", "binary"} (fragments, command)
    compress: bool | None = None
    server_op: str = ""  # for a command: "send" or "fragments"

    def whole(self) -> tuple[bytes | str, bool]:
        """The message as it arrives, and whether it is binary."""
        if "parts" in self.spec:
            raw = b"".join(
                p.encode() if isinstance(p, str) else p for p in map(payload, self.spec["parts"])
            )
            binary = bool(self.spec["binary"])
            return (raw if binary else raw.decode()), binary
        binary = is_binary_spec(self.spec)
        return _as_received(payload(self.spec), binary), binary

    def size(self) -> int:
        """Byte length of the first frame the sender hands to send()."""
        spec = self.spec["parts"][0] if "parts" in self.spec else self.spec
        data = payload(spec)
        return len(data.encode() if isinstance(data, str) else data)

    def parts(self) -> int:
        return len(self.spec["parts"]) if "parts" in self.spec else 1

    def command(self) -> str:
        extra = {} if self.compress is None else {"compress": self.compress}
        return _cmd(op=self.server_op, **self.spec, **extra)

    def _raw(self, compress: bool | None) -> bool:
        """Whether wsfast sends this message uncompressed although compression is on: a whole
        message it samples as incompressible (``sender._incompressible``); ws never does."""
        if compress is not None or self.parts() != 1:
            return False
        data = payload(self.spec)
        data = data.encode() if isinstance(data, str) else data
        return len(data) >= SAMPLE_FROM and _incompressible(data)

    def client_sends(self) -> dict[str, Any]:
        """The message the client itself sends: its frames (count, first-frame size, compress,
        and whether a wsfast sender leaves it uncompressed)."""
        if self.kind == "command":
            return {"parts": 1, "size": len(self.command()), "compress": None, "raw": False}
        return {
            "parts": self.parts(),
            "size": self.size(),
            "compress": self.compress,
            "raw": self.kind == "send" and self._raw(self.compress),
        }

    def server_sends(self) -> dict[str, Any]:
        """The message the server sends back: an echo (one frame) or the command's result."""
        if self.kind == "command":
            return {
                "parts": self.parts(),
                "size": self.size(),
                "compress": self.compress,
                "raw": self.server_op == "send" and self._raw(self.compress),
            }
        whole, _ = self.whole()
        data = whole.encode() if isinstance(whole, str) else whole
        raw = len(data) >= SAMPLE_FROM and _incompressible(data)
        return {"parts": 1, "size": len(data), "compress": None, "raw": raw}


WORDS_2000 = {"pattern": "words", "length": 2000}
# 3000 random bytes twice: compressible only with a window reaching 3000 bytes back (12 bits).
FAR_REPEAT = {"hex": (node.random_bytes(3000) * 2).hex()}

CONVERSATION = [
    Action("send", {"pattern": "words", "length": 100}),  # under the threshold
    Action("send", WORDS_2000),  # over it
    Action("send", WORDS_2000),  # the same again: smaller with context takeover
    Action("send", {"hex": "00017f80feff"}),
    Action("send", {"pattern": "binary", "length": 4096}),
    Action("send", {"text": ""}),
    Action("send", {"hex": ""}),
    Action("send", {"text": "h\u00e9llo w\u00f6rld \u20ac \U0001f600 " * 100}),
    Action("send", {"pattern": "words", "length": MiB}),
    Action("send", {"pattern": "random", "length": MiB}),  # incompressible: wsfast sends it raw
    Action("send", WORDS_2000, compress=False),
    Action("send", {"pattern": "random", "length": MiB}, compress=True),  # deflated all the same
    Action(
        "fragments",
        {
            "parts": [{"pattern": "words", "length": 3000}, {"text": ""}, {"text": "the end"}],
            "binary": False,
        },
    ),
    Action(
        "fragments",
        {
            "parts": [{"pattern": "random", "length": 70000}, {"pattern": "binary", "length": 10}],
            "binary": True,
        },
    ),
    Action("command", WORDS_2000, server_op="send"),
    Action("command", WORDS_2000, compress=False, server_op="send"),
    Action(
        "command",
        {
            "parts": [{"pattern": "words", "length": 5000}, {"pattern": "words", "length": 9}],
            "binary": False,
        },
        server_op="fragments",
    ),
    Action(
        "command",
        {"parts": [{"pattern": "binary", "length": 2000}, {"hex": "ff"}], "binary": True},
        compress=False,
        server_op="fragments",
    ),
    Action("send", FAR_REPEAT),  # last: _check_wire looks for it there
]


def _node_steps(actions: list[Action]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for action in actions:
        extra = {} if action.compress is None else {"compress": action.compress}
        if action.kind == "send":
            steps.append({"op": "send", "binary": is_binary_spec(action.spec), **action.spec})
            steps[-1].update(extra)
        elif action.kind == "fragments":
            steps.append({"op": "fragments", **action.spec, **extra})
        else:
            steps.append({"op": "send", "text": action.command()})
    return steps


def _wsfast_send(ws: Any, action: Action) -> None:
    if action.kind == "command":
        ws.send(action.command())
    elif action.kind == "send":
        ws.send(payload(action.spec), binary=is_binary_spec(action.spec), compress=action.compress)
    else:
        parts = action.spec["parts"]
        for i, part in enumerate(parts):
            ws.send(
                payload(part),
                binary=bool(action.spec["binary"]),
                fin=i == len(parts) - 1,
                compress=action.compress,
            )


def _check_wire(
    messages: list[list[Frame]],
    sent: list[dict[str, Any]],
    *,
    no_takeover: bool,
    window_bits: int,
    threshold: int,
    sender_is_ws: bool,
) -> None:
    """One direction's frames against what was sent, message by message."""
    assert [len(frames) for frames in messages] == [s["parts"] for s in sent]
    for frames, s in zip(messages, sent, strict=True):
        first, rest = frames[0], frames[1:]
        assert all(not f.rsv1 for f in rest), f"RSV1 on a continuation frame: {frames}"
        assert all(f.opcode == OP_CONTINUATION for f in rest)
        if s["compress"] is False:
            assert not first.rsv1, f"compress=False sent compressed: {s} {frames}"
        elif s["raw"] and not sender_is_ws:
            assert not first.rsv1 and first.length == s["size"], f"{s} {frames}"
        elif s["size"] >= threshold:
            assert first.rsv1, f"not compressed: {s} {frames}"
        elif sender_is_ws:
            # ws' threshold applies only when the sender has no context takeover.
            assert first.rsv1 is (not no_takeover), f"{s} {frames}"
    # Messages 1 and 2 are the same 2000 bytes: without context takeover the two compress the
    # same; with it and a window that reaches back 2000 bytes, the second is a few
    # back-references to the first.
    one, two = messages[1][0].length, messages[2][0].length
    if no_takeover:
        assert one == two, (one, two)
    elif window_bits >= 12:
        assert two < one / 4, (one, two)
    # 1 MiB: text compresses to well under half; random data goes raw from wsfast when the
    # choice is left to it (always in an echo), compressed from ws, and deflated it stays about
    # its size. Message 11 is the random MiB sent with compress=True.
    text = messages[8][0]
    assert text.rsv1 and text.length < MiB / 2, text
    for index in (9, 11):
        random = messages[index][0]
        if sent[index]["raw"] and not sender_is_ws:
            assert not random.rsv1 and random.length == MiB, random
        else:
            assert random.rsv1 and MiB <= random.length < MiB * 1.01, random
    # The far repeat shows the sender's window: one that reaches back 3000 bytes halves it;
    # a smaller one (as negotiated) cannot, and the message stays about its size.
    far = messages[-1][0]
    assert far.rsv1, far
    if window_bits >= 12:
        assert far.length < 3000 * 1.1, far
    else:
        assert far.length >= 6000, far


def _window(params: dict[str, Any], sender: str) -> int:
    bits = params.get(f"{sender}_max_window_bits")
    return bits if isinstance(bits, int) and not isinstance(bits, bool) else 15


def _check_conversation_wire(
    tapped: Tapped, params: dict[str, Any], config: Config, *, client_is_ws: bool
) -> None:
    """Both directions: the client's frames are exactly the conversation, the server's its
    answers (echoes and commanded messages)."""
    up = [a.client_sends() for a in CONVERSATION]
    down = [a.server_sends() for a in CONVERSATION]
    for sender, direction, sent, options, sender_is_ws in (
        ("client", tapped.up, up, config.client, client_is_ws),
        ("server", tapped.down, down, config.server, not client_is_ws),
    ):  # fmt: skip
        _check_wire(
            direction.messages(),
            sent,
            no_takeover=bool(params.get(f"{sender}_no_context_takeover")),
            window_bits=_window(params, sender),
            threshold=options.get("threshold", THRESHOLD),
            sender_is_ws=sender_is_ws,
        )


@pytest.mark.parametrize("config", CONFIGS)
async def test_wsfast_client_node_server(node_servers: Any, path: str, config: Config) -> None:
    server = node_servers.get(config.server)
    async with Tap(server.port) as tap:
        peer = Peer(
            wsfast.WebSocket(tap.url + path, per_message_deflate=_wsfast_option(config.client))
        )
        await asyncio.wait_for(asyncio.shield(peer.opened), TIMEOUT)
        for action in CONVERSATION:
            _wsfast_send(peer.ws, action)
        await peer.wait_messages(len(CONVERSATION))
        assert peer.messages == [a.whole() for a in CONVERSATION]
        peer.ws.close(1000)
        assert await peer.wait_closed() == (1000, "")
        assert not peer.errors
        # What node received, in order (commands are logged as such, not as messages).
        received = [_strip(e) for e in server.events_for(path) if e["event"] == "message"]
        assert received == [describe(*a.whole()) for a in CONVERSATION if a.kind != "command"]
        [connection] = [e for e in server.events_for(path) if e["event"] == "connection"]
        assert connection["extensions"] == peer.ws.extensions == PMD
        assert connection["extensionParams"] == peer.ws.extension_params
        tapped = tap.only()
        assert tapped.down.header("Sec-WebSocket-Extensions") == connection["responseExtensions"]
        _check_conversation_wire(
            tapped, connection["extensionParams"][PMD], config, client_is_ws=False
        )


@pytest.mark.parametrize("config", CONFIGS)
async def test_node_client_wsfast_server(path: str, config: Config) -> None:
    async with WsfastEchoServer(_wsfast_option(config.server)) as server, Tap(server.port) as tap:
        events = await node.run_node_client(
            tap.url + path,
            _node_steps(CONVERSATION)
            + [
                {"op": "wait", "messages": len(CONVERSATION)},
                {"op": "close", "code": 1000},
            ],
            options={"perMessageDeflate": _camel(config.client)},
            timeout=TIMEOUT,
        )
        assert not _events(events, "error"), events
        assert [_strip(e) for e in _events(events, "message")] == [
            describe(*a.whole()) for a in CONVERSATION
        ]
        peer = server.peer(path)
        assert peer.messages == [a.whole() for a in CONVERSATION if a.kind != "command"]
        assert await peer.wait_closed() == (1000, "")
        assert not peer.errors
        [opened] = _events(events, "open")
        assert opened["extensions"] == peer.ws.extensions == PMD
        assert opened["extensionParams"] == peer.ws.extension_params
        tapped = tap.only()
        assert tapped.down.header("Sec-WebSocket-Extensions") == opened["responseExtensions"]
        _check_conversation_wire(tapped, peer.ws.extension_params[PMD], config, client_is_ws=True)


# --- negotiation: the same offers against a wsfast server and a ws server ---------------------

# (client options, server options): ws 8.23's acceptAsServer/acceptAsClient decide.
OFFERS = [
    pytest.param({"client_max_window_bits": 8}, {"client_max_window_bits": 10},
                 id="offer-client-bits-8-server-wants-10-refused"),
    pytest.param({"client_max_window_bits": 10}, {"client_max_window_bits": 8},
                 id="offer-client-bits-10-server-wants-8"),
    pytest.param({"client_max_window_bits": 15}, {"client_max_window_bits": 8},
                 id="offer-client-bits-15-server-wants-8"),
    pytest.param({}, {"client_max_window_bits": 10}, id="offer-bare-client-bits-server-wants-10"),
    pytest.param({"client_max_window_bits": False}, {"client_max_window_bits": 10},
                 id="no-client-bits-server-wants-10-refused"),
    pytest.param({"client_max_window_bits": 10}, {"client_max_window_bits": False},
                 id="offer-client-bits-10-server-false"),
    pytest.param({"server_max_window_bits": 10}, {"server_max_window_bits": 12},
                 id="offer-server-bits-10-server-wants-12-refused"),
    pytest.param({"server_max_window_bits": 12}, {"server_max_window_bits": 10},
                 id="offer-server-bits-12-server-wants-10"),
    pytest.param({"server_max_window_bits": 12}, {"server_max_window_bits": False},
                 id="offer-server-bits-server-false-refused"),
    pytest.param({"server_no_context_takeover": True}, {"server_no_context_takeover": False},
                 id="offer-server-no-takeover-server-false-refused"),
    pytest.param({"client_no_context_takeover": False}, {"client_no_context_takeover": True},
                 id="server-client-no-takeover-client-false-fails"),
    pytest.param({}, {"server_no_context_takeover": True, "client_no_context_takeover": True},
                 id="server-sets-both-no-takeover"),
    pytest.param(
        {"server_no_context_takeover": True, "client_no_context_takeover": True,
         "server_max_window_bits": 9, "client_max_window_bits": 11},
        {},
        id="offer-all-four-server-defaults",
    ),
    pytest.param(
        {"server_max_window_bits": 11, "client_max_window_bits": 11},
        {"server_max_window_bits": 9, "client_max_window_bits": 8, "threshold": 10},
        id="offer-bits-11-server-wants-9-and-8",
    ),
]  # fmt: skip


def _response(tapped: Tapped) -> tuple[int, str | None]:
    """The status of the handshake response and its Sec-WebSocket-Extensions header."""
    status = int(tapped.down.head.split(b" ", 2)[1]) if tapped.down.head else 0
    return status, tapped.down.header("Sec-WebSocket-Extensions")


async def _node_client_params(url: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """The extension params a node client negotiated, None when its handshake failed."""
    events = await node.run_node_client(
        url, [{"op": "close", "code": 1000}], options={"perMessageDeflate": _camel(options)}
    )
    opened = _events(events, "open")
    return opened[0]["extensionParams"] if opened else None


async def _wsfast_client_params(url: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """The extension params a wsfast client negotiated, None when its handshake failed."""
    peer = Peer(wsfast.WebSocket(url, per_message_deflate=_wsfast_option(options)))
    try:
        await asyncio.wait_for(asyncio.shield(peer.opened), TIMEOUT)
    except AssertionError:  # closed before open
        assert peer.errors, "a failed handshake without an 'error' event"
        return None
    params: dict[str, Any] = peer.ws.extension_params
    peer.ws.close(1000)
    await peer.wait_closed()
    return params


async def _node_server_params(server: Any, path: str, status: int) -> dict[str, Any] | None:
    """The params of the ws server's connection, which exists once it answered 101."""
    if status != 101:
        assert not [e for e in server.events_for(path) if e["event"] == "connection"]
        return None
    connection = await server.wait_event(path, lambda e: e["event"] == "connection")
    params: dict[str, Any] = connection["extensionParams"]
    return params


@pytest.mark.parametrize(("client", "server"), OFFERS)
async def test_node_client_offer_wsfast_server_as_ws_server(
    node_servers: Any, path: str, client: dict[str, Any], server: dict[str, Any]
) -> None:
    """A node client's offer: a wsfast server answers (status, header, params on both ends)
    exactly as a ws server with the same options."""
    outcomes = []
    ws_server = node_servers.get(server)
    async with WsfastEchoServer(_wsfast_option(server)) as wss:
        for name, port in (("wsfast", wss.port), ("ws", ws_server.port)):
            url_path = f"{path}/{name}"
            async with Tap(port) as tap:
                client_params = await _node_client_params(tap.url + url_path, client)
                status, header = _response(tap.only())
            if name == "wsfast":
                peer = wss.peers.get(url_path)
                server_params = None if peer is None else peer.ws.extension_params
                if peer is not None:
                    await peer.wait_closed()
            else:
                server_params = await _node_server_params(ws_server, url_path, status)
            outcomes.append(
                {"status": status, "header": header, "client": client_params,
                 "server": server_params}
            )  # fmt: skip
    wsfast_outcome, ws_outcome = outcomes
    assert wsfast_outcome == ws_outcome
    assert ws_outcome["status"] in (101, 400)


@pytest.mark.parametrize(("client", "server"), OFFERS)
async def test_wsfast_client_offer_as_ws_client(
    node_servers: Any, path: str, client: dict[str, Any], server: dict[str, Any]
) -> None:
    """A wsfast client offers what a ws client with the same options offers (the request
    header, to the letter) and accepts or refuses the ws server's answer as the ws client."""
    ws_server = node_servers.get(server)
    outcomes = []
    async with Tap(ws_server.port) as tap:
        for name, connect in (("wsfast", _wsfast_client_params), ("ws", _node_client_params)):
            url_path = f"{path}/{name}"
            client_params = await connect(tap.url + url_path, client)
            tapped = tap.connections[-1]
            response = _response(tapped)
            outcomes.append(
                {
                    "offer": tapped.up.header("Sec-WebSocket-Extensions"),
                    "response": response,
                    "client": client_params,
                    "server": await _node_server_params(ws_server, url_path, response[0]),
                }
            )
    wsfast_outcome, ws_outcome = outcomes
    assert wsfast_outcome == ws_outcome


# --- the threshold, window 8, and ws' defaults ------------------------------------------------


@pytest.mark.parametrize(
    "no_takeover",
    [
        pytest.param(False, id="takeover"),
        pytest.param(True, id="no-takeover"),
    ],
)
@pytest.mark.parametrize("role", ["client", "server"])
async def test_small_message_compressed_as_ws_would(
    node_servers: Any, path: str, role: str, no_takeover: bool
) -> None:
    """A 100-byte message, under the threshold: ws compresses it unless the sender has no
    context takeover. A ws peer sends the same message for comparison."""
    options = {f"{role}_no_context_takeover": True} if no_takeover else {}
    small = {"pattern": "words", "length": 100}
    if role == "client":  # wsfast client and node client, each to a ws server
        server = node_servers.get(options)
        async with Tap(server.port) as tap:
            peer = Peer(
                wsfast.WebSocket(tap.url + path, per_message_deflate=_wsfast_option(options))
            )
            await asyncio.wait_for(asyncio.shield(peer.opened), TIMEOUT)
            peer.ws.send(payload(small))
            await peer.wait_messages(1)
            peer.ws.close(1000)
            await peer.wait_closed()
            await node.run_node_client(
                tap.url + path + "/ws",
                [{"op": "send", **small}, {"op": "wait", "messages": 1}, {"op": "close"}],
                options={"perMessageDeflate": _camel(options)},
            )
            wsfast_frame, ws_frame = (c.up.data_frames()[0] for c in tap.connections)
    else:  # a wsfast server and a ws server, each told by a node client to send it
        steps = [
            {"op": "send", "text": _cmd(op="send", **small)},
            {"op": "wait", "messages": 1},
            {"op": "close"},
        ]
        frames = []
        async with WsfastEchoServer(_wsfast_option(options)) as wss:
            for port in (wss.port, node_servers.get(options).port):
                async with Tap(port) as tap:
                    await node.run_node_client(tap.url + path, steps, options={})
                    frames.append(tap.only().down.data_frames()[0])
        wsfast_frame, ws_frame = frames
    assert ws_frame.rsv1 is (not no_takeover)  # ws' rule
    assert wsfast_frame.rsv1 is ws_frame.rsv1


@pytest.mark.parametrize("role", ["client", "server"])
async def test_empty_options_dict_enables_deflate(node_servers: Any, path: str, role: str) -> None:
    if role == "client":
        server = node_servers.get({})
        peer = Peer(wsfast.WebSocket(server.url + path, per_message_deflate={}))
        await asyncio.wait_for(asyncio.shield(peer.opened), TIMEOUT)
        extensions = peer.ws.extensions
        peer.ws.close(1000)
        await peer.wait_closed()
    else:
        async with WsfastEchoServer({}) as wss:
            events = await node.run_node_client(
                f"ws://127.0.0.1:{wss.port}{path}", [{"op": "close"}]
            )
            extensions = _events(events, "open")[0]["extensions"]
    assert extensions == PMD


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"pattern": "words", "length": MiB}, id="words-1MiB"),
        pytest.param({"pattern": "text", "length": MiB}, id="a-z-1MiB"),
        pytest.param({"pattern": "random", "length": MiB}, id="random-1MiB"),
    ],
)
@pytest.mark.parametrize("role", ["client", "server"])
async def test_window_8_ws_inflates_our_1mib(
    node_servers: Any, path: str, role: str, spec: dict[str, Any]
) -> None:
    """A window of 8 bits for wsfast's side: zlib cannot deflate raw with 8, so wsfast deflates
    with 9 (as Node does); ws inflates with windowBits 8 (its params say 8) and gets 1 MiB
    back intact, compressed on the wire."""
    key = f"{role}_max_window_bits"
    options = {key: 8, f"{role}_no_context_takeover": True}
    whole = _as_received(payload(spec), is_binary_spec(spec))
    if role == "client":
        server = node_servers.get(options)
        async with Tap(server.port) as tap:
            peer = Peer(wsfast.WebSocket(tap.url + path, per_message_deflate=options))
            await asyncio.wait_for(asyncio.shield(peer.opened), TIMEOUT)
            # compress=True: random bytes would otherwise go raw (wsfast samples them).
            peer.ws.send(whole, binary=is_binary_spec(spec), compress=True)
            peer.ws.send(whole, binary=is_binary_spec(spec), compress=True)  # a fresh compressor
            await peer.wait_messages(2)
            assert peer.messages == [(whole, is_binary_spec(spec))] * 2
            peer.ws.close(1000)
            await peer.wait_closed()
            seen = [_strip(e) for e in server.events_for(path) if e["event"] == "message"]
            [connection] = [e for e in server.events_for(path) if e["event"] == "connection"]
            ws_params = connection["extensionParams"][PMD]
            frames = tap.only().up.data_frames()
    else:
        async with WsfastEchoServer(options) as wss, Tap(wss.port) as tap:
            command = {"op": "send", "text": _cmd(op="send", compress=True, **spec)}
            events = await node.run_node_client(
                tap.url + path,
                [command, command, {"op": "wait", "messages": 2}, {"op": "close", "code": 1000}],
                options={"perMessageDeflate": {"serverMaxWindowBits": 8}},
            )
            assert not _events(events, "error"), events
            seen = [_strip(e) for e in _events(events, "message")]
            ws_params = _events(events, "open")[0]["extensionParams"][PMD]
            frames = tap.only().down.data_frames()
    assert ws_params[key] == 8  # ws' inflater for our messages: windowBits 8
    assert seen == [describe(whole, is_binary_spec(spec))] * 2
    assert len(frames) == 2 and all(f.rsv1 and f.fin for f in frames), frames
    assert frames[0].length == frames[1].length
    if spec["pattern"] != "random":
        assert frames[0].length < MiB / 2


@pytest.mark.parametrize("role", ["client", "server"])
async def test_ping_between_compressed_fragments(node_servers: Any, path: str, role: str) -> None:
    """A ping between the fragments of a compressed message: the control frame is neither
    compressed nor part of the message, which arrives whole (wsfast sends to ws, ws to wsfast)."""
    options = {"client_max_window_bits": 10}
    first, last = {"pattern": "words", "length": 3000}, {"pattern": "words", "length": 500}
    whole = str(payload(first)) + str(payload(last))
    if role == "client":  # the wsfast client fragments, the ws server receives
        server = node_servers.get(options)
        async with Tap(server.port) as tap:
            peer = Peer(wsfast.WebSocket(tap.url + path, per_message_deflate=options))
            await asyncio.wait_for(asyncio.shield(peer.opened), TIMEOUT)
            peer.ws.send(payload(first), fin=False)
            peer.ws.ping(b"between")
            peer.ws.send(payload(last), fin=True)
            await peer.wait_messages(1)
            assert peer.messages == [(whole, False)]
            peer.ws.close(1000)
            await peer.wait_closed()
            events = server.events_for(path)
            pings = [bytes.fromhex(e["hex"]) for e in events if e["event"] == "ping"]
            frames = tap.only().up.frames
    else:  # the ws client fragments, the wsfast server receives
        async with WsfastEchoServer(options) as wss, Tap(wss.port) as tap:
            events = await node.run_node_client(
                tap.url + path,
                [
                    {"op": "send", **first, "fin": False},
                    {"op": "ping", "hex": b"between".hex()},
                    {"op": "send", **last},
                    {"op": "wait", "messages": 1},
                    {"op": "close", "code": 1000},
                ],
                options={"perMessageDeflate": _camel(options)},
            )
            assert wss.peer(path).messages == [(whole, False)]
            pings = wss.peer(path).pings
            frames = tap.only().up.frames
    assert [_strip(e) for e in events if e["event"] == "message"] == [describe(whole, False)]
    assert pings == [b"between"]
    assert [(f.opcode, f.fin, f.rsv1) for f in frames[:3]] == [
        (OP_TEXT, False, True),
        (0x9, True, False),  # the ping, as is
        (OP_CONTINUATION, True, False),
    ]
    assert frames[1].length == len(b"between")

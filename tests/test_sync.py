"""wsfast.sync, the blocking client and the threaded server, over real sockets on 127.0.0.1.

The sync client meets the asyncio server, node's ws and raw scripted peers; the sync server
meets the websockets library's client, the asyncio client and raw peers. Every wait is bounded
(``scaled``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from certs import Certs, client_context, make_certs, record_default_contexts, server_context
from conftest import MASK, client_frame, interop_node, scaled, upgrade_request
from test_proxy import (  # noqa: F401  (the fixture factories, used by name)
    PProxy,
    _free_port,
    microsocks,
    pproxy,
    tinyproxy,
)

import wsfast
from wsfast import protocol as protocol_module
from wsfast.constants import OP_BINARY, OP_CLOSE, OP_TEXT
from wsfast.handshake import HeadReader, accept_key
from wsfast.sender import frame
from wsfast.sync import Server, ServerConnection, connect, serve

node = interop_node()


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """``server.serve_forever()`` in a thread for the block; shut down and joined after."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with server:
            yield server
    finally:
        thread.join(scaled(10))
        assert not thread.is_alive()


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def url_of(server: Server, path: str = "/") -> str:
    host, port = server.address()
    return f"ws://{host}:{port}{path}"


class RawClient:
    """A raw TCP client of a sync server, for bytes the real clients never send."""

    def __init__(self, server: Server, request: bytes | None = None) -> None:
        self.sock = socket.create_connection(server.address(), timeout=scaled(5))
        self.buffer = b""
        self.sock.sendall(upgrade_request() if request is None else request)
        reader = HeadReader()
        while not reader.feed(self.sock.recv(65536)):
            pass
        self.status = reader.response().status
        self.buffer = reader.take_rest()

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"EOF after {self.buffer!r}")
            self.buffer += data
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of one unmasked server frame."""
        b0, b1 = self.read(2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self.read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self.read(8))
        return b0 & 0x0F, self.read(length)

    def read_eof(self) -> bool:
        """True once the server half-closed (nothing buffered is left)."""
        return not self.buffer and self.sock.recv(1) == b""

    def close(self) -> None:
        self.sock.close()


# -- the client against the asyncio server, node's ws and raw servers ---------------------------


async def test_client_against_the_asyncio_server() -> None:
    async def handler(ws: wsfast.WebSocket, request: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with wsfast.serve(handler, "127.0.0.1", 0, per_message_deflate=True) as server:
        url = f"ws://127.0.0.1:{server.address()[1]}/chat"

        def client() -> tuple[Any, ...]:
            with connect(url) as ws:
                ws.send("hello")
                text = ws.recv(timeout=scaled(5))
                ws.send(b"\x00\xff" * 40000)
                data = ws.recv(timeout=scaled(5))
            return text, data, ws.extensions, ws.close_code

        text, data, extensions, code = await asyncio.wait_for(asyncio.to_thread(client), scaled(10))
    assert text == "hello"
    assert data == b"\x00\xff" * 40000
    assert extensions == "permessage-deflate"
    assert code == 1000


@pytest.mark.interop
def test_client_against_node_ws() -> None:
    server = node.NodeEchoServer({"perMessageDeflate": {"threshold": 0}})
    try:
        with connect(f"ws://127.0.0.1:{server.port}/sync") as ws:
            assert ws.extensions == "permessage-deflate"
            for message in ("text", b"binary", "é" * 5000, bytes(range(256)) * 300):
                ws.send(message)
                assert ws.recv(timeout=scaled(10)) == message
            ws.close(4001, "bye")
        assert ws.close_code == 4001
        assert ws.close_reason == "bye"
        event = asyncio.run(server.wait_event("/sync", lambda e: e.get("event") == "close"))
        assert event["code"] == 4001
    finally:
        server.stop()


def _raw_server(script: Callable[[socket.socket, bytes], None]) -> tuple[str, threading.Thread]:
    """A one-connection raw server: answers the upgrade, then runs ``script(sock, rest)``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(scaled(10))
    port = listener.getsockname()[1]

    def run() -> None:
        with listener:
            sock, _ = listener.accept()
        with sock:
            reader = HeadReader()
            while not reader.feed(sock.recv(65536)):
                pass
            key = reader.request().headers["sec-websocket-key"]
            sock.sendall(
                (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
                ).encode()
            )
            script(sock, reader.take_rest())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return f"ws://127.0.0.1:{port}/", thread


def _read_client_frame(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    """(opcode, unmasked payload) of one masked client frame (payloads under 126 bytes)."""
    while len(buffer) < 6:
        data = sock.recv(65536)
        assert data, "EOF"
        buffer += data
    opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
    assert length < 126
    while len(buffer) < 6 + length:
        buffer += sock.recv(65536)
    mask, payload = buffer[2:6], buffer[6 : 6 + length]
    del buffer[: 6 + length]
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_client_protocol_error_closes_with_its_code_and_cause() -> None:
    seen: list[tuple[int, bytes]] = []

    def script(sock: socket.socket, rest: bytes) -> None:
        sock.sendall(b"\x83\x00")  # opcode 3 is reserved
        buffer = bytearray(rest)
        seen.append(_read_client_frame(sock, buffer))

    url, thread = _raw_server(script)
    with connect(url, per_message_deflate=False) as ws:
        with pytest.raises(wsfast.ConnectionClosed) as info:
            ws.recv(timeout=scaled(5))
    thread.join(scaled(5))
    assert info.value.code == 1002
    assert isinstance(info.value.__cause__, wsfast.WebSocketError)
    assert info.value.__cause__.code == "WS_ERR_INVALID_OPCODE"
    assert seen == [(OP_CLOSE, struct.pack("!H", 1002))]


def test_client_close_timeout_bounds_a_silent_server() -> None:
    release = threading.Event()

    def script(sock: socket.socket, rest: bytes) -> None:
        release.wait(scaled(10))  # never answers the close frame

    url, thread = _raw_server(script)
    ws = connect(url, close_timeout=0.3)
    start = time.monotonic()
    ws.close()
    elapsed = time.monotonic() - start
    release.set()
    thread.join(scaled(5))
    assert 0.25 < elapsed < scaled(3)
    assert ws.close_code == 1006


def test_client_handshake_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            connect(f"ws://127.0.0.1:{port}/", handshake_timeout=0.3)
        assert time.monotonic() - start < scaled(3)


def test_client_refused_handshake_raises_with_the_status() -> None:
    server = serve(echo, "127.0.0.1", 0, path="/only")
    with running(server):
        with pytest.raises(wsfast.HandshakeError) as info:
            connect(url_of(server, "/other"))
        assert info.value.http_status == 400
        with connect(url_of(server, "/only")) as ws:
            ws.send("ok")
            assert ws.recv(timeout=scaled(5)) == "ok"


def test_client_invalid_url_and_options_raise_at_once() -> None:
    with pytest.raises(wsfast.InvalidURL):
        connect("http//nowhere")
    with pytest.raises(ValueError):
        connect("ws://127.0.0.1:1/", max_queue=0)


# -- the server against other clients ----------------------------------------------------------


def test_server_against_the_websockets_client() -> None:
    from websockets.sync.client import connect as websockets_connect

    server = serve(echo, "127.0.0.1", 0, per_message_deflate=True)
    with running(server):
        with websockets_connect(url_of(server), compression="deflate") as ws:
            ws.send("héllo")
            assert ws.recv(timeout=scaled(5)) == "héllo"
            ws.send(b"\x01" * 200_000)
            assert ws.recv(timeout=scaled(5)) == b"\x01" * 200_000
            assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        assert ws.close_code == 1000


async def test_server_against_the_asyncio_client() -> None:
    requests: list[Any] = []

    def handler(ws: ServerConnection) -> None:
        requests.append(ws.request)
        echo(ws)

    server = serve(handler, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        async with wsfast.connect(url_of(server, "/path?q=1"), protocols=["chat"]) as ws:
            await ws.send("one")
            assert await asyncio.wait_for(ws.recv(), scaled(5)) == "one"
            assert ws.protocol == "chat"
            await ws.send(b"two")
            assert await asyncio.wait_for(ws.recv(), scaled(5)) == b"two"
        assert ws.close_code == 1000
    finally:
        await asyncio.to_thread(server.__exit__, None, None, None)
        thread.join(scaled(5))
    request = requests[0]
    assert (request.method, request.path) == ("GET", "/path?q=1")
    assert request.headers["sec-websocket-protocol"] == "chat"
    assert request.remote_address[0] == "127.0.0.1"


def test_server_protocol_error_close_code_on_the_wire() -> None:
    causes: list[BaseException | None] = []

    def handler(ws: ServerConnection) -> None:
        try:
            ws.recv(timeout=scaled(5))
        except wsfast.ConnectionClosed as exc:
            causes.append(exc.__cause__)

    server = serve(handler, "127.0.0.1", 0)
    with running(server):
        raw = RawClient(server)
        raw.sock.sendall(client_frame(b"\xff\xfe", OP_TEXT))  # invalid UTF-8
        assert raw.read_frame() == (OP_CLOSE, struct.pack("!H", 1007))
        assert raw.read_eof()  # the server half-closes after failing
        raw.close()
    assert isinstance(causes[0], wsfast.WebSocketError)
    assert causes[0].code == "WS_ERR_INVALID_UTF8"


def test_server_half_closes_first_after_the_closing_handshake() -> None:
    server = serve(echo, "127.0.0.1", 0)
    with running(server):
        raw = RawClient(server)
        raw.sock.sendall(client_frame(struct.pack("!H", 1000), OP_CLOSE))
        assert raw.read_frame() == (OP_CLOSE, struct.pack("!H", 1000))
        assert raw.read_eof()  # the server's FIN, while this side has not closed yet
        raw.close()


def test_max_payload_closes_with_1009() -> None:
    server = serve(echo, "127.0.0.1", 0, max_payload=1000)
    with running(server):
        with connect(url_of(server)) as ws:
            ws.send(b"x" * 1001)
            with pytest.raises(wsfast.ConnectionClosed) as info:
                ws.recv(timeout=scaled(5))
        assert info.value.code == 1009


def test_max_queue_stops_reading_until_recv_makes_room() -> None:
    started = threading.Event()
    go = threading.Event()
    got: list[Any] = []

    def handler(ws: ServerConnection) -> None:
        started.set()
        go.wait(scaled(10))
        got.extend(ws.recv(timeout=scaled(5)) for _ in range(200))

    server = serve(handler, "127.0.0.1", 0, max_queue=4)
    with running(server):
        with connect(url_of(server)) as ws:
            started.wait(scaled(5))
            for i in range(200):
                ws.send(str(i))
            time.sleep(0.2)
            (conn,) = server.connections
            # The reader stopped parsing at the 4th message; the rest waits as bytes.
            assert conn.ready_state == wsfast.OPEN
            assert len(conn._messages) == 4
            go.set()
            deadline = time.monotonic() + scaled(5)
            while len(got) < 200 and time.monotonic() < deadline:
                time.sleep(0.01)
    assert got == [str(i) for i in range(200)]


# -- behaviour common to both sides ------------------------------------------------------------


def test_concurrent_sends_from_threads_keep_each_threads_order() -> None:
    server = serve(echo, "127.0.0.1", 0, per_message_deflate=True)
    with running(server):
        with connect(url_of(server)) as ws:
            count = 300

            def sender(name: str) -> None:
                for i in range(count):
                    ws.send(f"{name}:{i}:" + "x" * (i % 7 * 500))

            threads = [threading.Thread(target=sender, args=(str(n),)) for n in range(4)]
            for thread in threads:
                thread.start()
            received = [ws.recv(timeout=scaled(10)) for _ in range(4 * count)]
            for thread in threads:
                thread.join(scaled(5))
    for name in map(str, range(4)):
        numbers = [int(m.split(":")[1]) for m in received if m.split(":")[0] == name]
        assert numbers == list(range(count))


def test_recv_timeout_raises_timeout_error_and_the_connection_stays_usable() -> None:
    server = serve(echo, "127.0.0.1", 0)
    with running(server):
        with connect(url_of(server)) as ws:
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.2)
            assert 0.15 < time.monotonic() - start < scaled(2)
            ws.send("still here")
            assert ws.recv(timeout=scaled(5)) == "still here"


def test_close_from_another_thread_wakes_recv() -> None:
    server = serve(echo, "127.0.0.1", 0)
    with running(server):
        ws = connect(url_of(server))
        timer = threading.Timer(0.2, ws.close, args=(1000, "done"))
        timer.start()
        with pytest.raises(wsfast.ConnectionClosed) as info:
            ws.recv(timeout=scaled(5))
        timer.join()
    assert info.value.code == 1000


@pytest.mark.parametrize(
    ("code", "ends_iteration"), [(1000, True), (1001, True), (None, True), (4000, False)]
)
def test_iteration_ends_on_a_normal_close_only(code: int | None, ends_iteration: bool) -> None:
    def handler(ws: ServerConnection) -> None:
        ws.send("last")
        ws.close(code, "")

    server = serve(handler, "127.0.0.1", 0)
    with running(server):
        with connect(url_of(server)) as ws:
            messages: list[Any] = []
            if ends_iteration:
                messages.extend(ws)
            else:
                with pytest.raises(wsfast.ConnectionClosed) as info:
                    messages.extend(ws)
                assert info.value.code == code
            assert messages == ["last"]
        assert ws.close_code == (1005 if code is None else code)


def test_send_after_close_raises_connection_closed() -> None:
    server = serve(echo, "127.0.0.1", 0)
    with running(server):
        ws = connect(url_of(server))
        ws.close(4002, "over")
        assert ws.close_code == 4002
        with pytest.raises(wsfast.ConnectionClosed) as info:
            ws.send("late")
        assert (info.value.code, info.value.reason) == (4002, "over")
        with pytest.raises(wsfast.ConnectionClosed):
            ws.recv(timeout=1)


def test_server_sees_the_client_close_code() -> None:
    seen: list[int] = []

    def handler(ws: ServerConnection) -> None:
        try:
            for _ in ws:
                pass
        except wsfast.ConnectionClosed as exc:
            seen.append(exc.code)

    server = serve(handler, "127.0.0.1", 0)
    with running(server):
        with connect(url_of(server)) as ws:
            ws.close(4321, "custom")
        deadline = time.monotonic() + scaled(5)
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
    assert seen == [4321]


def test_handler_exception_closes_with_1011() -> None:
    def handler(ws: ServerConnection) -> None:
        raise RuntimeError("boom")

    server = serve(handler, "127.0.0.1", 0)
    with running(server):
        with connect(url_of(server)) as ws:
            with pytest.raises(wsfast.ConnectionClosed) as info:
                ws.recv(timeout=scaled(5))
    assert info.value.code == 1011


# -- issue 13: the error held while the application answers what came before -------------------


def test_held_error_lets_the_handler_answer_earlier_messages() -> None:
    causes: list[BaseException | None] = []

    def handler(ws: ServerConnection) -> None:
        time.sleep(0.2)  # all three frames are in before the first recv
        try:
            while True:
                ws.send("re:" + ws.recv(timeout=scaled(5)))
        except wsfast.ConnectionClosed as exc:
            causes.append(exc.__cause__)

    server = serve(handler, "127.0.0.1", 0)
    with running(server):
        raw = RawClient(server)
        raw.sock.sendall(
            client_frame(b"one", OP_TEXT) + client_frame(b"two", OP_TEXT) + b"\x83\x80" + MASK
        )
        assert raw.read_frame() == (OP_TEXT, b"re:one")
        assert raw.read_frame() == (OP_TEXT, b"re:two")
        assert raw.read_frame() == (OP_CLOSE, struct.pack("!H", 1002))
        raw.close()
    assert isinstance(causes[0], wsfast.WebSocketError)
    assert causes[0].code == "WS_ERR_INVALID_OPCODE"


def test_held_error_is_released_by_the_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol_module, "HELD_ERROR_TIMEOUT", 0.3)
    proceed = threading.Event()

    def handler(ws: ServerConnection) -> None:
        ws.recv(timeout=scaled(5))  # takes "one", then never asks again in time
        proceed.wait(scaled(10))

    server = serve(handler, "127.0.0.1", 0)
    with running(server):
        raw = RawClient(server)
        raw.sock.sendall(client_frame(b"one", OP_TEXT) + b"\x83\x80" + MASK)
        start = time.monotonic()
        assert raw.read_frame() == (OP_CLOSE, struct.pack("!H", 1002))
        assert 0.2 < time.monotonic() - start < scaled(3)
        proceed.set()
        raw.close()


# -- TLS, compression, Unix sockets, proxies ---------------------------------------------------


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path)


def test_tls_sync_client_and_server(certs: Certs) -> None:
    server = serve(echo, "127.0.0.1", 0, ssl=server_context(certs))
    with running(server):
        port = server.address()[1]
        with connect(f"wss://localhost:{port}/", ssl=client_context(certs)) as ws:
            ws.send("secret")
            assert ws.recv(timeout=scaled(5)) == "secret"
            ws.send(b"y" * 300_000)
            assert ws.recv(timeout=scaled(5)) == b"y" * 300_000
        assert ws.close_code == 1000
        # Without the test CA the server does not verify: the default context refuses it.
        with pytest.raises(OSError):  # ssl.SSLCertVerificationError
            connect(f"wss://localhost:{port}/", handshake_timeout=scaled(5))


def test_tls_sync_clients_share_one_default_context(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Slow enough that the threads below would each make one without the lock.
    made = record_default_contexts(certs, monkeypatch, delay=0.05)
    server = serve(echo, "127.0.0.1", 0, ssl=server_context(certs))
    with running(server):
        url = f"wss://localhost:{server.address()[1]}/"

        def client(message: str) -> Any:
            with connect(url, handshake_timeout=scaled(5)) as ws:
                ws.send(message)
                return ws.recv(timeout=scaled(5))

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(client, ["a", "b", "c", "d"]))
        assert answers == ["a", "b", "c", "d"]
        assert client("e") == "e"
        # One context for the five connections, made once although four threads raced for it.
        assert len(made) == 1
        assert wsfast.proxy.default_ssl_context() is made[0]
        # A context given with ssl= is used as it is: no default is made for it.
        given = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        given.load_verify_locations(certs.ca_cert)
        with connect(url, ssl=given) as ws:
            ws.send("given")
            assert ws.recv(timeout=scaled(5)) == "given"
        assert len(made) == 1


async def test_tls_sync_client_against_the_asyncio_server(certs: Certs) -> None:
    async def handler(ws: wsfast.WebSocket, request: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with wsfast.serve(handler, "127.0.0.1", 0, ssl=server_context(certs)) as server:
        url = f"wss://localhost:{server.address()[1]}/"

        def client() -> tuple[Any, Any]:
            with connect(url, ssl=client_context(certs)) as ws:
                ws.send("over tls")
                return ws.recv(timeout=scaled(5)), ws

        message, ws = await asyncio.wait_for(asyncio.to_thread(client), scaled(10))
    assert message == "over tls"
    assert ws.close_code == 1000


def test_compression_negotiated_and_bounded_by_max_payload() -> None:
    server = serve(echo, "127.0.0.1", 0, per_message_deflate=True, max_payload=50_000)
    with running(server):
        with connect(url_of(server), per_message_deflate={"client_max_window_bits": 10}) as ws:
            assert "client_max_window_bits" in ws.extension_params["permessage-deflate"]
            ws.send("a" * 40_000)
            assert ws.recv(timeout=scaled(5)) == "a" * 40_000
            # 60 kB of zeros deflate to a few hundred bytes: the limit counts inflated bytes.
            ws.send(b"\0" * 60_000)
            with pytest.raises(wsfast.ConnectionClosed) as info:
                ws.recv(timeout=scaled(5))
        assert info.value.code == 1009
    with running(serve(echo, "127.0.0.1", 0)) as plain:
        with connect(url_of(plain)) as ws:
            assert ws.extensions == ""


def test_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "ws.sock")
    with running(serve(echo, unix_path=path)) as server:
        assert server.address() == path
        with connect(f"ws+unix://{path}:/over/unix") as ws:
            ws.send("local")
            assert ws.recv(timeout=scaled(5)) == "local"
    assert not os.path.exists(path)  # shutdown removed the socket file


def test_given_listening_socket() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    with running(serve(echo, sock=sock)) as server:
        assert server.address() == sock.getsockname()
        with connect(url_of(server)) as ws:
            ws.send(b"via sock")
            assert ws.recv(timeout=scaled(5)) == b"via sock"


def test_verify_client_refusal_and_acceptance() -> None:
    def verify(info: Any) -> Any:
        if info.request.path == "/yes":
            return True
        return (False, 403, "Forbidden", {"X-Why": "path"})

    with running(serve(echo, "127.0.0.1", 0, verify_client=verify)) as server:
        with pytest.raises(wsfast.HandshakeError) as info:
            connect(url_of(server, "/no"))
        assert info.value.http_status == 403
        with connect(url_of(server, "/yes")) as ws:
            ws.send("in")
            assert ws.recv(timeout=scaled(5)) == "in"


def test_shutdown_ends_serve_forever_and_exit_closes_clients_with_1001() -> None:
    server = serve(echo, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ws = connect(url_of(server))
    server.__exit__(None, None, None)
    thread.join(scaled(5))
    assert not thread.is_alive()
    with pytest.raises(wsfast.ConnectionClosed) as info:
        ws.recv(timeout=scaled(5))
    assert info.value.code == 1001
    ws.close()
    assert server.socket.fileno() == -1  # the listening socket is closed


def test_client_mask_keys_are_random_per_frame() -> None:
    masks: list[bytes] = []

    def script(sock: socket.socket, rest: bytes) -> None:
        buffer = bytearray(rest)
        for _ in range(3):
            while len(buffer) < 6:
                buffer += sock.recv(65536)
            masks.append(bytes(buffer[2:6]))
            del buffer[: 6 + (buffer[1] & 0x7F)]

    url, thread = _raw_server(script)
    with connect(url, per_message_deflate=False) as ws:
        for message in ("a", "b", "c"):
            ws.send(message)
        thread.join(scaled(5))
    assert len(set(masks)) == 3


def test_binary_frame_bytes_on_the_wire_are_masked_frames() -> None:
    # The sync client frames exactly as the core does: a fixed mask gives the core's bytes.
    frames: list[bytes] = []

    def script(sock: socket.socket, rest: bytes) -> None:
        data = bytearray(rest)
        while len(data) < 6 + 3:
            data += sock.recv(65536)
        frames.append(bytes(data[:9]))

    url, thread = _raw_server(script)
    with connect(url, per_message_deflate=False, generate_mask=lambda: MASK) as ws:
        ws.send(b"abc")
        thread.join(scaled(5))
    assert frames == [bytes(frame(b"abc", OP_BINARY, mask=MASK))]


def test_tinyproxy_tunnel(tinyproxy_open: Any) -> None:
    with running(serve(echo, "127.0.0.1", 0)) as server:
        with connect(url_of(server), proxy=tinyproxy_open.url) as ws:
            ws.send("through the proxy")
            assert ws.recv(timeout=scaled(5)) == "through the proxy"


def test_proxy_refusal_raises_proxy_error(tinyproxy_refusing: Any) -> None:
    with running(serve(echo, "127.0.0.1", 0)) as server:
        with pytest.raises(wsfast.ProxyError) as info:
            connect(url_of(server), proxy=tinyproxy_refusing.url)
        assert info.value.http_status == 403


def _sync_echo_through(proxy_url: str, scheme: str, tmp_path: Path, **options: Any) -> None:
    """A ws:// or wss:// sync echo server on localhost, reached through ``proxy_url``."""
    certs = make_certs(tmp_path)
    server_options: dict[str, Any] = {"ssl": server_context(certs)} if scheme == "wss" else {}
    if scheme == "wss":
        options["ssl"] = client_context(certs)
    with running(serve(echo, "127.0.0.1", 0, **server_options)) as server:
        url = f"{scheme}://localhost:{server.address()[1]}/"
        with connect(url, proxy=proxy_url, handshake_timeout=scaled(10), **options) as ws:
            ws.send("through the proxy")
            assert ws.recv(timeout=scaled(5)) == "through the proxy"
            ws.send(b"\x01" * 70000)
            assert ws.recv(timeout=scaled(5)) == b"\x01" * 70000
            assert ws.remote_address is not None


@pytest.mark.parametrize("scheme", ["ws", "wss"])
@pytest.mark.parametrize("proxy_scheme", ["socks5", "socks5h"])
def test_socks5_tunnel(socks_server: Any, scheme: str, proxy_scheme: str, tmp_path: Path) -> None:
    proxy = socks_server(f"sync-{proxy_scheme}", "ws user", "p@ss:w/rd", scheme=proxy_scheme)
    _sync_echo_through(proxy.url, scheme, tmp_path)


def test_socks4_tunnel(pproxy_server: PProxy, tmp_path: Path) -> None:
    _sync_echo_through(pproxy_server.socks4.url, "ws", tmp_path)


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_https_proxy_tunnel_tls_in_tls(pproxy_server: PProxy, scheme: str, tmp_path: Path) -> None:
    # wss:// through an https:// proxy: TLS to the server inside TLS to the proxy (on every
    # Python: the sync TLS runs on memory BIOs).
    _sync_echo_through(
        pproxy_server.https.url, scheme, tmp_path, proxy_ssl=client_context(pproxy_server.certs)
    )


def test_socks5_refused_credentials_and_unreachable_proxies(socks_server: Any) -> None:
    proxy = socks_server("sync-auth", "user", "right")
    with running(serve(echo, "127.0.0.1", 0)) as server:
        with pytest.raises(wsfast.ProxyError, match="authentication failure"):
            connect(url_of(server), proxy=proxy.url.replace("right", "wrong"))
        port = _free_port()
        for scheme in ("http", "https", "socks5"):
            with pytest.raises(wsfast.ProxyError, match=f"Cannot reach the proxy 127.0.0.1:{port}"):
                connect(url_of(server), proxy=f"{scheme}://127.0.0.1:{port}")


@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_handshake_timeout_covers_a_proxy_that_never_answers(scheme: str) -> None:
    with socket.socket() as silent:  # connections queue up; nothing ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            connect(
                "ws://127.0.0.1:9/", proxy=f"{scheme}://127.0.0.1:{port}", handshake_timeout=0.3
            )
        assert time.monotonic() - start < scaled(3)


def test_https_proxy_certificate_is_verified(pproxy_server: PProxy) -> None:
    with running(serve(echo, "127.0.0.1", 0)) as server:
        with pytest.raises(wsfast.ProxyError, match="TLS with the proxy .* failed"):
            connect(url_of(server), proxy=pproxy_server.https.url)


def test_proxy_from_the_environment_and_loopback(
    tinyproxy_refusing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "all_proxy", "no_proxy", "ws_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", tinyproxy_refusing.url)
    with running(serve(echo, "127.0.0.1", 0)) as server:
        with connect(url_of(server)) as ws:  # loopback: never through the environment's proxy
            ws.send("direct")
            assert ws.recv(timeout=scaled(5)) == "direct"
        with pytest.raises(wsfast.ProxyError) as info:  # an explicit proxy: always
            connect(url_of(server), proxy=tinyproxy_refusing.url)
        assert info.value.http_status == 403


def test_socks_without_python_socks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "python_socks", None)
    with pytest.raises(ImportError, match=r'pip install "wsfast\[socks\]"'):
        connect("ws://127.0.0.1:9/", proxy="socks5h://127.0.0.1:1080")


@pytest.fixture(scope="module")
def socks_server(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("microsocks")


@pytest.fixture(scope="module")
def pproxy_server(request: pytest.FixtureRequest) -> PProxy:
    server: PProxy = request.getfixturevalue("pproxy")
    return server


@pytest.fixture(scope="module")
def tinyproxy_open(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("tinyproxy")("sync-open")


@pytest.fixture(scope="module")
def tinyproxy_refusing(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("tinyproxy")("sync-refusing", "ConnectPort 443")


# -- keepalive (on by default, as wsfast.connect and wsfast.serve) -----------------------------


def test_keepalive_measures_latency() -> None:
    with running(serve(echo, "127.0.0.1", 0)) as server:
        with connect(url_of(server), ping_interval=0.1, ping_timeout=2.0) as ws:
            deadline = time.monotonic() + scaled(5)
            while ws.latency == 0.0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert 0.0 < ws.latency < scaled(1)
        assert server.options.ping_interval == 20.0  # the default, as wsfast.serve


def test_keepalive_drops_a_peer_that_does_not_answer() -> None:
    release = threading.Event()

    def script(sock: socket.socket, rest: bytes) -> None:
        release.wait(scaled(10))  # reads nothing, answers no ping

    url, thread = _raw_server(script)
    with connect(url, ping_interval=0.1, ping_timeout=0.2) as ws:
        start = time.monotonic()
        with pytest.raises(wsfast.ConnectionClosed) as info:
            ws.recv(timeout=scaled(5))
        assert time.monotonic() - start < scaled(2)
    release.set()
    thread.join(scaled(5))
    assert info.value.code == 1006
    assert isinstance(info.value.__cause__, wsfast.WebSocketError)
    assert info.value.__cause__.code == "WS_ERR_KEEPALIVE_TIMEOUT"

"""Logging (issue 10, section 5): ``wsfast.client`` / ``wsfast.server``, ``logger=``, INFO open
and close lines on the server, and the DEBUG trace of frames that costs nothing when off."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest
from conftest import wait_for

import wsfast
from wsfast.log import TracingProtocol
from wsfast.protocol import Protocol


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int | None = None) -> list[str]:
        return [r.getMessage() for r in self.records if level is None or r.levelno == level]


@pytest.fixture
def lines() -> Any:
    handler = Lines()
    log = logging.getLogger("wsfast")
    old = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield handler
    log.removeHandler(handler)
    log.setLevel(old)


async def echo(ws: wsfast.WebSocket, request: Any) -> None:
    async for message in ws:
        await ws.send(message)


async def test_default_loggers() -> None:
    async with wsfast.serve(echo, "127.0.0.1", 0) as server:
        assert server.logger.name == "wsfast.server"
        accepted: asyncio.Future[wsfast.WebSocket] = asyncio.get_running_loop().create_future()
        server.on("connection", lambda ws, request: accepted.done() or accepted.set_result(ws))
        host, port = server.address()
        async with wsfast.connect(f"ws://{host}:{port}") as ws:
            assert ws.logger.name == "wsfast.client"
            assert (await wait_for(accepted)).logger.name == "wsfast.server"
    assert logging.getLogger("wsfast.client").parent is logging.getLogger("wsfast")


async def test_server_logs_open_and_close_at_info(lines: Lines) -> None:
    async with wsfast.serve(echo, "127.0.0.1", 0) as server:
        host, port = server.address()
        async with wsfast.connect(f"ws://{host}:{port}/chat") as ws:
            await ws.send("hi")
            assert await wait_for(ws.recv()) == "hi"
            await ws.close(1000, "bye")
        await asyncio.sleep(0.05)
    infos = [
        r.getMessage()
        for r in lines.records
        if r.levelno == logging.INFO and r.name == "wsfast.server"
    ]
    assert len(infos) == 2, infos
    assert infos[0].startswith("connection open: 127.0.0.1:") and infos[0].endswith(" /chat")
    assert infos[1] == "connection closed: 1000 'bye'"
    # The client logs nothing at INFO for a normal close.
    assert not [r for r in lines.records if r.levelno >= logging.INFO and r.name.endswith("client")]


async def test_logger_option_on_every_entry_point(lines: Lines) -> None:
    mine = logging.getLogger("myapp.ws")
    adapter = logging.LoggerAdapter(logging.getLogger("myapp.adapted"), {})
    async with wsfast.serve(echo, "127.0.0.1", 0, logger=mine) as server:
        assert server.logger is mine
        host, port = server.address()
        async with wsfast.connect(f"ws://{host}:{port}", logger=adapter) as ws:
            assert ws.logger is adapter
        raw = wsfast.WebSocket(f"ws://{host}:{port}", logger="myapp.named")
        assert raw.logger is logging.getLogger("myapp.named")
        await wait_for(raw.wait_open())
        await wait_for(raw.close())
        await asyncio.sleep(0.05)
    handler = Lines()
    mine.addHandler(handler)
    mine.setLevel(logging.INFO)
    try:
        async with wsfast.serve(echo, "127.0.0.1", 0, logger=mine) as server:
            host, port = server.address()
            async with wsfast.connect(f"ws://{host}:{port}"):
                pass
            await asyncio.sleep(0.05)
    finally:
        mine.removeHandler(handler)
        mine.setLevel(logging.NOTSET)
    assert [m.split(":")[0] for m in handler.messages(logging.INFO)] == [
        "connection open",
        "connection closed",
    ]
    with pytest.raises(TypeError, match="logger must be"):
        wsfast.WebSocketServer(port=0, logger=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="logger must be"):
        wsfast.connect("ws://127.0.0.1:1", logger=object())  # type: ignore[arg-type]


async def test_debug_traces_frames_both_ways(lines: Lines) -> None:
    async with wsfast.serve(echo, "127.0.0.1", 0, ping_interval=None) as server:
        host, port = server.address()
        async with wsfast.connect(f"ws://{host}:{port}", ping_interval=None) as ws:
            assert isinstance(ws._proto, TracingProtocol)
            await ws.send("hello")
            assert await wait_for(ws.recv()) == "hello"
            await ws.send(b"\x00\x01" * 100)
            await wait_for(ws.recv())
            await ws.ping(b"p")
            await asyncio.sleep(0.05)
            await ws.close(1000, "bye")
    client = [r.getMessage() for r in lines.records if r.name == "wsfast.client"]
    assert "> TEXT 'hello' [5 bytes]" in client
    assert "< TEXT 'hello' [5 bytes]" in client
    binary = "00 01 " * 12
    assert f"> BINARY {binary[:-1]} ... [200 bytes]" in client
    assert "> PING 70 [1 bytes]" in client and "< PONG 70 [1 bytes]" in client
    assert "> CLOSE 1000 'bye'" in client and "< CLOSE 1000 'bye'" in client
    server_lines = [r.getMessage() for r in lines.records if r.name == "wsfast.server"]
    assert "< TEXT 'hello' [5 bytes]" in server_lines and "> TEXT 'hello' [5 bytes]" in server_lines


async def test_no_trace_and_the_plain_protocol_when_debug_is_off(lines: Lines) -> None:
    logging.getLogger("wsfast").setLevel(logging.INFO)
    async with wsfast.serve(echo, "127.0.0.1", 0) as server:
        host, port = server.address()
        async with wsfast.connect(f"ws://{host}:{port}") as ws:
            assert type(ws._proto) is Protocol
            await ws.send("hello")
            await wait_for(ws.recv())
    assert not [r for r in lines.records if r.levelno == logging.DEBUG]


def test_sync_front_end_logs_the_same_way() -> None:
    """wsfast.sync: logger=, the server's INFO open/close lines, the DEBUG trace."""
    from wsfast import sync

    mine = logging.getLogger("myapp.sync")
    handler = Lines()
    mine.addHandler(handler)
    mine.setLevel(logging.DEBUG)

    def echo_once(ws: Any) -> None:
        ws.send(ws.recv(timeout=5))

    try:
        with sync.serve(echo_once, "127.0.0.1", 0, logger=mine) as server:
            assert server.logger is mine
            threading.Thread(target=server.serve_forever, daemon=True).start()
            host, port = server.address()
            with sync.connect(f"ws://{host}:{port}/s", logger="myapp.sync.client") as ws:
                assert ws.logger is logging.getLogger("myapp.sync.client")
                ws.send("hello")
                assert ws.recv(timeout=5) == "hello"
            deadline = time.monotonic() + 5
            while len(handler.messages(logging.INFO)) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        mine.removeHandler(handler)
        mine.setLevel(logging.NOTSET)
    infos = handler.messages(logging.INFO)
    assert infos[0].startswith("connection open: 127.0.0.1:") and infos[0].endswith(" /s")
    assert infos[1].startswith("connection closed: 1000")
    assert "< TEXT 'hello' [5 bytes]" in handler.messages(logging.DEBUG)

"""Keepalive: ``ping_interval`` / ``ping_timeout`` and ``latency`` (issue 10, section 3).

First the sans-I/O protocol with a clock under the test's control, then end to end: a peer that
answers pings stays connected and its round trip is measured; a peer that does not is dropped
with 1006 and a clear reason, as server and as client, through both APIs.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import MASK, Recorder, raw_websocket, scaled, wait_for

import wsfast
from wsfast.constants import DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT
from wsfast.options import ConnectionOptions
from wsfast.protocol import CLOSING, OPEN, Protocol
from wsfast.sender import frame


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(interval: float | None, timeout: float | None) -> tuple[Protocol, Clock, list[Any]]:
    clock = Clock()
    events: list[Any] = []
    proto = Protocol(
        is_server=True,
        options=ConnectionOptions(ping_interval=interval, ping_timeout=timeout),
        clock=clock,
        on_pong=lambda data: events.append(("pong", data)),
        on_error=lambda exc: events.append(("error", exc)),
    )
    return proto, clock, events


def pong_from_client(payload: bytes) -> bytes:
    return bytes(frame(payload, 0xA, mask=MASK))


def sent(proto: Protocol) -> bytes:
    return b"".join(bytes(c) for c in proto.data_to_send())


def test_off_by_default_on_the_protocol() -> None:
    proto = Protocol(is_server=True, options=ConnectionOptions())
    assert proto.keepalive_wake is None and not proto.pending
    proto.tick()  # harmless
    assert proto.data_to_send() == []


def test_pings_every_interval_and_measures_latency() -> None:
    proto, clock, events = make(10.0, 5.0)
    assert proto.keepalive_wake == 10.0 and proto.pending
    proto.keepalive_wake = None
    clock.now += 10.0
    proto.tick()
    assert sent(proto) == b"\x89\x04\x00\x00\x00\x00"  # ping, payload: counter 0
    assert proto.keepalive_wake == 5.0  # the pong's deadline comes first
    clock.now += 0.25
    proto.receive_data(pong_from_client(b"\x00\x00\x00\x00"))
    assert proto.latency == pytest.approx(0.25)
    assert events == [("pong", b"\x00\x00\x00\x00")]  # still reported to the application
    clock.now += 4.75
    proto.tick()  # the old deadline: answered, nothing to do but wait for the next ping
    assert sent(proto) == b"" and proto.keepalive_wake == pytest.approx(5.0)
    clock.now += 5.0
    proto.tick()
    assert sent(proto) == b"\x89\x04\x00\x00\x00\x01"


def test_a_late_pong_drops_the_connection() -> None:
    proto, clock, events = make(10.0, 5.0)
    clock.now += 10.0
    proto.tick()
    sent(proto)
    proto.receive_data(pong_from_client(b"other"))  # not the answer to the keepalive ping
    clock.now += 5.0
    proto.tick()
    assert proto.abort_due and proto.state is CLOSING
    assert sent(proto) == b""  # dropped, no close frame
    error = events[-1][1]
    assert isinstance(error, wsfast.WebSocketError)
    assert error.code == "WS_ERR_KEEPALIVE_TIMEOUT" and error.status_code == 1006
    assert "no pong within 5 s" in str(error)
    assert proto.error is error and proto.close_reason == "keepalive ping timeout"
    proto.connection_lost()
    assert proto.close_code == 1006


def test_a_pong_held_back_by_the_application_does_not_count() -> None:
    """The application stopped the parsing (a full recv() queue, pause()): the pong may be
    waiting behind the messages it has not taken. The deadline moves on while that lasts;
    once parsing resumes, a pong that came is seen, and a peer that sent none is dropped."""
    proto, clock, events = make(10.0, 5.0)
    clock.now += 10.0
    proto.tick()
    assert sent(proto) == b"\x89\x04\x00\x00\x00\x00"
    proto.receiver.paused = True
    proto.receive_data(pong_from_client(b"\x00\x00\x00\x00"))  # buffered, not parsed
    for _ in range(3):
        clock.now += 5.0
        proto.tick()
        assert not proto.abort_due and proto.state is OPEN
        assert proto.keepalive_wake == 5.0
    proto.receiver.paused = False
    proto.receive_data(b"")  # the adapter resumes: the pong is parsed now
    assert events == [("pong", b"\x00\x00\x00\x00")]
    clock.now += 5.0
    proto.tick()  # answered: no drop
    assert not proto.abort_due and proto.state is OPEN

    # The same without a pong: dropped one timeout after the parsing resumed.
    proto, clock, events = make(10.0, 5.0)
    clock.now += 10.0
    proto.tick()
    proto.receiver.paused = True
    clock.now += 5.0
    proto.tick()
    assert not proto.abort_due
    proto.receiver.paused = False
    clock.now += 5.0
    proto.tick()
    assert proto.abort_due and events[-1][1].code == "WS_ERR_KEEPALIVE_TIMEOUT"


def test_a_timeout_longer_than_the_interval_waits_for_the_deadline() -> None:
    """No ping goes out while a pong is awaited, so the timer is armed for the deadline, not
    for the ping that is overdue (which re-armed a 0 s timer in a loop)."""
    proto, clock, _ = make(5.0, 20.0)
    clock.now += 5.0
    proto.tick()
    assert sent(proto) == b"\x89\x04\x00\x00\x00\x00" and proto.keepalive_wake == 5.0
    clock.now += 5.0  # the next ping is due, the pong has not come: wait for the deadline
    proto.tick()
    assert sent(proto) == b"" and proto.keepalive_wake == 15.0
    proto.tick()  # a spurious tick changes nothing
    assert sent(proto) == b"" and proto.keepalive_wake == 15.0
    proto.receive_data(pong_from_client(b"\x00\x00\x00\x00"))
    proto.tick()  # answered: the overdue ping goes out now
    assert sent(proto) == b"\x89\x04\x00\x00\x00\x01" and proto.keepalive_wake == 5.0


def test_without_a_timeout_pings_go_on() -> None:
    proto, clock, _ = make(1.0, None)
    for n in range(3):
        clock.now += 1.0
        proto.tick()
        assert sent(proto) == b"\x89\x04" + n.to_bytes(4, "big")
        assert proto.keepalive_wake == 1.0
    assert not proto.abort_due


def test_an_early_tick_waits() -> None:
    proto, clock, _ = make(10.0, 5.0)
    clock.now += 3.0  # a timer that fired early
    proto.tick()
    assert sent(proto) == b"" and proto.keepalive_wake == pytest.approx(7.0)


def test_no_pings_once_closing_or_while_an_error_is_held() -> None:
    proto, clock, _ = make(1.0, 1.0)
    proto.held = wsfast.WebSocketError("held")
    clock.now += 5.0
    proto.tick()
    assert sent(proto) == b""
    proto.held = None
    proto.close(1000)
    sent(proto)
    proto.tick()
    assert sent(proto) == b"" and not proto.abort_due


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="ping_interval"):
        ConnectionOptions(ping_interval=0)
    with pytest.raises(TypeError, match="ping_timeout"):
        ConnectionOptions(ping_timeout="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clock"):
        Protocol(is_server=True, options=ConnectionOptions(ping_interval=1.0))


# -- end to end ------------------------------------------------------------------------------


async def test_defaults_per_entry_point(make_server: Any) -> None:
    """Off on ws' classes, websockets' 20 s / 20 s on connect() and serve()."""
    server = await make_server()
    assert server.options.ping_interval is None
    async with wsfast.serve(None, "127.0.0.1", 0) as served:
        assert served.options.ping_interval == DEFAULT_PING_INTERVAL == 20.0
        assert served.options.ping_timeout == DEFAULT_PING_TIMEOUT == 20.0
        host, port = served.address()
        async with wsfast.connect(f"ws://{host}:{port}") as ws:
            assert ws.options.ping_interval == 20.0 and ws.options.ping_timeout == 20.0
        raw = wsfast.WebSocket(f"ws://{host}:{port}")
        assert raw.options.ping_interval is None
        await wait_for(raw.wait_open())
        await wait_for(raw.close())
    async with wsfast.serve(None, "127.0.0.1", 0, ping_interval=None) as served:
        assert served.options.ping_interval is None


async def test_one_timer_per_loop_for_every_connections_keepalive() -> None:
    """websocket._Keepalive (issue 9: a TimerHandle per connection was 0.4-0.9 KiB of each
    idle one): deadlines come in order, a cancelled entry is never run and does not hold its
    connection, and the object goes with its last entry."""
    import gc
    import weakref

    from wsfast import websocket as websocket_module

    loop = asyncio.get_running_loop()
    ticks: list[str] = []

    class Connection:
        def __init__(self, name: str) -> None:
            self.name = name

        def _tick(self) -> None:
            ticks.append(self.name)

    wheel = websocket_module._keepalive(loop)
    assert websocket_module._keepalive(loop) is wheel
    a, b, c = Connection("a"), Connection("b"), Connection("c")
    step = scaled(0.02)
    entries = [wheel.add(a, step * 3), wheel.add(b, step), wheel.add(c, step * 2)]  # type: ignore[arg-type]
    gone = weakref.ref(c)
    websocket_module._cancel_keepalive(loop, entries[2])
    del c, entries
    gc.collect()
    assert gone() is None  # a cancelled entry does not keep its connection
    del wheel
    await asyncio.sleep(step * 5)
    assert ticks == ["b", "a"]
    gc.collect()
    assert id(loop) not in websocket_module._KEEPALIVES  # released with its last entry


async def test_server_keeps_a_live_client_and_measures_latency(make_server: Any) -> None:
    interval = scaled(0.05)
    server = await make_server(ping_interval=interval, ping_timeout=scaled(1.0))
    accepted: asyncio.Future[wsfast.WebSocket] = asyncio.get_running_loop().create_future()
    server.on("connection", lambda ws, request: accepted.set_result(ws))
    host, port = server.address()
    client = wsfast.WebSocket(f"ws://{host}:{port}")
    pings = Recorder(client, "ping")
    server_ws = await wait_for(accepted)
    await asyncio.sleep(interval * 6)
    assert server_ws.ready_state == wsfast.WebSocket.OPEN
    assert pings.count("ping") >= 3
    assert 0 < server_ws.latency < scaled(1.0)
    client.terminate()


async def test_server_drops_a_client_that_does_not_answer(make_server: Any, raw_peer: Any) -> None:
    server = await make_server(ping_interval=scaled(0.05), ping_timeout=scaled(0.1))
    accepted: asyncio.Future[wsfast.WebSocket] = asyncio.get_running_loop().create_future()
    server.on("connection", lambda ws, request: accepted.set_result(ws))
    peer = await raw_websocket(raw_peer, server)  # reads nothing, answers nothing
    server_ws = await wait_for(accepted)
    events = Recorder(server_ws, "error", "close")
    assert await events.wait("close") == [(1006, "keepalive ping timeout")]
    (error,) = events.of("error")
    assert error[0].code == "WS_ERR_KEEPALIVE_TIMEOUT"
    assert await peer.at_eof()


async def test_client_drops_a_server_that_does_not_answer(make_server: Any) -> None:
    server = await make_server(auto_pong=False)
    host, port = server.address()
    async with wsfast.connect(
        f"ws://{host}:{port}", ping_interval=scaled(0.05), ping_timeout=scaled(0.1)
    ) as ws:
        with pytest.raises(wsfast.ConnectionClosed) as info:
            await wait_for(ws.recv())
    assert info.value.code == 1006 and info.value.reason == "keepalive ping timeout"
    assert isinstance(info.value.__cause__, wsfast.WebSocketError)
    assert ws.latency == 0.0


async def test_serve_handler_sees_the_timeout_as_a_normal_end(
    raw_peer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ended: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def handler(ws: wsfast.WebSocket, request: Any) -> None:
        try:
            async for _ in ws:
                pass
        except wsfast.ConnectionClosed as exc:
            ended.set_result(exc)
            raise

    async with wsfast.serve(
        handler, "127.0.0.1", 0, ping_interval=scaled(0.05), ping_timeout=scaled(0.1)
    ) as server:
        peer = await raw_websocket(raw_peer, server)
        exc = await wait_for(ended)
        assert isinstance(exc, wsfast.ConnectionClosed) and exc.code == 1006
        assert await peer.at_eof()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_cli_options() -> None:
    from wsfast.cli import build_parser

    args = build_parser().parse_args(["serve", "--ping-interval", "5", "--ping-timeout", "0"])
    assert args.ping_interval == 5.0 and args.ping_timeout == 0.0
    args = build_parser().parse_args(["connect", "ws://x"])
    assert args.ping_interval == DEFAULT_PING_INTERVAL

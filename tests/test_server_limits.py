"""Caps for the whole process (issue 11 section 3), over real sockets.

``max_connections`` bounds open connections plus handshakes in flight, ``max_handshakes`` the
handshakes in flight alone; past either, a connection is answered ``503 Service Unavailable``
at once, before its request is read, and closed. ``server.stats`` counts exactly, refusals log
at DEBUG at most, and every socket the server accepted is closed in the end.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from conftest import RawConnect, RawPeer, scaled, until, upgrade_request, url_of, wait_for

import wsfast
from wsfast import handshake, websocket_server
from wsfast.handshake import Request
from wsfast.options import ServerOptions
from wsfast.websocket_server import ServerStats, WebSocketServer

MakeServer = Callable[..., Awaitable[WebSocketServer]]
MakeClient = Callable[..., Awaitable[wsfast.WebSocket]]


@pytest.fixture
def accepted(monkeypatch: pytest.MonkeyPatch) -> list[asyncio.Transport]:
    """Every transport a port-mode server accepts, to check that each one gets closed."""
    transports: list[asyncio.Transport] = []
    made = websocket_server._ServerConnection.connection_made

    def connection_made(self: Any, transport: asyncio.BaseTransport) -> None:
        transports.append(transport)  # type: ignore[arg-type]
        made(self, transport)

    monkeypatch.setattr(websocket_server._ServerConnection, "connection_made", connection_made)
    return transports


def released(transports: list[asyncio.Transport]) -> bool:
    """All closed, and their file descriptors with them."""
    return all(t.is_closing() and t.get_extra_info("socket").fileno() == -1 for t in transports)


async def refused_at_once(peer: RawPeer) -> None:
    """The peer, having sent nothing, is answered 503 without a Retry-After, then closed."""
    status, headers, body = await peer.read_response()
    assert (status, body) == (503, b"Service Unavailable")
    assert headers.get("connection") == "close"
    assert "retry-after" not in headers
    assert await peer.at_eof()


def server_lines_above_debug(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log lines above DEBUG, aside from the refused client's own INFO line and the INFO lines
    of the connections that were accepted (one as each opens, one as it ends)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno > logging.DEBUG
        and "WebSocket client" not in r.getMessage()
        and not r.getMessage().startswith(("connection open: ", "connection closed: "))
    ]


# -- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["max_connections", "max_handshakes"])
@pytest.mark.parametrize(
    ("value", "error"),
    [
        pytest.param(0, ValueError, id="zero"),
        pytest.param(-1, ValueError, id="negative"),
        pytest.param(True, TypeError, id="bool"),
        pytest.param(2.0, TypeError, id="float"),
        pytest.param("10", TypeError, id="str"),
    ],
)
def test_invalid_caps_are_refused_at_construction(name: str, value: Any, error: type) -> None:
    with pytest.raises(error, match=name):
        ServerOptions(no_server=True, **{name: value})
    with pytest.raises(error, match=name):
        wsfast.serve(None, "127.0.0.1", 0, **{name: value})


def test_caps_default_to_none() -> None:
    options = ServerOptions(no_server=True)
    assert (options.max_connections, options.max_handshakes) == (None, None)
    assert ServerOptions(no_server=True, max_connections=1, max_handshakes=1).max_handshakes == 1


async def test_stats_start_at_zero(make_server: MakeServer) -> None:
    server = await make_server(max_connections=5)
    assert server.stats == ServerStats(
        connections=0, handshakes_in_flight=0, opened=0, refused_503=0
    )


# -- max_connections -----------------------------------------------------------------------------


async def test_cap_n_plus_one_gets_exactly_one_503(
    make_server: MakeServer,
    make_client: MakeClient,
    raw_peer: RawConnect,
    accepted: list[asyncio.Transport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="wsfast")
    server = await make_server(max_connections=3)
    clients = [await make_client(url_of(server)) for _ in range(3)]
    await until(lambda: server.stats.connections == 3)
    assert server.stats == ServerStats(3, 0, 3, 0)

    await refused_at_once(await raw_peer(server))
    assert server.stats == ServerStats(3, 0, 3, 1)
    # A real client is refused the same way and sees the status.
    failed = wsfast.WebSocket(url_of(server), per_message_deflate=False)
    with pytest.raises(wsfast.HandshakeError) as info:
        await wait_for(failed.wait_open())
    assert info.value.http_status == 503
    assert server.stats == ServerStats(3, 0, 3, 2)

    # A closed connection frees its slot.
    clients[0].close()
    await until(lambda: server.stats.connections == 2)
    await make_client(url_of(server))
    assert server.stats == ServerStats(3, 0, 4, 2)

    assert not server_lines_above_debug(caplog)
    for client in clients:
        client.terminate()
    await until(lambda: server.stats.connections == 1)
    assert sum(not t.is_closing() for t in accepted) == 1


async def test_handshakes_in_flight_count_against_max_connections(
    make_server: MakeServer, make_client: MakeClient, raw_peer: RawConnect
) -> None:
    server = await make_server(max_connections=2)
    await make_client(url_of(server))
    silent = await raw_peer(server)
    await until(lambda: server.stats.handshakes_in_flight == 1)
    await refused_at_once(await raw_peer(server))
    assert server.stats == ServerStats(1, 1, 1, 1)
    silent.close()
    await until(lambda: server.stats.handshakes_in_flight == 0)
    await make_client(url_of(server))
    assert server.stats == ServerStats(2, 0, 2, 1)


# -- max_handshakes ------------------------------------------------------------------------------


async def test_slowloris_fills_max_handshakes_and_the_next_is_refused_at_once(
    make_server: MakeServer,
    make_client: MakeClient,
    raw_peer: RawConnect,
    accepted: list[asyncio.Transport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="wsfast")
    timeout = scaled(1.5)
    server = await make_server(max_handshakes=3, handshake_timeout=timeout)
    loop = asyncio.get_running_loop()
    # Two that send nothing, one that trickles a partial head: each holds a slot.
    silent = [await raw_peer(server), await raw_peer(server)]
    silent.append(await raw_peer(server, upgrade_request()[:20]))
    await until(lambda: server.stats.handshakes_in_flight == 3)

    started = loop.time()
    flood = [await raw_peer(server) for _ in range(20)]
    for peer in flood:
        await refused_at_once(peer)
    assert loop.time() - started < timeout / 2  # at once, not at the handshake timeout
    assert server.stats == ServerStats(0, 3, 0, 20)

    # A slot frees: a real client gets through.
    silent[0].close()
    await until(lambda: server.stats.handshakes_in_flight == 2)
    client = await make_client(url_of(server))
    assert server.stats == ServerStats(1, 2, 1, 20)

    # The other two are dropped by handshake_timeout; their slots come back.
    await until(lambda: server.stats.handshakes_in_flight == 0, seconds=timeout + 5)
    assert await silent[1].at_eof() and await silent[2].at_eof()
    assert len(accepted) == 3 + 20 + 1
    await until(lambda: released([t for t in accepted if t is not client_transport(server)]))
    assert server.stats == ServerStats(1, 0, 1, 20)
    # Refusals and timeouts are the peer's doing: nothing above DEBUG.
    assert not server_lines_above_debug(caplog)
    assert sum("at capacity" in r.getMessage() for r in caplog.records) == 20
    client.close()
    await until(lambda: server.stats.connections == 0)
    await until(lambda: released(accepted))


def client_transport(server: WebSocketServer) -> asyncio.BaseTransport | None:
    (ws,) = server.clients
    return ws.transport


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts fds in /proc (Linux)")
async def test_a_flood_of_silent_clients_holds_max_handshakes_slots_and_no_more_fds(
    make_server: MakeServer, accepted: list[asyncio.Transport]
) -> None:
    server = await make_server(max_handshakes=5)
    host, port = server.address()
    before = len(os.listdir("/proc/self/fd"))
    peers = [await asyncio.open_connection(host, port) for _ in range(60)]
    await until(lambda: server.stats.refused_503 == 55)
    await until(lambda: sum(not t.is_closing() for t in accepted) == 5)
    assert server.stats.handshakes_in_flight == 5
    # In this process: 60 client sockets and the server's 5 open ones (plus the loop's own).
    await until(lambda: len(os.listdir("/proc/self/fd")) <= before + 60 + 5)
    for _, writer in peers:
        writer.close()
    await until(lambda: released(accepted))
    await until(lambda: server.stats.handshakes_in_flight == 0)
    await until(lambda: len(os.listdir("/proc/self/fd")) <= before)
    assert server.stats == ServerStats(0, 0, 0, 55)


async def test_verify_client_in_progress_holds_a_handshake_slot(
    make_server: MakeServer, make_client: MakeClient, raw_peer: RawConnect
) -> None:
    proceed = asyncio.Event()

    async def verify(info: Any) -> bool:
        await proceed.wait()
        return True

    server = await make_server(max_handshakes=1, verify_client=verify)
    first = asyncio.ensure_future(make_client(url_of(server)))
    await until(lambda: server.stats.handshakes_in_flight == 1)
    await refused_at_once(await raw_peer(server))
    proceed.set()
    await wait_for(first)
    assert server.stats == ServerStats(1, 0, 1, 1)


async def test_refused_handshakes_give_their_slot_back(
    make_server: MakeServer, raw_peer: RawConnect
) -> None:
    server = await make_server(max_handshakes=1)
    peer = await raw_peer(server, upgrade_request(version="7"))
    status, _, _ = await peer.read_response()
    assert status == 400
    await until(lambda: server.stats.handshakes_in_flight == 0)
    assert server.stats.refused_503 == 0


async def test_closing_server_503_is_counted(make_server: MakeServer, raw_peer: RawConnect) -> None:
    proceed = asyncio.Event()

    async def verify(info: Any) -> bool:
        await proceed.wait()
        return True

    server = await make_server(verify_client=verify)
    peer = await raw_peer(server, upgrade_request())
    await until(lambda: server.stats.handshakes_in_flight == 1)
    closing = server.close()
    proceed.set()
    status, _, _ = await peer.read_response()
    assert status == 503
    await wait_for(closing)
    await until(lambda: server.stats.handshakes_in_flight == 0)
    assert server.stats.refused_503 == 1


# -- no_server mode ------------------------------------------------------------------------------


@pytest.fixture
async def front() -> AsyncIterator[Callable[[WebSocketServer], Awaitable[int]]]:
    """An asyncio.start_server that hands every upgrade to a no_server WebSocketServer."""
    servers: list[asyncio.Server] = []
    wsses: list[WebSocketServer] = []

    async def start(wss: WebSocketServer) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = await WebSocketServer.read_request(reader, writer)
            wss.handle_upgrade(request, writer, reader, lambda ws, req: None)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        wsses.append(wss)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield start
    for wss in wsses:
        for ws in list(wss.clients):
            ws.terminate()
    for server in servers:
        server.close()
        await server.wait_closed()


async def upgrade(port: int) -> RawPeer:
    reader, writer = await wait_for(asyncio.open_connection("127.0.0.1", port))
    peer = RawPeer(reader, writer)
    peer.write(upgrade_request())
    return peer


async def test_no_server_caps_apply_to_upgrades_handed_over(
    front: Callable[[WebSocketServer], Awaitable[int]],
) -> None:
    proceed = asyncio.Event()

    async def verify(info: Any) -> bool:
        await proceed.wait()
        return True

    wss = WebSocketServer(no_server=True, max_connections=2, max_handshakes=1, verify_client=verify)
    port = await front(wss)
    first = await upgrade(port)
    await until(lambda: wss.stats.handshakes_in_flight == 1)
    second = await upgrade(port)
    status, headers, body = await second.read_response()
    assert (status, body) == (503, b"Service Unavailable")
    assert await second.at_eof()
    assert wss.stats == ServerStats(0, 1, 0, 1)
    proceed.set()
    status, _, _ = await first.read_head()
    assert status == 101
    assert wss.stats == ServerStats(1, 0, 1, 1)
    third = await upgrade(port)
    status, _, _ = await third.read_head()
    assert status == 101
    assert wss.stats == ServerStats(2, 0, 2, 1)
    # max_connections reached: refused before verify_client is asked.
    fourth = await upgrade(port)
    status, _, _ = await fourth.read_response()
    assert status == 503
    assert wss.stats == ServerStats(2, 0, 2, 2)
    for peer in (first, second, third, fourth):
        peer.close()
    await until(lambda: wss.stats.connections == 0)


async def test_no_server_refused_upgrade_releases_its_slot(
    front: Callable[[WebSocketServer], Awaitable[int]],
) -> None:
    wss = WebSocketServer(no_server=True, max_handshakes=1, verify_client=lambda info: False)
    port = await front(wss)
    for _ in range(3):
        peer = await upgrade(port)
        status, _, _ = await peer.read_response()
        assert status == 401
        peer.close()
    assert wss.stats == ServerStats(0, 0, 0, 0)


async def test_serve_takes_the_caps(make_client: MakeClient) -> None:
    async def handler(ws: wsfast.WebSocket, request: Request) -> None:
        async for message in ws:
            await ws.send(message)

    async with wsfast.serve(handler, "127.0.0.1", 0, max_connections=1) as server:
        assert server.options.max_connections == 1
        client = await make_client(url_of(server))
        failed = wsfast.WebSocket(url_of(server), per_message_deflate=False)
        with pytest.raises(wsfast.HandshakeError):
            await wait_for(failed.wait_open())
        client.close()
        await wait_for(client.wait_closed())
        await until(lambda: server.stats.connections == 0)
        assert server.stats.refused_503 == 1


async def test_no_server_refusal_of_a_transport_already_closing(
    front: Callable[[WebSocketServer], Awaitable[int]],
) -> None:
    proceed = asyncio.Event()

    async def verify(info: Any) -> bool:
        await proceed.wait()
        return True

    wss = WebSocketServer(no_server=True, max_handshakes=1, verify_client=verify)
    port = await front(wss)
    first = await upgrade(port)
    await until(lambda: wss.stats.handshakes_in_flight == 1)
    # An upgrade whose transport its caller closed already: counted, nothing written, no error.
    head = handshake.HeadReader(16384, 100)
    assert head.feed(upgrade_request())
    _, writer = await open_connection_to(port)
    writer.transport.abort()
    wss.handle_upgrade(head.request(), writer, b"", lambda ws, req: None)
    assert wss.stats == ServerStats(0, 1, 0, 1)
    proceed.set()
    status, _, _ = await first.read_head()
    assert status == 101
    first.close()
    await until(lambda: wss.stats == ServerStats(0, 0, 1, 1))


async def open_connection_to(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await wait_for(asyncio.open_connection("127.0.0.1", port))

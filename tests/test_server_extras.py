"""Server features beyond the core, over real sockets (issue 5).

``no_server=True`` with ``handle_upgrade`` inside another asyncio server (one port serving a
plain HTTP page and the WebSocket, as ws' Express example does), ``should_handle``,
``verify_client`` in its three forms with custom rejections, ``reuse_port``, the server-side
timeout for clients that never finish their handshake, head limits (431/400 with a body), and
the client IP from the transport and from ``X-Forwarded-For`` (ws' FAQ).
"""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from test_transports import Events, echo_server, round_trip, within, ws_url

import wsfast
from wsfast import handshake
from wsfast.handshake import Request, RequestError
from wsfast.websocket_server import WebSocketServer

PAGE = b"<!doctype html><title>chat</title><script src=/app.js></script>"


def echo(ws: wsfast.WebSocket, request: Request) -> None:
    ws.on("message", lambda data, is_binary: ws.send(data, binary=is_binary))


@asynccontextmanager
async def page_and_websocket(
    wss: WebSocketServer,
) -> AsyncIterator[int]:
    """One asyncio.start_server port: GET / is a page, upgrades go to ``wss`` (no_server)."""

    def on_open(ws: wsfast.WebSocket, request: Request) -> None:
        wss.emit("connection", ws, request)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await WebSocketServer.read_request(reader, writer)
        except RequestError as exc:
            writer.write(handshake.abort_response(exc.status, exc.message))
            writer.close()
            return
        except asyncio.IncompleteReadError:
            writer.close()
            return
        if request.headers.get("upgrade", "").lower() == "websocket":
            wss.handle_upgrade(
                request, writer, reader, lambda ws, req: wss.emit("connection", ws, req)
            )
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
            + f"Content-Length: {len(PAGE)}\r\n\r\n".encode()
            + PAGE
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for ws in list(wss.clients):
            ws.terminate()
        await server.wait_closed()


async def http_get(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    try:
        return await within(reader.read())
    finally:
        writer.close()


async def test_one_port_serves_a_page_and_the_websocket() -> None:
    wss = WebSocketServer(no_server=True)
    wss.on("connection", echo)
    requests: list[Request] = []
    wss.on("connection", lambda ws, request: requests.append(request))
    async with page_and_websocket(wss) as port:
        answer = await http_get(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert answer.endswith(PAGE)
        ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/ws")
        await within(ws.wait_open())
        # The handler task is done and its streams are garbage: the connection must live on
        # (asyncio closes a transport whose StreamWriter is collected).
        gc.collect()
        await asyncio.sleep(0.05)
        await ws.send("after gc")
        assert await within(ws.recv()) == "after gc"
        assert len(wss.clients) == 1
        assert ws.transport is not None
        assert requests[0].remote_address == ws.transport.get_extra_info("sockname")
        assert requests[0].path == "/ws"
        ws.close()
        await within(ws.wait_closed())
        assert ws.close_code == 1005
        # Plain HTTP still works after a WebSocket came and went.
        assert (await http_get(port, b"GET / HTTP/1.1\r\n\r\n")).endswith(PAGE)


def masked_text(text: bytes) -> bytes:
    assert len(text) < 126
    return bytes([0x81, 0x80 | len(text)]) + b"\x00\x00\x00\x00" + text


async def test_frames_sent_right_behind_the_request_are_not_lost() -> None:
    # The StreamReader buffered them past the head: handle_upgrade takes them as `head`.
    wss = WebSocketServer(no_server=True)
    wss.on("connection", echo)
    async with page_and_websocket(wss) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = handshake.generate_key()
        request = handshake.build_request(f"127.0.0.1:{port}", "/", key)
        writer.write(request + masked_text(b"early one") + masked_text(b"early two"))
        head = await within(reader.readuntil(b"\r\n\r\n"))
        assert head.startswith(b"HTTP/1.1 101 ")
        assert handshake.accept_key(key).encode() in head
        expected = b"\x81\x09early one" + b"\x81\x09early two"
        assert await within(reader.readexactly(len(expected))) == expected
        writer.close()


async def test_handle_upgrade_refuses_a_bad_request_with_its_status() -> None:
    wss = WebSocketServer(no_server=True)
    async with page_and_websocket(wss) as port:
        answer = await http_get(
            port,
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert answer.endswith(b"Missing or invalid Sec-WebSocket-Key header")


async def test_read_request_limits_on_a_stream() -> None:
    wss = WebSocketServer(no_server=True)
    async with page_and_websocket(wss) as port:
        # Beyond the StreamReader's own 64 KiB limit, and beyond the head limits.
        huge = b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"
        assert (await http_get(port, huge)).startswith(b"HTTP/1.1 431 ")
        long = b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        assert (await http_get(port, long)).startswith(b"HTTP/1.1 431 ")
    reader = asyncio.StreamReader()
    reader.feed_data(b"GET /x?y HTTP/1.1\r\nHost: h\r\n\r\nrest")
    request = await WebSocketServer.read_request(reader)
    assert (request.method, request.path, request.remote_address, request.secure) == (
        "GET",
        "/x?y",
        None,
        False,
    )


# -- should_handle and path ------------------------------------------------------------------


async def test_path_option_and_should_handle() -> None:
    async with echo_server(path="/chat") as server:
        assert server.should_handle(Request("GET", "/chat?room=1", handshake.Headers()))
        assert not server.should_handle(Request("GET", "/chatroom", handshake.Headers()))
        await round_trip(ws_url(server, "/chat?room=1"))
        error = await Events(wsfast.WebSocket(ws_url(server, "/other"))).failed()
        assert str(error) == "Unexpected server response: 400"


async def test_should_handle_can_be_overridden() -> None:
    class TokenServer(WebSocketServer):
        def should_handle(self, request: Request) -> bool:
            return request.headers.get("x-token") == "ok"

    server = TokenServer(port=0, host="127.0.0.1")
    server.on("connection", echo)
    await within(server.wait_listening())
    try:
        await round_trip(ws_url(server), headers={"X-Token": "ok"})
        error = await Events(wsfast.WebSocket(ws_url(server))).failed()
        assert isinstance(error, wsfast.HandshakeError)
        assert error.http_status == 400
    finally:
        await within(server.close())


# -- verify_client ----------------------------------------------------------------------------


async def rejection(url: str, **options: Any) -> tuple[Any, bytes]:
    """Connect, expect a non-101 answer; returns (response, body)."""
    ws = wsfast.WebSocket(url, **options)
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    ws.on("unexpected-response", lambda request, response: got.set_result(response))
    response = await within(got)
    return response, await response.read()


def verify_sync(info: wsfast.VerifyInfo) -> Any:
    if info.origin == "https://good.example":
        return True
    return (False, 403, "Origin not allowed", {"X-Why": "origin"})


async def verify_async(info: wsfast.VerifyInfo) -> Any:
    await asyncio.sleep(0.01)
    return verify_sync(info)


def verify_callback(info: wsfast.VerifyInfo, done: Any) -> None:
    ok = verify_sync(info)
    asyncio.get_running_loop().call_soon(
        lambda: (
            done(True)
            if ok is True
            else done(False, 403, "Origin not allowed", {"X-Why": "origin"})
        )
    )


@pytest.mark.parametrize(
    "verify", [verify_sync, verify_async, verify_callback], ids=["sync", "async", "callback"]
)
async def test_verify_client_forms_with_custom_rejection(verify: Any) -> None:
    async with echo_server(verify_client=verify) as server:
        await round_trip(ws_url(server), origin="https://good.example")
        response, body = await rejection(ws_url(server), origin="https://evil.example")
        assert response.status == 403
        assert body == b"Origin not allowed"
        assert response.headers["x-why"] == "origin"
        assert response.headers["content-length"] == str(len(body))
        assert len(server.requests) == 1  # type: ignore[attr-defined]


async def test_verify_client_info_has_origin_secure_and_request() -> None:
    infos: list[wsfast.VerifyInfo] = []

    def verify(info: wsfast.VerifyInfo) -> bool:
        infos.append(info)
        return False

    async with echo_server(verify_client=verify) as server:
        response, body = await rejection(
            ws_url(server, "/v?x=1"), origin="https://o.example", headers={"X-Extra": "1"}
        )
        assert response.status == 401
        assert body == b"Unauthorized"
        (info,) = infos
        assert info.origin == "https://o.example"
        assert info.secure is False
        assert info.request.path == "/v?x=1"
        assert info.request.headers["x-extra"] == "1"
        assert info.req is info.request


async def test_verify_client_that_raises_gives_500_and_server_error() -> None:
    def verify(info: wsfast.VerifyInfo) -> bool:
        raise RuntimeError("verifier broke")

    async with echo_server(verify_client=verify) as server:
        errors: list[BaseException] = []
        server.on("error", errors.append)
        response, _ = await rejection(ws_url(server))
        assert response.status == 500
        assert [str(e) for e in errors] == ["verifier broke"]


# -- reuse_port, handshake timeout, head limits -------------------------------------------------


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")
async def test_reuse_port_two_servers_on_one_port() -> None:
    first = WebSocketServer(port=0, host="127.0.0.1", reuse_port=True)
    await within(first.wait_listening())
    port = first.address()[1]
    second = WebSocketServer(port=port, host="127.0.0.1", reuse_port=True)
    await within(second.wait_listening())
    served: list[str] = []
    for name, server in (("first", first), ("second", second)):
        server.on("connection", lambda ws, req, name=name: (served.append(name), echo(ws, req)))
    try:
        assert second.address() == ("127.0.0.1", port)
        for _ in range(20):
            await round_trip(f"ws://127.0.0.1:{port}/")
        assert len(served) == 20
        # Without reuse_port the port is taken: the bind error is reported.
        third = WebSocketServer(port=port, host="127.0.0.1")
        errors: list[BaseException] = []
        third.on("error", errors.append)
        with pytest.raises(OSError):
            await within(third.wait_listening())
        assert errors and isinstance(errors[0], OSError)
    finally:
        await within(first.close())
        await within(second.close())


@pytest.mark.parametrize(
    "sent", [b"", b"GET / HTTP/1.1\r\nHost: x\r\n"], ids=["nothing", "half-head"]
)
async def test_server_drops_clients_that_never_finish_the_handshake(sent: bytes) -> None:
    async with echo_server(handshake_timeout=0.2) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.address()[1])
        writer.write(sent)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await within(reader.read(), 3) == b""
        assert 0.15 < loop.time() - started < 2
        writer.close()
        # The server still works afterwards.
        await round_trip(ws_url(server))


@pytest.mark.parametrize(
    ("request_bytes", "status", "body"),
    [
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n",
            431,
            b"Request Header Fields Too Large",
        ),
        (
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(12)) + b"\r\n",
            431,
            b"Request Header Fields Too Large",
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"a" * 1500, 431, b"Request Header Fields Too Large"),
        (b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\n\r\n", 431, b"Request Header Fields Too Large"),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400, b"Bad Request"),
        (b"GARBAGE\r\n\r\n", 400, b"Bad Request"),
    ],
    ids=[
        "long-header",
        "too-many-headers",
        "unterminated-long-head",
        "long-request-line",
        "bad-header",
        "bad-line",
    ],
)
async def test_head_limits_answer_with_a_status_and_a_body(
    request_bytes: bytes, status: int, body: bytes
) -> None:
    async with echo_server(max_head_size=1024, max_headers=10) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.address()[1])
        writer.write(request_bytes)
        answer = await within(reader.read())
        writer.close()
        assert answer.startswith(f"HTTP/1.1 {status} ".encode())
        assert answer.endswith(b"\r\n\r\n" + body)
        assert f"Content-Length: {len(body)}".encode() in answer
        assert b"Connection: close" in answer


async def test_head_limits_admit_a_request_within_them() -> None:
    async with echo_server(max_head_size=1024, max_headers=10) as server:
        await round_trip(ws_url(server), headers={"X-Pad": "p" * 500})


# -- client IP ---------------------------------------------------------------------------------


async def test_client_ip_from_the_transport_and_from_x_forwarded_for() -> None:
    async with echo_server() as server:
        ws = wsfast.WebSocket(ws_url(server), headers={"X-Forwarded-For": "203.0.113.7, 10.0.0.1"})
        await within(ws.wait_open())
        assert ws.transport is not None
        local = ws.transport.get_extra_info("sockname")
        request = server.requests[0]  # type: ignore[attr-defined]
        assert request.remote_address == local
        assert request.remote_address[0] == "127.0.0.1"
        # ws' FAQ recipe behind a proxy: the first address of X-Forwarded-For.
        assert request.headers["x-forwarded-for"].split(",")[0].strip() == "203.0.113.7"
        ws.terminate()

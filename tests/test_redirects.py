"""Redirects and non-101 answers on the client, over real sockets (issue 5).

``follow_redirects`` / ``max_redirects`` with the ``'redirect'`` event, relative ``Location``,
ws' (and curl 7.77.0's) rule that ``Authorization``, ``Cookie`` and URL credentials are dropped
when a redirect changes host (and kept on the same host, or when a ``'redirect'`` listener takes
charge), and ``'unexpected-response'`` with status, headers and body.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from test_transports import Events, raw_server, read_request, switching_protocols, within

import wsfast
from wsfast import handshake

Route = Callable[[handshake.Request, int], bytes]


def redirect(location: str, status: int = 302) -> bytes:
    return handshake.build_response(status, [f"Location: {location}", "Content-Length: 0"])


@asynccontextmanager
async def routed_server(
    routes: dict[str, Route],
) -> AsyncIterator[tuple[int, list[handshake.Request]]]:
    """A raw HTTP server answering each path with ``routes[path](request, port)``.

    A route returning ``b""`` accepts the upgrade and echoes nothing (the test only opens).
    Yields ``(port, requests seen)``.
    """
    seen: list[handshake.Request] = []
    box: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        seen.append(request)
        answer = routes[request.path](request, box[0])
        writer.write(answer or switching_protocols(request))
        await writer.drain()
        await reader.read()

    async with raw_server(handler) as port:
        box.append(port)
        yield port, seen


def accept(request: handshake.Request, port: int) -> bytes:
    return b""


async def test_relative_redirect_is_followed_with_the_redirect_event() -> None:
    routes: dict[str, Route] = {
        "/start": lambda r, p: redirect("/middle?step=2", 301),
        "/middle?step=2": lambda r, p: redirect(f"ws://127.0.0.1:{p}/final", 307),
        "/final": accept,
    }
    async with routed_server(routes) as (port, seen):
        ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/start", follow_redirects=True)
        redirects: list[tuple[str, Any]] = []
        ws.on("redirect", lambda url, request: redirects.append((url, request)))
        await within(ws.wait_open())
        assert [url for url, _ in redirects] == [
            f"ws://127.0.0.1:{port}/middle?step=2",
            f"ws://127.0.0.1:{port}/final",
        ]
        assert redirects[0][1].path == "/middle?step=2"
        assert ws.url == f"ws://127.0.0.1:{port}/final"
        assert [r.path for r in seen] == ["/start", "/middle?step=2", "/final"]
        ws.terminate()


@pytest.mark.parametrize(("max_redirects", "ok"), [(3, True), (2, False), (0, False)])
async def test_max_redirects(max_redirects: int, ok: bool) -> None:
    routes: dict[str, Route] = {
        "/0": lambda r, p: redirect("/1"),
        "/1": lambda r, p: redirect("/2"),
        "/2": lambda r, p: redirect("/3"),
        "/3": accept,
    }
    async with routed_server(routes) as (port, seen):
        ws = wsfast.WebSocket(
            f"ws://127.0.0.1:{port}/0", follow_redirects=True, max_redirects=max_redirects
        )
        events = Events(ws)
        if ok:
            await within(events.opened)
            ws.terminate()
            return
        error = await events.failed()
        assert str(error) == "Maximum redirects exceeded"
        assert len(seen) == max_redirects + 1


async def test_redirect_not_followed_by_default() -> None:
    async with routed_server({"/": lambda r, p: redirect("/elsewhere")}) as (port, seen):
        ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/")
        error = await Events(ws).failed()
        assert isinstance(error, wsfast.HandshakeError)
        assert str(error) == "Unexpected server response: 302"
        assert error.http_status == 302
        assert len(seen) == 1


async def test_redirect_to_an_invalid_url_is_an_error() -> None:
    async with routed_server({"/": lambda r, p: redirect("ftp://127.0.0.1/x")}) as (port, _):
        ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/", follow_redirects=True)
        error = await Events(ws).failed()
        assert isinstance(error, wsfast.InvalidURL)
        assert str(error) == "Invalid URL: ftp://127.0.0.1/x"


SECRET_HEADERS = {"Authorization": "Bearer secret", "Cookie": "session=1", "X-Trace": "t1"}


async def test_credentials_kept_on_the_same_host() -> None:
    routes: dict[str, Route] = {"/": lambda r, p: redirect("/next"), "/next": accept}
    async with routed_server(routes) as (port, seen):
        ws = wsfast.WebSocket(
            f"ws://127.0.0.1:{port}/", follow_redirects=True, headers=SECRET_HEADERS
        )
        await within(ws.wait_open())
        ws.terminate()
        for request in seen:
            assert request.headers["authorization"] == "Bearer secret"
            assert request.headers["cookie"] == "session=1"
            assert request.headers["x-trace"] == "t1"


async def test_url_credentials_kept_on_the_same_host() -> None:
    routes: dict[str, Route] = {"/": lambda r, p: redirect("/next"), "/next": accept}
    async with routed_server(routes) as (port, seen):
        ws = wsfast.WebSocket(f"ws://ann:pw@127.0.0.1:{port}/", follow_redirects=True)
        await within(ws.wait_open())
        ws.terminate()
        expected = "Basic " + base64.b64encode(b"ann:pw").decode()
        assert [r.headers.get("authorization") for r in seen] == [expected, expected]


async def test_credentials_dropped_when_the_host_changes() -> None:
    # Two servers on two ports are two hosts (ws compares host and port).
    async with routed_server({"/final": accept}) as (other, final_seen):
        routes: dict[str, Route] = {
            "/": lambda r, p: redirect(f"ws://localhost:{other}/final"),
        }
        async with routed_server(routes) as (port, seen):
            ws = wsfast.WebSocket(
                f"ws://ann:pw@127.0.0.1:{port}/", follow_redirects=True, headers=SECRET_HEADERS
            )
            await within(ws.wait_open())
            ws.terminate()
        # The explicit Authorization header wins over the URL's credentials (curl's rule).
        assert seen[0].headers["authorization"] == "Bearer secret"
        (request,) = final_seen
        assert "authorization" not in request.headers
        assert "cookie" not in request.headers
        assert request.headers["x-trace"] == "t1"
        assert request.headers["host"] == f"localhost:{other}"


async def test_credentials_in_a_cross_host_location_are_dropped_too() -> None:
    async with routed_server({"/final": accept}) as (other, final_seen):
        routes: dict[str, Route] = {
            "/": lambda r, p: redirect(f"ws://eve:pw@127.0.0.1:{other}/final"),
        }
        async with routed_server(routes) as (port, _):
            ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/", follow_redirects=True)
            await within(ws.wait_open())
            ws.terminate()
        assert "authorization" not in final_seen[0].headers


async def test_a_redirect_listener_takes_charge_of_the_headers() -> None:
    async with routed_server({"/final": accept}) as (other, final_seen):
        routes: dict[str, Route] = {"/": lambda r, p: redirect(f"ws://127.0.0.1:{other}/final")}
        async with routed_server(routes) as (port, _):
            ws = wsfast.WebSocket(
                f"ws://127.0.0.1:{port}/", follow_redirects=True, headers=SECRET_HEADERS
            )

            @ws.on("redirect")
            def on_redirect(url: str, request: Any) -> None:
                # With a listener nothing is dropped for it (ws): it edits the request itself.
                assert request.get_header("cookie") == "session=1"
                request.remove_header("Cookie")
                request.set_header("X-Redirected", "yes")

            await within(ws.wait_open())
            ws.terminate()
        (request,) = final_seen
        assert request.headers["authorization"] == "Bearer secret"
        assert "cookie" not in request.headers
        assert request.headers["x-redirected"] == "yes"


async def test_close_from_a_redirect_listener_stops_there() -> None:
    routes: dict[str, Route] = {"/": lambda r, p: redirect("/next"), "/next": accept}
    async with routed_server(routes) as (port, seen):
        ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/", follow_redirects=True)
        ws.on("redirect", lambda url, request: ws.close())
        events = Events(ws)
        await within(events.closed)
        assert events.log == ["error", "close"]
        assert "closed before the connection was established" in str(events.errors[0])
        await asyncio.sleep(0.05)
        assert len(seen) == 1
        assert ws.ready_state == wsfast.WebSocket.CLOSED


def forbidden(request: handshake.Request, port: int) -> bytes:
    body = b"<h1>go away</h1>"
    head = handshake.build_response(
        403, ["X-Reason: no-token", "Content-Type: text/html", f"Content-Length: {len(body)}"]
    )
    return head + body


async def test_unexpected_response_event_gets_status_headers_and_body() -> None:
    async with routed_server({"/": forbidden}) as (port, _):
        ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/")
        got: asyncio.Future[tuple[Any, Any]] = asyncio.get_running_loop().create_future()
        ws.on("unexpected-response", lambda request, response: got.set_result((request, response)))
        events = Events(ws)
        request, response = await within(got)
        assert response.status == 403
        assert response.status_code == 403
        assert response.headers["x-reason"] == "no-token"
        assert await response.read() == b"<h1>go away</h1>"
        assert request.path == "/"
        await within(events.closed)
        assert events.log == ["close"]  # the listener took the answer: no 'error'
        assert events.close_args[0] == 1006


async def test_unexpected_response_without_a_listener_is_an_error_with_the_status() -> None:
    async with routed_server({"/": forbidden}) as (port, _):
        ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/")
        error = await Events(ws).failed()
        assert str(error) == "Unexpected server response: 403"
        assert isinstance(error, wsfast.HandshakeError)
        assert error.http_status == 403
        with pytest.raises(wsfast.HandshakeError):
            await ws.wait_open()


async def test_close_while_connecting_never_opens() -> None:
    answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        await answer
        writer.write(switching_protocols(request))
        await reader.read()

    async with raw_server(slow) as port:
        ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/", per_message_deflate=False)
        events = Events(ws)
        await asyncio.sleep(0.1)
        ws.close()
        await within(events.closed)
        answer.set_result(None)
        await asyncio.sleep(0.1)
        assert events.log == ["error", "close"]
        assert ws.ready_state == wsfast.WebSocket.CLOSED


async def test_unexpected_response_body_without_content_length_reads_to_the_end() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\npart one, ")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"part two")
        writer.close()

    async with raw_server(handler) as port:
        ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/")
        got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        ws.on("unexpected-response", lambda request, response: got.set_result(response))
        response = await within(got)
        assert response.status == 500
        assert await response.read() == b"part one, part two"


async def test_credentials_dropped_on_a_wss_to_ws_downgrade_of_the_same_host(tmp_path: Any) -> None:
    # One host:port name, two real servers: the create_connection hook sends wss:// to a TLS
    # redirecting server and ws:// to a plain one, so only the scheme changes (ws' rule).
    from certs import client_context, make_certs, server_context

    certs = make_certs(tmp_path)
    async with routed_server({"/plain": accept}) as (plain_port, plain_seen):
        tls_seen: list[handshake.Request] = []

        async def tls_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            tls_seen.append(await read_request(reader))
            writer.write(redirect("ws://service.test:8443/plain"))
            await reader.read()

        tls_server = await asyncio.start_server(
            tls_handler, "127.0.0.1", 0, ssl=server_context(certs)
        )
        tls_port = tls_server.sockets[0].getsockname()[1]

        async def opener(factory: Any, url: Any, ssl_context: Any) -> Any:
            loop = asyncio.get_running_loop()
            if ssl_context is None:
                return await loop.create_connection(factory, "127.0.0.1", plain_port)
            return await loop.create_connection(
                factory, "127.0.0.1", tls_port, ssl=ssl_context, server_hostname="localhost"
            )

        try:
            ws = wsfast.WebSocket(
                "wss://service.test:8443/",
                follow_redirects=True,
                headers=SECRET_HEADERS,
                ssl=client_context(certs),
                create_connection=opener,
            )
            await within(ws.wait_open())
            ws.terminate()
        finally:
            tls_server.close()
            await tls_server.wait_closed()
        assert tls_seen[0].headers["authorization"] == "Bearer secret"
        (request,) = plain_seen
        assert request.headers["host"] == "service.test:8443"  # the same host, plain text
        assert "authorization" not in request.headers
        assert "cookie" not in request.headers
        assert request.headers["x-trace"] == "t1"

"""The client's opening handshake, sans-I/O (``wsfast.handshake.ClientHandshake``).

Byte literals in, decisions out: the request it writes, the 101 it accepts, every way a
response fails with its ``WS_ERR_*`` code, the body framings of a non-101 answer, redirects
and the credential rules that go with them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import scaled
from test_transports import Events, Handler, raw_server, read_request, within

import wsfast
from wsfast import handshake
from wsfast.client import UnexpectedResponse, open_connection
from wsfast.constants import MAX_HEAD_SIZE
from wsfast.exceptions import HandshakeError, InvalidURL
from wsfast.handshake import BodyReader, ClientHandshake, Headers
from wsfast.options import ClientOptions

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3's example
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
OK_HEAD = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: " + ACCEPT.encode() + b"\r\n"
)


def make(address: str = "ws://example.com/chat", **options: Any) -> ClientHandshake:
    options.setdefault("per_message_deflate", False)
    protocols = options.pop("protocols", None)
    return ClientHandshake(address, ClientOptions.build(protocols, **options), lambda: KEY)


def started(address: str = "ws://example.com/chat", **options: Any) -> ClientHandshake:
    hs = make(address, **options)
    hs.request(hs.prepare_headers())
    return hs


def test_request_bytes() -> None:
    hs = make("ws://Example.com:8080/chat?x=1", protocols=["chat"], origin="http://o")
    assert hs.request(hs.prepare_headers()) == (
        b"GET /chat?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\nOrigin: http://o\r\n\r\n"
    )


def test_request_offers_permessage_deflate() -> None:
    hs = make(per_message_deflate=True)
    assert b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" in (
        hs.request(hs.prepare_headers())
    )


def test_accept_byte_by_byte_keeps_the_frames_after_the_head() -> None:
    hs = started(protocols=["a", "chat"])
    data = OK_HEAD + b"Sec-WebSocket-Protocol: chat\r\n\r\n\x81\x02hi"
    for i in range(len(data)):
        hs.receive_data(data[i : i + 1])
    assert hs.state == hs.OPEN
    assert hs.protocol == "chat"
    assert hs.extensions == {}
    assert hs.deflate is None
    assert hs.take_rest() == b"\x81\x02hi"
    assert hs.response is not None and hs.response.status == 101


def test_accept_permessage_deflate() -> None:
    hs = started(per_message_deflate={"client_no_context_takeover": True})
    hs.receive_data(
        OK_HEAD
        + b"Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n\r\n"
    )
    assert hs.state == hs.OPEN
    assert hs.deflate is not None
    assert hs.extensions == {"permessage-deflate": {"client_no_context_takeover": True}}


BAD_ANSWERS = [
    ("garbage", b"garbage\r\n\r\n", {}, "WS_ERR_INVALID_RESPONSE"),
    ("garbage-first-byte", b"X", {}, "WS_ERR_INVALID_RESPONSE"),
    ("bare-lf", b"HTTP/1.1 101 OK\nUpgrade: websocket\n\n", {}, "WS_ERR_INVALID_RESPONSE"),
    ("http-2", b"HTTP/2 101 OK\r\n\r\n", {}, "WS_ERR_INVALID_RESPONSE"),
    ("status-not-numeric", b"HTTP/1.1 1x1 OK\r\n\r\n", {}, "WS_ERR_INVALID_RESPONSE"),
    ("head-too-large", b"HTTP/1.1 101 OK\r\nX: " + b"a" * 70000, {}, "WS_ERR_INVALID_RESPONSE"),
    (
        "no-upgrade",
        b"HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
        + ACCEPT.encode()
        + b"\r\n\r\n",
        {},
        "WS_ERR_INVALID_UPGRADE_HEADER",
    ),
    (
        "no-connection",
        b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: "
        + ACCEPT.encode()
        + b"\r\n\r\n",
        {},
        "WS_ERR_INVALID_CONNECTION_HEADER",
    ),
    (
        "bad-accept",
        b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: AAAA\r\n\r\n",
        {},
        "WS_ERR_INVALID_ACCEPT",
    ),
    (
        "protocol-not-requested",
        OK_HEAD + b"Sec-WebSocket-Protocol: chat\r\n\r\n",
        {},
        "WS_ERR_INVALID_PROTOCOL",
    ),
    (
        "protocol-not-offered",
        OK_HEAD + b"Sec-WebSocket-Protocol: other\r\n\r\n",
        {"protocols": ["chat"]},
        "WS_ERR_INVALID_PROTOCOL",
    ),
    ("protocol-missing", OK_HEAD + b"\r\n", {"protocols": ["chat"]}, "WS_ERR_INVALID_PROTOCOL"),
    (
        "extension-not-offered",
        OK_HEAD + b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        {},
        "WS_ERR_INVALID_EXTENSIONS",
    ),
    (
        "unknown-extension",
        OK_HEAD + b"Sec-WebSocket-Extensions: x-foo\r\n\r\n",
        {"per_message_deflate": True},
        "WS_ERR_INVALID_EXTENSIONS",
    ),
    (
        "bad-deflate-params",
        OK_HEAD
        + b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99\r\n\r\n",
        {"per_message_deflate": True},
        "WS_ERR_INVALID_EXTENSIONS",
    ),
    (
        "unparseable-extensions",
        OK_HEAD + b"Sec-WebSocket-Extensions: permessage-deflate;;\r\n\r\n",
        {"per_message_deflate": True},
        "WS_ERR_INVALID_EXTENSIONS",
    ),
    (
        "invalid-content-length",
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 1, 2\r\n\r\n",
        {},
        "WS_ERR_INVALID_RESPONSE",
    ),
]


@pytest.mark.parametrize(
    ("data", "options", "code"), [row[1:] for row in BAD_ANSWERS], ids=[r[0] for r in BAD_ANSWERS]
)
def test_failures(data: bytes, options: dict[str, Any], code: str) -> None:
    hs = started(**options)
    hs.receive_data(data)
    assert hs.state == hs.FAILED
    assert hs.error is not None and hs.error.code == code


def test_eof_before_the_head_is_a_hang_up() -> None:
    hs = started()
    hs.receive_data(b"HTTP/1.1 101 Swi")
    hs.receive_eof()
    assert hs.state == hs.FAILED
    assert hs.error is not None
    assert (str(hs.error), hs.error.code) == ("socket hang up", "WS_ERR_HANDSHAKE_CLOSED")


@pytest.mark.parametrize(
    ("answer", "eof", "body"),
    [
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope+ignored", False, b"nope"),
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", False, b""),
        (
            b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4;ext=1\r\nnope\r\n3\r\n!!!\r\n0\r\nX-Trailer: t\r\n\r\n",
            False,
            b"nope!!!",
        ),
        (b"HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\nto the end", True, b"to the end"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", False, b""),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", False, b""),
        (
            b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nabc",
            True,
            b"abc",
        ),
    ],
    ids=["content-length", "empty", "chunked", "close-delimited", "204", "304", "other-coding"],
)
def test_unexpected_response_bodies(answer: bytes, eof: bool, body: bytes) -> None:
    hs = started()
    for i in range(0, len(answer), 3):
        hs.receive_data(answer[i : i + 3])
        if i == 0:
            assert hs.response is None
    assert hs.response is not None
    if eof:
        assert hs.state == hs.BODY
        hs.receive_eof()
    assert hs.state == hs.DONE
    assert hs.response.body == body
    assert str(hs.unexpected_error()) == f"Unexpected server response: {hs.response.status}"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"Content-Length: 10\r\n\r\nshort", "before the response body was complete"),
        (b"Transfer-Encoding: chunked\r\n\r\n4\r\nab", "before the response body was complete"),
        (b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", "Invalid chunked body"),
        (b"Transfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "Invalid chunked body"),
    ],
    ids=["short-length", "short-chunk", "bad-size", "bad-chunk-end"],
)
def test_broken_bodies(answer: bytes, message: str) -> None:
    hs = started()
    hs.receive_data(b"HTTP/1.1 403 Forbidden\r\n" + answer)
    hs.receive_eof()
    assert hs.state == hs.FAILED
    assert hs.error is not None and message in str(hs.error)


def test_body_limit() -> None:
    reader = BodyReader(403, Headers(), limit=8)
    assert not reader.feed(b"12345678")
    with pytest.raises(HandshakeError, match="larger than 8 bytes"):
        reader.feed(b"9")


def test_chunk_size_line_without_end_is_bounded() -> None:
    # A size line still unterminated past MAX_HEAD_SIZE bytes fails instead of buffering on.
    reader = BodyReader(403, Headers([("Transfer-Encoding", "chunked")]))
    assert not reader.feed(b"0" * MAX_HEAD_SIZE)
    with pytest.raises(HandshakeError) as info:
        reader.feed(b"0")
    assert (str(info.value), info.value.code) == ("Invalid chunked body", "WS_ERR_INVALID_RESPONSE")


@pytest.mark.parametrize(
    ("status", "headers", "data", "body"),
    [
        (204, [], b"", b""),
        (403, [("Content-Length", "0")], b"", b""),
        (403, [("Content-Length", "2")], b"ok", b"ok"),
        (403, [("Transfer-Encoding", "chunked")], b"2\r\nok\r\n0\r\n\r\n", b"ok"),
    ],
    ids=["204", "length-0", "length-2", "chunked"],
)
def test_eof_after_a_complete_body_is_no_error(
    status: int, headers: list[tuple[str, str]], data: bytes, body: bytes
) -> None:
    reader = BodyReader(status, Headers(headers))
    assert reader.feed(data)
    reader.feed_eof()
    assert (reader.complete, bytes(reader.body)) == (True, body)


def test_custom_headers_differing_in_case_keep_the_last() -> None:
    # ws lowercases the custom header names (initAsClient) and Node's setHeader is
    # case-insensitive: {"X-Trace": "1", "x-trace": "2"} sends "x-trace: 2".
    hs = make(headers={"X-Trace": "1", "x-trace": "2"})
    assert hs.prepare_headers() == {"x-trace": "2"}
    assert b"\r\nx-trace: 2\r\n" in hs.request(hs.prepare_headers())
    assert b"X-Trace" not in hs.request(hs.prepare_headers())


def test_redirect_is_followed_only_when_asked() -> None:
    answer = b"HTTP/1.1 302 Found\r\nLocation: /next?a=1\r\nContent-Length: 0\r\n\r\n"
    hs = started("ws://h/start")
    hs.receive_data(answer)
    assert hs.state == hs.DONE
    hs = started("ws://h/start", follow_redirects=True)
    hs.receive_data(answer)
    assert hs.state == hs.REDIRECT
    assert hs.follow() == "ws://h/next?a=1"
    assert (hs.state, hs.url.target, hs.redirects) == (hs.HEAD, "/next?a=1", 1)


def test_redirect_without_location_is_unexpected() -> None:
    hs = started(follow_redirects=True)
    hs.receive_data(b"HTTP/1.1 301 Moved\r\nContent-Length: 0\r\n\r\n")
    assert hs.state == hs.DONE


def test_max_redirects_then_invalid_location() -> None:
    hs = started(follow_redirects=True, max_redirects=0)
    hs.receive_data(b"HTTP/1.1 302 Found\r\nLocation: ftp://x/\r\n\r\n")
    with pytest.raises(HandshakeError) as info:
        hs.follow()
    assert info.value.code == "WS_ERR_MAX_REDIRECTS"
    hs = started(follow_redirects=True)
    hs.receive_data(b"HTTP/1.1 302 Found\r\nLocation: ftp://x/\r\n\r\n")
    with pytest.raises(InvalidURL, match="Invalid URL: ftp://x/"):
        hs.follow()


SECRETS = {"Authorization": "Bearer s", "Cookie": "c=1", "Host": "custom", "X-Trace": "t"}

# (first URL, Location, 'redirect' listener, headers expected on the second request)
REDIRECTS = [
    ("same-host", "ws://h/a", "/b", False, SECRETS),
    ("other-host", "ws://h/a", "ws://other/b", False, {"X-Trace": "t"}),
    ("other-port", "ws://h/a", "ws://h:81/b", False, {"X-Trace": "t"}),
    ("host-case", "ws://h/a", "ws://H/b", False, SECRETS),
    # ws compares url.host, where a default port is left out: wss://h and ws://h are one host.
    ("downgrade", "wss://h/a", "ws://h/b", False, {"Host": "custom", "X-Trace": "t"}),
    ("upgrade", "ws://h/a", "wss://h/b", False, SECRETS),
    ("explicit-default-port", "wss://h/a", "ws://h:443/b", False, {"X-Trace": "t"}),
    ("listener-keeps-all", "ws://h/a", "ws://other/b", True, SECRETS),
    # ws compares the socket path when either URL is ws+unix (isSameHost in initAsClient).
    ("unix-same-socket", "ws+unix:///a.sock:/a", "ws+unix:///a.sock:/b", False, SECRETS),
    ("unix-other-socket", "ws+unix:///a.sock:/a", "ws+unix:///b.sock:/b", False, {"X-Trace": "t"}),
    ("tcp-to-unix", "ws://h/a", "ws+unix:///a.sock:/b", False, {"X-Trace": "t"}),
    ("unix-to-tcp", "ws+unix:///a.sock:/a", "ws://localhost/b", False, {"X-Trace": "t"}),
]


@pytest.mark.parametrize(
    ("first", "location", "listener", "expected"),
    [row[1:] for row in REDIRECTS],
    ids=[row[0] for row in REDIRECTS],
)
def test_redirect_credentials(
    first: str, location: str, listener: bool, expected: dict[str, str]
) -> None:
    hs = started(first, headers=SECRETS, follow_redirects=True)
    hs.receive_data(b"HTTP/1.1 302 Found\r\nLocation: " + location.encode() + b"\r\n\r\n")
    hs.follow()
    assert hs.prepare_headers(check_hosts=not listener) == expected


@pytest.mark.parametrize(
    ("first", "location", "headers", "expected"),
    [
        ("ws://u:p@h/", "/b", {}, "Basic dTpw"),
        ("ws://u:p@h/", "ws://other/", {}, None),
        ("ws://u:p@h/", "/b", {"authorization": "Bearer t"}, "Bearer t"),
        ("ws://u:p@h/", "/b", {"X-Trace": "t", "AUTHORIZATION": "Bearer t"}, "Bearer t"),
        ("ws://h/", "ws://u:p@h/b", {}, "Basic dTpw"),
        ("ws://a:b@h/", "ws://u:p@h/b", {}, "Basic YTpi"),
    ],
    ids=[
        "kept-same-host",
        "dropped-other-host",
        "header-wins",
        "header-wins-after-others",
        "from-location",
        "first-wins",
    ],
)
def test_userinfo_credentials(
    first: str, location: str, headers: dict[str, str], expected: str | None
) -> None:
    hs = started(first, headers=headers, follow_redirects=True)
    hs.receive_data(b"HTTP/1.1 302 Found\r\nLocation: " + location.encode() + b"\r\n\r\n")
    hs.follow()
    sent = {k.lower(): v for k, v in hs.prepare_headers().items()}
    assert sent.get("authorization") == expected


# -- over real sockets -------------------------------------------------------------------------


def _eof_watcher(
    answer: Callable[[handshake.Request], bytes],
) -> tuple[Handler, asyncio.Future[float]]:
    """A raw server handler that answers, keeps its side open and reports how long the
    client took to close the connection (the result of the future)."""
    eof: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        writer.write(answer(request))
        await writer.drain()
        start = time.monotonic()
        try:
            await reader.read()  # returns at EOF, raises if reset: both mean closed
        except ConnectionError:
            pass
        if not eof.done():
            eof.set_result(time.monotonic() - start)

    return handler, eof


def _accept_with(*extra: str, accept: str | None = None) -> Callable[[handshake.Request], bytes]:
    def answer(request: handshake.Request) -> bytes:
        key = accept or handshake.accept_key(request.headers["sec-websocket-key"])
        lines = ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {key}"]
        return handshake.build_response(101, [*lines, *extra])

    return answer


FAILED_KINDS = [
    ("garbage", lambda r: b"SSH-2.0-OpenSSH_9.6\r\n", "WS_ERR_INVALID_RESPONSE"),
    ("bad-status-line", lambda r: b"HTTP/1.1 abc\r\n\r\n", "WS_ERR_INVALID_RESPONSE"),
    ("non-101", lambda r: b"HTTP/1.1 403 Forbidden\r\n\r\n", "WS_ERR_UNEXPECTED_RESPONSE"),
    ("bad-accept", _accept_with(accept="AAAA"), "WS_ERR_INVALID_ACCEPT"),
    ("bad-protocol", _accept_with("Sec-WebSocket-Protocol: x"), "WS_ERR_INVALID_PROTOCOL"),
    ("bad-extension", _accept_with("Sec-WebSocket-Extensions: x-y"), "WS_ERR_INVALID_EXTENSIONS"),
]


@pytest.mark.parametrize(
    ("answer", "code"), [row[1:] for row in FAILED_KINDS], ids=[row[0] for row in FAILED_KINDS]
)
async def test_failed_handshake_closes_tcp_at_once(
    answer: Callable[[handshake.Request], bytes], code: str
) -> None:
    handler, eof = _eof_watcher(answer)
    async with raw_server(handler) as port:
        ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/", per_message_deflate=False)
        error = await Events(ws).failed()
        assert isinstance(error, wsfast.HandshakeError)
        assert error.code == code
        assert await within(eof, 2.0) < scaled(1.0)


async def test_timeout_and_close_while_connecting_close_tcp() -> None:
    handler, eof = _eof_watcher(lambda r: b"")
    async with raw_server(handler) as port:
        ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/", handshake_timeout=0.2)
        error = await Events(ws).failed()
        assert getattr(error, "code", None) == "WS_ERR_HANDSHAKE_TIMEOUT"
        await within(eof, 2.0)
    handler, eof = _eof_watcher(lambda r: b"")
    async with raw_server(handler) as port:
        ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/")
        events = Events(ws)
        await asyncio.sleep(0.1)
        ws.close()
        await within(events.closed)
        assert await within(eof, 2.0) < scaled(1.0)
        assert events.log == ["error", "close"]


HEADS = {
    "content-length": (b"Content-Length: 12\r\n", [b"part one", b", 2."], False),
    "chunked": (
        b"Transfer-Encoding: chunked\r\n",
        [b"8\r\npart one\r\n", b"4\r\n, 2.\r\n0\r\n\r\n"],
        False,
    ),
    "close-delimited": (b"Connection: close\r\n", [b"part one", b", 2."], True),
}


@pytest.mark.parametrize("framing", list(HEADS))
async def test_unexpected_response_fires_on_the_head_and_reads_the_body(framing: str) -> None:
    head_fields, parts, close_after = HEADS[framing]
    loop = asyncio.get_running_loop()
    heard: asyncio.Future[Any] = loop.create_future()
    server_eof: asyncio.Future[None] = loop.create_future()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 403 Forbidden\r\nX-Why: token\r\n" + head_fields + b"\r\n")
        await writer.drain()
        await heard  # the event fired while no byte of the body was sent
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.02)
        if close_after:
            writer.close()
            return
        await reader.read()  # a kept-alive connection: the client must close it
        server_eof.set_result(None)

    async with raw_server(handler) as port:
        ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/")
        events = Events(ws)
        ws.on("unexpected-response", lambda request, response: heard.set_result(response))
        response = await within(heard)
        assert (response.status, response.headers["x-why"]) == (403, "token")
        assert await within(response.read()) == b"part one, 2."
        assert await within(response.read()) == b"part one, 2."
        await within(events.closed)
        assert events.log == ["close"]
        if not close_after:
            await within(server_eof, 2.0)


async def test_chunked_403_on_a_kept_alive_connection_does_not_hang() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nnope!\r\n0\r\n\r\n"
        )
        await reader.read()

    async with raw_server(handler) as port:
        ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/")
        got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        ws.on("unexpected-response", lambda request, response: got.set_result(response))
        response = await within(got)
        assert await within(response.read(), 2.0) == b"nope!"
        await within(ws.wait_closed(), 2.0)


async def test_broken_body_makes_read_raise() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nshort")
        writer.close()

    async with raw_server(handler) as port:
        ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/")
        got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        ws.on("unexpected-response", lambda request, response: got.set_result(response))
        response = await within(got)
        with pytest.raises(wsfast.HandshakeError, match="before the response body"):
            await within(response.read())


async def test_a_body_that_never_ends_is_dropped_after_handshake_timeout() -> None:
    handler, eof = _eof_watcher(lambda r: b"HTTP/1.1 403 No\r\nContent-Length: 10\r\n\r\nhalf")
    async with raw_server(handler) as port:
        ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/", handshake_timeout=0.3)
        got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        ws.on("unexpected-response", lambda request, response: got.set_result(response))
        response = await within(got)
        with pytest.raises(wsfast.HandshakeError, match="timed out"):
            await within(response.read())
        await within(eof, 2.0)


# -- the boundary with websocket.py ------------------------------------------------------------


class PlainHooks:
    """Only what ClientHooks asks for: open_connection must need nothing else."""

    def __init__(self, listeners: tuple[str, ...] = ()) -> None:
        self.listeners = listeners
        self.emitted: list[tuple[str, tuple[Any, ...]]] = []

    def emit(self, event: str, *args: Any) -> bool:
        self.emitted.append((event, args))
        return event in self.listeners

    def listener_count(self, event: str) -> int:
        return int(event in self.listeners)


async def test_open_connection_returns_the_upgraded_transport() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        if request.path == "/start":
            writer.write(b"HTTP/1.1 302 Found\r\nLocation: /chat\r\n\r\n")
        else:
            answer = _accept_with("Sec-WebSocket-Protocol: chat")(request)
            writer.write(answer + b"\x81\x02hi")
        await reader.read()

    async with raw_server(handler) as port:
        hooks, redirected = PlainHooks(), []
        options = ClientOptions.build(["chat"], follow_redirects=True, per_message_deflate=False)
        upgraded = await within(
            open_connection(f"ws://127.0.0.1:{port}/start", options, hooks, redirected.append)
        )
        try:
            assert redirected == [f"ws://127.0.0.1:{port}/chat"]
            assert [event for event, _ in hooks.emitted] == ["redirect"]
            assert (upgraded.protocol, upgraded.extensions, upgraded.deflate) == ("chat", {}, None)
            assert upgraded.url == redirected[0]
            assert upgraded.response.status == 101
            await asyncio.sleep(0.05)
            assert upgraded.head == b"\x81\x02hi"  # and reading is paused for the WebSocket
            assert not upgraded.transport.is_reading()
        finally:
            upgraded.transport.abort()


async def test_open_connection_unexpected_response_is_handled() -> None:
    async with raw_server(lambda r, w: _answer_and_wait(r, w, b"HTTP/1.1 403 No\r\n\r\n")) as port:
        hooks = PlainHooks(("unexpected-response",))
        options = ClientOptions.build(per_message_deflate=False)
        with pytest.raises(UnexpectedResponse) as info:
            await within(open_connection(f"ws://127.0.0.1:{port}/", options, hooks, print))
        assert info.value.handled and info.value.http_status == 403
        [(event, (request, response))] = hooks.emitted
        assert (event, request.path, response) == ("unexpected-response", "/", info.value.response)


async def _answer_and_wait(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: bytes
) -> None:
    await read_request(reader)
    writer.write(answer)
    await asyncio.sleep(0.2)
    writer.close()


async def test_cancelled_open_connection_aborts_its_transport() -> None:
    handler, eof = _eof_watcher(lambda r: b"")
    async with raw_server(handler) as port:
        options = ClientOptions.build(per_message_deflate=False)
        task = asyncio.ensure_future(
            open_connection(f"ws://127.0.0.1:{port}/", options, PlainHooks(), print)
        )
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await within(eof, 2.0) < scaled(1.0)


def test_client_side_modules_import_no_cycle() -> None:
    # client.py drives the WebSocket through ClientHooks only; proxy.py stands below it.
    import ast
    import pathlib

    def imported(module: str) -> set[str]:
        path = pathlib.Path(wsfast.__file__).parent / f"{module}.py"
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                names.add(node.module.split(".")[0])
        return names

    assert "websocket" not in imported("client")
    assert not {"client", "websocket"} & imported("proxy")
    assert not {"client", "proxy", "websocket"} & (imported("handshake") | imported("url"))

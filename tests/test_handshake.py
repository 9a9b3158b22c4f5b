"""The opening handshake: head parsing limits, request validation in ws' order (sans-I/O and over
a real socket), client request building and response validation (sans-I/O and over a socket)."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from conftest import RawPeer, Recorder, wait_for

import wsfast
from wsfast import HandshakeError, handshake
from wsfast.handshake import Headers, Request, RequestError, Response

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

VALID_HEADERS = {
    "Host": "server.example.com",
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": KEY,
    "Sec-WebSocket-Version": "13",
}


def test_accept_key_rfc_example() -> None:
    assert handshake.accept_key(KEY) == ACCEPT


def test_generate_key() -> None:
    keys = {handshake.generate_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert len(base64.b64decode(key)) == 16
        assert re.fullmatch(r"[+/0-9A-Za-z]{22}==", key)


def test_headers_are_case_insensitive_and_keep_repeats() -> None:
    headers = Headers([("X-A", "1"), ("x-a", "2"), ("Host", "h")])
    assert headers["x-A"] == "1, 2"
    assert headers.get_all("X-a") == ["1", "2"]
    assert "HOST" in headers and "missing" not in headers
    assert headers.get("missing") is None
    assert len(headers) == 2


# -- head parsing ---------------------------------------------------------------------------------


def test_parse_head_incomplete_then_complete() -> None:
    assert handshake.parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n") is None
    data = b"GET / HTTP/1.1\r\nHost: x\r\nX-Y:  spaced \t\r\n\r\nextra"
    start, headers, consumed = handshake.parse_head(data)  # type: ignore[misc]
    assert start == "GET / HTTP/1.1"
    assert headers == [("Host", "x"), ("X-Y", "spaced")]
    assert data[consumed:] == b"extra"


@pytest.mark.parametrize(
    "data, status",
    [
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 20000, 431),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n: empty name\r\n\r\n", 400),
    ],
    ids=[
        "too-large-incomplete",
        "too-large",
        "too-many-headers",
        "no-colon",
        "space-in-name",
        "empty-name",
    ],
)
def test_parse_head_errors(data: bytes, status: int) -> None:
    with pytest.raises(RequestError) as info:
        handshake.parse_head(data)
    assert info.value.status == status


def test_parse_head_limits_are_options() -> None:
    data = b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 5 + b"\r\n"
    assert handshake.parse_head(data, max_headers=5) is not None
    with pytest.raises(RequestError):
        handshake.parse_head(data, max_headers=4)
    with pytest.raises(RequestError):
        handshake.parse_head(data, max_size=len(data) - 1)


@pytest.mark.parametrize(
    "line", ["GET /", "GET / HTTP/2", "GET  / HTTP/1.1", "G{T / HTTP/1.1", "GET / FTP/1.1"]
)
def test_parse_request_line_errors(line: str) -> None:
    with pytest.raises(RequestError) as info:
        handshake.parse_request_line(line)
    assert info.value.status == 400


def test_parse_status_line() -> None:
    assert handshake.parse_status_line("HTTP/1.1 101 Switching Protocols") == (
        "HTTP/1.1",
        101,
        "Switching Protocols",
    )
    for line in ("HTTP/1.1 1O1 x", "ICY 200 OK", "HTTP/1.1"):
        with pytest.raises(HandshakeError):
            handshake.parse_status_line(line)


# -- request validation, sans-I/O and over a socket -----------------------------------------------


def _changed(base: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    """``base`` with headers set (keyword names, ``_`` for ``-``) or removed (None)."""
    headers = dict(base)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return headers


def _headers(**changes: str | None) -> dict[str, str]:
    return _changed(VALID_HEADERS, changes)


# (id, method, headers, status, message, extra response header or None)
REQUESTS: list[tuple[str, str, dict[str, str], int, str, tuple[str, str] | None]] = [
    ("post", "POST", _headers(), 405, "Invalid HTTP method", None),
    ("post-and-bad-upgrade", "POST", _headers(Upgrade="h2c"), 405, "Invalid HTTP method", None),
    (
        "plain-get",
        "GET",
        _headers(Upgrade=None, Connection=None, Sec_WebSocket_Key=None, Sec_WebSocket_Version=None),
        426,
        "Upgrade Required",
        ("Upgrade", "websocket"),
    ),
    ("bad-upgrade", "GET", _headers(Upgrade="h2c"), 400, "Invalid Upgrade header", None),
    (
        "bad-upgrade-and-key",
        "GET",
        _headers(Upgrade="h2c", Sec_WebSocket_Key="x"),
        400,
        "Invalid Upgrade header",
        None,
    ),
    ("no-connection", "GET", _headers(Connection=None), 400, "Invalid Connection header", None),
    (
        "connection-keep-alive",
        "GET",
        _headers(Connection="keep-alive"),
        400,
        "Invalid Connection header",
        None,
    ),
    (
        "no-key",
        "GET",
        _headers(Sec_WebSocket_Key=None),
        400,
        "Missing or invalid Sec-WebSocket-Key header",
        None,
    ),
    (
        "short-key",
        "GET",
        _headers(Sec_WebSocket_Key="dGhlIHNhbXBsZQ=="),
        400,
        "Missing or invalid Sec-WebSocket-Key header",
        None,
    ),
    (
        "key-bad-chars",
        "GET",
        _headers(Sec_WebSocket_Key="dGhlIHNhbXBsZSBub25j!Q=="),
        400,
        "Missing or invalid Sec-WebSocket-Key header",
        None,
    ),
    (
        "bad-key-and-version",
        "GET",
        _headers(Sec_WebSocket_Key="x", Sec_WebSocket_Version="7"),
        400,
        "Missing or invalid Sec-WebSocket-Key header",
        None,
    ),
    (
        "no-version",
        "GET",
        _headers(Sec_WebSocket_Version=None),
        400,
        "Missing or invalid Sec-WebSocket-Version header",
        ("Sec-WebSocket-Version", "13, 8"),
    ),
    (
        "version-7",
        "GET",
        _headers(Sec_WebSocket_Version="7"),
        400,
        "Missing or invalid Sec-WebSocket-Version header",
        ("Sec-WebSocket-Version", "13, 8"),
    ),
    (
        "version-14",
        "GET",
        _headers(Sec_WebSocket_Version="14"),
        400,
        "Missing or invalid Sec-WebSocket-Version header",
        ("Sec-WebSocket-Version", "13, 8"),
    ),
    (
        "version-13-padded",
        "GET",
        _headers(Sec_WebSocket_Version="013"),
        400,
        "Missing or invalid Sec-WebSocket-Version header",
        ("Sec-WebSocket-Version", "13, 8"),
    ),
]

request_cases = pytest.mark.parametrize(
    "method, headers, status, message, extra",
    [case[1:] for case in REQUESTS],
    ids=[case[0] for case in REQUESTS],
)


@request_cases
def test_validate_request(
    method: str,
    headers: dict[str, str],
    status: int,
    message: str,
    extra: tuple[str, str] | None,
) -> None:
    request = Request(method, "/", Headers(headers.items()))
    with pytest.raises(RequestError) as info:
        handshake.validate_request(request)
    assert info.value.status == status
    assert info.value.message == message
    if extra is not None:
        assert info.value.headers[extra[0]] == extra[1]


@pytest.mark.parametrize("version", [13, 8])
def test_validate_request_valid(version: int) -> None:
    headers = _headers(
        Sec_WebSocket_Version=str(version), Upgrade="WebSocket", Connection="keep-alive, Upgrade"
    )
    request = Request("GET", "/chat", Headers(headers.items()))
    assert handshake.validate_request(request) == (KEY, version)


def _raw_request(method: str, headers: dict[str, str], path: str = "/") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@request_cases
async def test_server_answers_invalid_requests(
    make_server: Callable[..., Awaitable[wsfast.WebSocketServer]],
    raw_peer: Callable[..., Awaitable[RawPeer]],
    method: str,
    headers: dict[str, str],
    status: int,
    message: str,
    extra: tuple[str, str] | None,
) -> None:
    if "upgrade" not in headers.get("Connection", "").lower():
        # In port mode Node's parser sees a plain HTTP request: ws' internal server's 426.
        status, message, extra = 426, "Upgrade Required", ("Upgrade", "websocket")
    server = await make_server()
    events = Recorder(server, "connection", "error")
    peer = await raw_peer(server, _raw_request(method, headers))
    answer, response_headers, body = await peer.read_response()
    assert answer == status
    assert body == message.encode()
    assert response_headers["connection"].lower() == "close"
    if extra is not None:
        assert response_headers[extra[0]] == extra[1]
    assert await peer.at_eof()
    assert events.events == []


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 17000 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 17000,  # never completed: refused anyway
        b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 150 + b"\r\n",
    ],
    ids=["too-large-head", "too-large-unfinished-head", "too-many-headers"],
)
async def test_server_answers_431(
    make_server: Callable[..., Awaitable[wsfast.WebSocketServer]],
    raw_peer: Callable[..., Awaitable[RawPeer]],
    data: bytes,
) -> None:
    server = await make_server()
    peer = await raw_peer(server, data)
    status, _, _ = await peer.read_response()
    assert status == 431


async def test_server_answers_400_to_garbage(
    make_server: Callable[..., Awaitable[wsfast.WebSocketServer]],
    raw_peer: Callable[..., Awaitable[RawPeer]],
) -> None:
    server = await make_server()
    peer = await raw_peer(server, b"\x16\x03\x01 this is not http\r\n\r\n")
    status, _, _ = await peer.read_response()
    assert status == 400


@pytest.mark.parametrize("version", ["13", "8"])
async def test_server_accepts_valid_request(
    make_server: Callable[..., Awaitable[wsfast.WebSocketServer]],
    raw_peer: Callable[..., Awaitable[RawPeer]],
    version: str,
) -> None:
    server = await make_server()
    events = Recorder(server, "connection")
    peer = await raw_peer(server, _raw_request("GET", _headers(Sec_WebSocket_Version=version)))
    status, headers, _ = await peer.read_head()
    assert status == 101
    assert headers["Sec-WebSocket-Accept"] == ACCEPT
    assert headers["Upgrade"].lower() == "websocket"
    await events.wait("connection")


# -- the client's request and the validation of the answer ----------------------------------------


def test_build_request() -> None:
    raw = handshake.build_request(
        "example.com:8080",
        "/chat?x=1",
        KEY,
        protocols=["a", "b"],
        extensions_header="permessage-deflate",
        origin="http://o.example",
        headers={"X-Custom": "1"},
    )
    text = raw.decode()
    assert text.startswith("GET /chat?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n")
    assert text.endswith("\r\n\r\n")
    for line in (
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: a,b",
        "Sec-WebSocket-Extensions: permessage-deflate",
        "Origin: http://o.example",
        "X-Custom: 1",
    ):
        assert f"\r\n{line}\r\n" in text


def test_build_request_version_8_uses_sec_websocket_origin() -> None:
    text = handshake.build_request("h", "/", KEY, version=8, origin="http://o").decode()
    assert "\r\nSec-WebSocket-Version: 8\r\n" in text
    assert "\r\nSec-WebSocket-Origin: http://o\r\n" in text


def test_build_request_refuses_header_injection() -> None:
    with pytest.raises(ValueError):
        handshake.build_request("h", "/", KEY, headers={"X": "a\r\nEvil: 1"})
    with pytest.raises(ValueError):
        handshake.build_request("h", "/", KEY, headers={"Bad Name": "a"})


def _response(**changes: str | None) -> Response:
    base = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": ACCEPT}
    headers = _changed(base, changes)
    return Response(101, "Switching Protocols", Headers(headers.items()))


# (id, response, offered protocols, WS_ERR_* code)
RESPONSES = [
    ("no-upgrade", _response(Upgrade=None), [], "WS_ERR_INVALID_UPGRADE_HEADER"),
    ("bad-upgrade", _response(Upgrade="h2c"), [], "WS_ERR_INVALID_UPGRADE_HEADER"),
    ("bad-connection", _response(Connection="close"), [], "WS_ERR_INVALID_CONNECTION_HEADER"),
    ("no-accept", _response(Sec_WebSocket_Accept=None), [], "WS_ERR_INVALID_ACCEPT"),
    (
        "bad-accept",
        _response(Sec_WebSocket_Accept="dGhlIHNhbXBsZSBub25jZQ=="),
        [],
        "WS_ERR_INVALID_ACCEPT",
    ),
    (
        "unrequested-subprotocol",
        _response(Sec_WebSocket_Protocol="chat"),
        [],
        "WS_ERR_INVALID_PROTOCOL",
    ),
    (
        "other-subprotocol",
        _response(Sec_WebSocket_Protocol="superchat"),
        ["chat"],
        "WS_ERR_INVALID_PROTOCOL",
    ),
    ("missing-subprotocol", _response(), ["chat"], "WS_ERR_INVALID_PROTOCOL"),
    (
        "bad-extensions-header",
        _response(Sec_WebSocket_Extensions="permessage-deflate;;"),
        [],
        "WS_ERR_INVALID_EXTENSIONS",
    ),
]


@pytest.mark.parametrize(
    "response, protocols, code",
    [case[1:] for case in RESPONSES],
    ids=[case[0] for case in RESPONSES],
)
def test_validate_response_errors(response: Response, protocols: list[str], code: str) -> None:
    with pytest.raises(HandshakeError) as info:
        handshake.validate_response(response, KEY, protocols)
    assert info.value.code == code


def test_validate_response_valid() -> None:
    assert handshake.validate_response(_response(), KEY, []) == ("", {})
    selected, extensions = handshake.validate_response(
        _response(Sec_WebSocket_Protocol="chat", Sec_WebSocket_Extensions="x-ext"),
        KEY,
        ["superchat", "chat"],
    )
    assert selected == "chat" and list(extensions) == ["x-ext"]


# -- the client against a scripted server ---------------------------------------------------------

Answer = Callable[[dict[str, str]], bytes]


@pytest.fixture
async def scripted_server() -> AsyncIterator[Callable[[Answer], Awaitable[str]]]:
    """A raw HTTP server answering each upgrade request with ``answer(request headers)``."""
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []

    async def start(answer: Answer) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:-2]
            headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
            writer.write(answer(headers))
            await writer.drain()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/"

    yield start
    for writer in writers:
        writer.close()
    for server in servers:
        server.close()
        await server.wait_closed()


def _answer(*extra: str, accept: str | None = None) -> Answer:
    def answer(headers: dict[str, str]) -> bytes:
        value = accept if accept is not None else handshake.accept_key(headers["sec-websocket-key"])
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {value}",
            *extra,
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    return answer


# (id, answer, client options, WS_ERR_* code)
CLIENT_FAILURES: list[tuple[str, Answer, dict[str, Any], str]] = [
    ("bad-accept", _answer(accept=ACCEPT), {}, "WS_ERR_INVALID_ACCEPT"),
    (
        "unrequested-subprotocol",
        _answer("Sec-WebSocket-Protocol: chat"),
        {},
        "WS_ERR_INVALID_PROTOCOL",
    ),
    ("missing-subprotocol", _answer(), {"protocols": ["chat"]}, "WS_ERR_INVALID_PROTOCOL"),
    (
        "other-subprotocol",
        _answer("Sec-WebSocket-Protocol: x"),
        {"protocols": ["chat"]},
        "WS_ERR_INVALID_PROTOCOL",
    ),
    (
        "unrequested-extension",
        _answer("Sec-WebSocket-Extensions: permessage-deflate"),
        {"per_message_deflate": False},
        "WS_ERR_INVALID_EXTENSIONS",
    ),
    (
        "unknown-extension",
        _answer("Sec-WebSocket-Extensions: x-unknown"),
        {"per_message_deflate": True},
        "WS_ERR_INVALID_EXTENSIONS",
    ),
    (
        "bad-upgrade",
        lambda h: b"HTTP/1.1 101 OK\r\nConnection: Upgrade\r\n\r\n",
        {},
        "WS_ERR_INVALID_UPGRADE_HEADER",
    ),
    (
        "unexpected-status",
        lambda h: b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno",
        {},
        "WS_ERR_UNEXPECTED_RESPONSE",
    ),
    ("not-http", lambda h: b"SSH-2.0-OpenSSH\r\n\r\n", {}, "WS_ERR_INVALID_RESPONSE"),
]


@pytest.mark.parametrize(
    "answer, options, code",
    [case[1:] for case in CLIENT_FAILURES],
    ids=[case[0] for case in CLIENT_FAILURES],
)
async def test_client_refuses_response(
    scripted_server: Callable[[Answer], Awaitable[str]],
    answer: Answer,
    options: dict[str, Any],
    code: str,
) -> None:
    url = await scripted_server(answer)
    options.setdefault("per_message_deflate", False)
    ws = wsfast.WebSocket(url, options.pop("protocols", None), **options)
    events = Recorder(ws, "open", "error", "close")
    await events.wait("close")
    assert events.names() == ["error", "close"]
    [(error,)] = events.of("error")
    assert isinstance(error, wsfast.WebSocketError)
    assert error.code == code
    assert events.of("close") == [(1006, "")]
    assert ws.ready_state == wsfast.CLOSED
    with pytest.raises(wsfast.WebSocketError):
        await wait_for(ws.wait_open())


async def test_client_accepts_scripted_subprotocol(
    scripted_server: Callable[[Answer], Awaitable[str]],
) -> None:
    url = await scripted_server(_answer("Sec-WebSocket-Protocol: chat"))
    ws = wsfast.WebSocket(url, ["superchat", "chat"], per_message_deflate=False)
    await wait_for(ws.wait_open())
    assert ws.protocol == "chat"
    ws.terminate()


async def test_unexpected_response_event(
    scripted_server: Callable[[Answer], Awaitable[str]],
) -> None:
    url = await scripted_server(
        lambda h: b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\nX-Why: test\r\n\r\nnope"
    )
    ws = wsfast.WebSocket(url, per_message_deflate=False)
    events = Recorder(ws, "unexpected-response", "error", "close")
    await events.wait("close")
    assert events.names() == ["unexpected-response", "close"]
    [(request, response)] = events.of("unexpected-response")
    assert response.status == 401
    assert response.headers["x-why"] == "test"
    assert await response.read() == b"nope"
    assert request.method == "GET"


async def test_client_sends_a_valid_request(
    scripted_server: Callable[[Answer], Awaitable[str]],
) -> None:
    seen: list[dict[str, str]] = []

    def answer(headers: dict[str, str]) -> bytes:
        seen.append(headers)
        return _answer("Sec-WebSocket-Protocol: b")(headers)

    url = await scripted_server(answer)
    ws = wsfast.WebSocket(
        url + "path?q=1",
        ["a", "b"],
        per_message_deflate=False,
        origin="http://origin.example",
        headers={"X-Test": "yes"},
    )
    await wait_for(ws.wait_open())
    [headers] = seen
    request = Request("GET", "/", Headers(headers.items()))
    key, version = handshake.validate_request(request)
    assert version == 13
    assert headers["sec-websocket-protocol"] == "a,b"
    assert headers["origin"] == "http://origin.example"
    assert headers["x-test"] == "yes"
    assert "sec-websocket-extensions" not in headers
    assert ws.protocol == "b"
    ws.terminate()


def _request_fields(raw: bytes) -> list[tuple[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")[1:-2]
    return [(name.lower(), value.strip()) for name, _, value in (ln.partition(":") for ln in lines)]


def test_build_request_custom_headers_do_not_duplicate() -> None:
    # As ws (Node's setHeader): a custom Host replaces the default one, and the handshake's own
    # headers win over custom ones of the same name, compared case-insensitively.
    raw = handshake.build_request(
        "127.0.0.1:8080",
        "/",
        KEY,
        protocols=["chat"],
        origin="http://o",
        headers={
            "host": "example.com",
            "Upgrade": "h2c",
            "CONNECTION": "close",
            "Sec-WebSocket-Version": "99",
            "sec-websocket-key": "x",
            "Sec-WebSocket-Protocol": "other",
            "Origin": "http://evil",
            "X-Custom": "kept",
        },
    )
    fields = _request_fields(raw)
    names = [name for name, _ in fields]
    assert len(names) == len(set(names)), fields
    values = dict(fields)
    assert values["host"] == "example.com"
    assert values["upgrade"] == "websocket"
    assert values["connection"] == "Upgrade"
    assert values["sec-websocket-version"] == "13"
    assert values["sec-websocket-key"] == KEY
    assert values["sec-websocket-protocol"] == "chat"
    assert values["origin"] == "http://o"
    assert values["x-custom"] == "kept"


async def test_client_custom_host_header() -> None:
    heads: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.put_nowait(await reader.readuntil(b"\r\n\r\n"))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ws = wsfast.WebSocket(
            f"ws://127.0.0.1:{port}/", per_message_deflate=False, headers={"Host": "example.com"}
        )
        Recorder(ws, "error")
        fields = _request_fields(await wait_for(heads.get()))
        assert [value for name, value in fields if name == "host"] == ["example.com"]
        await wait_for(ws.wait_closed())
    finally:
        server.close()

"""The server's opening handshake, sans-I/O: :class:`wsfast.handshake.ServerHandshake` fed with
byte literals, each refusal's status and answer in a table, the 101 to the byte, and
``verify_client``'s results. The same decisions over real sockets are in
``test_server_behaviours.py``; against node's ws in ``test_interop_http.py``."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

import wsfast
from wsfast import handshake
from wsfast.handshake import Refusal, Request, ServerHandshake, Upgrade
from wsfast.options import ServerOptions

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
UPGRADE = (
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)
VALID = b"GET /chat HTTP/1.1\r\nHost: example.com\r\n" + UPGRADE + b"\r\n"


def options(**kwargs: Any) -> ServerOptions:
    kwargs.setdefault("port", 0)
    return ServerOptions(**kwargs)


def decide(data: bytes, plain_http: bool = True, **kwargs: Any) -> Refusal | Upgrade | None:
    """What a server decides on ``data`` (None while the head is incomplete)."""
    shake = ServerHandshake(options(**kwargs), plain_http=plain_http)
    outcome = shake.receive_data(data)
    if outcome is None or isinstance(outcome, Refusal):
        return outcome
    return shake.check(outcome)


# (id, request bytes, server options, status, body, a header of the answer or None, reportable)
REFUSALS: list[Any] = [
    pytest.param(
        b"GET / HTTP/1.9\r\nHost: x\r\n" + UPGRADE + b"\r\n",
        {},
        400,
        b"Bad Request",
        None,
        False,
        id="http-1.9-400",
    ),
    pytest.param(
        b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", {}, 400, b"Bad Request", None, False, id="http-2-400"
    ),
    pytest.param(
        b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n" + UPGRADE + b"\r\n",
        {},
        400,
        b"Bad Request",
        None,
        False,
        id="nul-in-target-400",
    ),
    pytest.param(
        b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n",
        {},
        400,
        b"Bad Request",
        None,
        False,
        id="control-in-target-400",
    ),
    pytest.param(
        b"GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n",
        {},
        400,
        b"Bad Request",
        None,
        False,
        id="del-400",
    ),
    pytest.param(
        b"GET /a b HTTP/1.1\r\nHost: x\r\n" + UPGRADE + b"\r\n",
        {},
        400,
        b"Bad Request",
        None,
        False,
        id="space-in-target-400",
    ),
    pytest.param(
        b"GET / HTTP/1.1\nHost: x\n\n", {}, 400, b"Bad Request", None, False, id="lf-only-400"
    ),
    pytest.param(
        b"GET / HTTP/1.1\nHost: x\n",
        {},
        400,
        b"Bad Request",
        None,
        False,
        id="lf-only-unfinished-400",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\x01y\r\n\r\n",
        {},
        400,
        b"Bad Request",
        None,
        False,
        id="control-in-header-400",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nX: " + b"a" * 2000 + b"\r\n\r\n",
        {"max_head_size": 1024},
        431,
        b"Request Header Fields Too Large",
        None,
        False,
        id="head-too-large-431",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 11 + b"\r\n",
        {"max_headers": 10},
        431,
        b"Request Header Fields Too Large",
        None,
        False,
        id="too-many-headers-431",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        {},
        426,
        b"Upgrade Required",
        ("Content-Type", "text/plain"),
        False,
        id="plain-get-426",
    ),
    pytest.param(
        b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        {},
        426,
        b"Upgrade Required",
        ("Content-Type", "text/plain"),
        False,
        id="plain-post-426",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        {},
        426,
        b"Upgrade Required",
        ("Upgrade", "websocket"),
        False,
        id="no-connection-header-426",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        {},
        426,
        b"Upgrade Required",
        ("Connection", "close"),
        False,
        id="connection-keep-alive-426",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\nHost: x\r\n" + UPGRADE + b"\r\n",
        {},
        405,
        b"Invalid HTTP method",
        ("Content-Type", "text/html"),
        True,
        id="post-upgrade-405",
    ),
    pytest.param(
        VALID.replace(b"Upgrade: websocket", b"Upgrade: h2c"),
        {},
        400,
        b"Invalid Upgrade header",
        None,
        True,
        id="bad-upgrade-400",
    ),
    pytest.param(
        VALID.replace(KEY.encode(), b"short=="),
        {},
        400,
        b"Missing or invalid Sec-WebSocket-Key header",
        None,
        True,
        id="bad-key-400",
    ),
    pytest.param(
        VALID.replace(b"Version: 13", b"Version: 7"),
        {},
        400,
        b"Missing or invalid Sec-WebSocket-Version header",
        ("Sec-WebSocket-Version", "13, 8"),
        True,
        id="bad-version-400",
    ),
    pytest.param(
        VALID, {"path": "/elsewhere"}, 400, b"Bad Request", None, False, id="path-not-served-400"
    ),
    pytest.param(
        VALID.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Protocol: a, a\r\n\r\n"),
        {},
        400,
        b"Invalid Sec-WebSocket-Protocol header",
        None,
        True,
        id="duplicate-subprotocol-400",
    ),
    pytest.param(
        VALID.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate;;\r\n\r\n"),
        {"per_message_deflate": {}},
        400,
        b"Invalid or unacceptable Sec-WebSocket-Extensions header",
        None,
        True,
        id="bad-extensions-with-deflate-400",
    ),
    pytest.param(
        VALID.replace(
            b"\r\n\r\n",
            b"\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=7\r\n\r\n",
        ),
        {"per_message_deflate": {}},
        400,
        b"Invalid or unacceptable Sec-WebSocket-Extensions header",
        None,
        True,
        id="unacceptable-deflate-offer-400",
    ),
]


@pytest.mark.parametrize(("data", "kwargs", "status", "body", "header", "reportable"), REFUSALS)
def test_refusals(
    data: bytes,
    kwargs: dict[str, Any],
    status: int,
    body: bytes,
    header: tuple[str, str] | None,
    reportable: bool,
) -> None:
    refusal = decide(data, **kwargs)
    assert isinstance(refusal, Refusal), refusal
    assert refusal.status == status
    assert refusal.reportable is reportable
    response = refusal.response()
    head, _, payload = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} ")
    assert payload == body
    fields = handshake.Headers(line.split(": ", 1) for line in lines[1:])  # type: ignore[misc]
    assert fields["connection"] == "close"
    assert fields["content-length"] == str(len(body))
    if header is not None:
        assert fields[header[0]] == header[1]


def test_upgrade_required_to_the_byte() -> None:
    # ws' internal server: 426, Content-Length, Content-Type: text/plain, "Upgrade Required";
    # then Connection: close (this server answers no other HTTP) and RFC 9110 15.5.22's Upgrade.
    assert Refusal.upgrade_required().response() == (
        b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 16\r\nContent-Type: text/plain\r\n"
        b"Connection: close\r\nUpgrade: websocket\r\n\r\nUpgrade Required"
    )


def test_abort_to_the_byte() -> None:
    # ws' abortHandshake: Connection, Content-Type, Content-Length, then the extra headers.
    message = "Missing or invalid Sec-WebSocket-Version header"
    refusal = Refusal(400, message, (("Sec-WebSocket-Version", "13, 8"),))
    assert refusal.response() == (
        b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/html\r\n"
        b"Content-Length: 47\r\nSec-WebSocket-Version: 13, 8\r\n\r\n"
        b"Missing or invalid Sec-WebSocket-Version header"
    )


def test_a_status_http_does_not_name_has_an_empty_reason() -> None:
    # verify_client may refuse with any code. ws' abortHandshake writes http.STATUS_CODES[599],
    # "undefined", and throws on Buffer.byteLength(undefined) when no message is given; an
    # empty reason phrase is valid (RFC 9112 section 4) and the body is the empty message.
    refusal = handshake.verify_refusal((False, 599))
    assert refusal is not None
    assert refusal.response() == (
        b"HTTP/1.1 599 \r\nConnection: close\r\nContent-Type: text/html\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert handshake.build_response(299, ["X: y"]) == b"HTTP/1.1 299 \r\nX: y\r\n\r\n"


@pytest.mark.parametrize(
    ("refusal", "status", "body"),
    [
        pytest.param(handshake.SERVER_ERROR, 500, b"Internal Server Error", id="500"),
        pytest.param(handshake.SERVICE_UNAVAILABLE, 503, b"Service Unavailable", id="503"),
        pytest.param(handshake.PATH_NOT_SERVED, 400, b"Bad Request", id="path-400"),
    ],
)
def test_fixed_refusals_are_never_reported(refusal: Refusal, status: int, body: bytes) -> None:
    # ws calls abortHandshake() directly for these, never 'wsClientError'.
    assert not refusal.reportable
    assert refusal.response().startswith(f"HTTP/1.1 {status} ".encode())
    assert refusal.response().endswith(b"\r\n\r\n" + body)


def test_byte_by_byte_then_the_rest() -> None:
    shake = ServerHandshake(options())
    data = VALID + b"\x81\x80frame"
    outcomes = [shake.receive_data(data[i : i + 1]) for i in range(len(VALID))]
    assert outcomes[:-1] == [None] * (len(VALID) - 1)
    request = outcomes[-1]
    assert isinstance(request, Request)
    assert (request.method, request.path, request.http_version) == ("GET", "/chat", "HTTP/1.1")
    shake.reader.feed(data[len(VALID) :])
    assert shake.take_rest() == b"\x81\x80frame"


def test_lf_only_is_refused_on_its_first_line() -> None:
    # Not after the handshake timeout: a bare LF can never end in CRLF CRLF.
    assert isinstance(ServerHandshake(options()).receive_data(b"GET / HTTP/1.1\n"), Refusal)


def test_remote_address_and_secure_reach_the_request() -> None:
    request = ServerHandshake(options()).receive_data(VALID, ("127.0.0.1", 5), True)
    assert isinstance(request, Request)
    assert (request.remote_address, request.secure) == (("127.0.0.1", 5), True)


def test_the_101_to_the_byte() -> None:
    upgrade = decide(VALID)
    assert isinstance(upgrade, Upgrade)
    assert (upgrade.key, upgrade.version, upgrade.protocols) == (KEY, 13, [])
    assert upgrade.select_protocol(None) == ""
    assert Upgrade.response(upgrade.headers("")) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + ACCEPT.encode() + b"\r\n\r\n"
    )


def test_subprotocols_first_offered_or_handle_protocols() -> None:
    data = VALID.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n")
    upgrade = decide(data)
    assert isinstance(upgrade, Upgrade)
    assert upgrade.protocols == ["chat", "superchat"]
    assert upgrade.select_protocol(None) == "chat"
    seen: list[Any] = []

    def choose(protocols: list[str], request: Request) -> str | bool:
        seen.append((protocols, request.path))
        return protocols[-1]

    assert upgrade.select_protocol(choose) == "superchat"
    assert seen == [(["chat", "superchat"], "/chat")]
    assert upgrade.select_protocol(lambda p, r: False) == ""
    assert "Sec-WebSocket-Protocol: superchat" in upgrade.headers("superchat")
    assert not any("Protocol" in line for line in upgrade.headers(""))


def test_handle_protocols_errors_propagate() -> None:
    # The adapter answers 500 for them; the decision object does not swallow anything.
    data = VALID.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Protocol: chat\r\n\r\n")
    upgrade = decide(data)
    assert isinstance(upgrade, Upgrade)

    def broken(protocols: list[str], request: Request) -> str:
        raise RuntimeError("broken")

    with pytest.raises(RuntimeError, match="broken"):
        upgrade.select_protocol(broken)


def test_deflate_negotiated_only_when_offered_by_the_server() -> None:
    data = VALID.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    off = decide(data)
    assert isinstance(off, Upgrade) and off.deflate is None and off.extensions == {}
    on = decide(data, per_message_deflate={})
    assert isinstance(on, Upgrade) and on.deflate is not None
    assert on.extensions == {"permessage-deflate": on.deflate.params}
    assert "Sec-WebSocket-Extensions: permessage-deflate" in on.headers()
    # A malformed header is ignored by a server that does not offer the extension, as ws.
    assert isinstance(decide(data.replace(b"deflate\r\n", b"deflate;;\r\n")), Upgrade)


@pytest.mark.parametrize(
    ("version", "header", "origin"),
    [
        pytest.param("13", "Origin", "https://a.example", id="13-origin"),
        pytest.param("8", "Sec-WebSocket-Origin", "https://b.example", id="8-sec-origin"),
        pytest.param("8", "Origin", None, id="8-ignores-origin"),
    ],
)
def test_origin_as_ws_reads_it(version: str, header: str, origin: str | None) -> None:
    data = VALID.replace(b"Version: 13", f"Version: {version}".encode()).replace(
        b"\r\n\r\n", f"\r\n{header}: {origin or 'https://c.example'}\r\n\r\n".encode()
    )
    upgrade = decide(data)
    assert isinstance(upgrade, Upgrade)
    assert upgrade.origin == origin


def test_no_server_mode_follows_handle_upgrade() -> None:
    # Without a port of its own the server sees only what another server hands it: no 426 for
    # a missing Connection header, ws' handleUpgrade checks (and RFC 6455 4.2.1's) instead.
    no_connection = VALID.replace(b"Connection: Upgrade\r\n", b"")
    refusal = decide(no_connection, plain_http=False)
    assert isinstance(refusal, Refusal)
    assert (refusal.status, refusal.message) == (400, "Invalid Connection header")
    plain = decide(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", plain_http=False)
    assert isinstance(plain, Refusal) and plain.status == 426
    # ws' handleUpgrade reports what it refuses to a 'wsClientError' listener; in port mode
    # the 426 comes from the HTTP server in front of it and is never reported.
    assert plain.reportable and refusal.reportable


def test_should_handle_replaces_the_path_check() -> None:
    shake = ServerHandshake(options(path="/chat"))
    request = shake.receive_data(VALID)
    assert isinstance(request, Request)
    assert isinstance(shake.check(request), Upgrade)
    assert shake.check(request, lambda r: False) is handshake.PATH_NOT_SERVED
    assert handshake.path_matches(request, "/chat")
    assert not handshake.path_matches(request, "/")
    assert handshake.path_matches(request, None)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        pytest.param(True, None, id="true"),
        pytest.param(1, None, id="truthy"),
        pytest.param(False, (401, "Unauthorized", ()), id="false-401"),
        pytest.param(None, (401, "Unauthorized", ()), id="none-401"),
        pytest.param((True,), None, id="tuple-true"),
        pytest.param((True, 403), None, id="tuple-true-ignores-status"),
        pytest.param((False,), (401, "Unauthorized", ()), id="tuple-false-401"),
        pytest.param((False, 0), (401, "Unauthorized", ()), id="tuple-status-0-401"),
        pytest.param((False, 403), (403, "Forbidden", ()), id="tuple-403"),
        pytest.param(
            (False, 403, "go away", {"X-Why": "no"}),
            (403, "go away", (("X-Why", "no"),)),
            id="tuple-403-message-headers",
        ),
        pytest.param((False, 401, None, None), (401, "Unauthorized", ()), id="callback-defaults"),
    ],
)
def test_verify_refusal(result: Any, expected: tuple[int, str, Any] | None) -> None:
    refusal = handshake.verify_refusal(result)
    if expected is None:
        assert refusal is None
        return
    assert refusal is not None and not refusal.reportable
    status, body, headers = expected
    assert (refusal.status, refusal.headers) == (status, headers)
    assert refusal.response().endswith(b"\r\n\r\n" + body.encode())


def test_is_upgrade_request_as_nodes_parser() -> None:
    def request(**headers: str) -> Request:
        return Request("GET", "/", handshake.Headers(headers.items()))

    assert handshake.is_upgrade_request(request(Upgrade="websocket", Connection="Upgrade"))
    assert handshake.is_upgrade_request(request(Upgrade="h2c", Connection="keep-alive, upgrade"))
    assert not handshake.is_upgrade_request(request(Upgrade="websocket"))
    assert not handshake.is_upgrade_request(request(Connection="upgrade"))
    assert not handshake.is_upgrade_request(request(Upgrade="websocket", Connection="upgrades"))


# -- the server's options, validated once ----------------------------------------------------


async def test_server_options_are_one_validated_object() -> None:
    server = wsfast.WebSocketServer(
        no_server=True, per_message_deflate=MappingProxyType({"threshold": 0}), path="/p"
    )
    assert isinstance(server.options, ServerOptions)
    assert server.options.per_message_deflate == {"threshold": 0}
    assert (server.options.path, server.options.no_server) == ("/p", True)
    data = VALID.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    request = ServerHandshake(server.options).receive_data(data.replace(b"/chat", b"/p"))
    assert isinstance(request, Request)
    upgrade = handshake.check_request(request, server.options, plain_http=False)
    assert isinstance(upgrade, Upgrade) and upgrade.deflate is not None
    with pytest.raises(AttributeError):
        server.options.path = "/q"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"no_server": True, "max_payload": -1}, ValueError, id="max-payload"),
        pytest.param({"no_server": True, "handshake_timeout": "1"}, TypeError, id="timeout"),
        pytest.param({"no_server": True, "per_message_deflate": "yes"}, TypeError, id="deflate"),
        pytest.param({"no_server": True, "verify_client": 1}, TypeError, id="verify-client"),
        pytest.param({"no_server": True, "port": 1}, TypeError, id="two-modes"),
        pytest.param({}, TypeError, id="no-mode"),
    ],
)
async def test_server_options_refused_at_construction(
    kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        wsfast.WebSocketServer(**kwargs)

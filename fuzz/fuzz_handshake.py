"""Fuzz the opening handshake: the HTTP head reader (``HeadReader.request()`` and
``.response()``), the server's decision (``ServerHandshake`` then ``check_request``) and the
client's reading of the answer (``ClientHandshake.receive_data``, redirects included).

Input: a flags byte (bits 0-1 the mode: 0/3 server, 1 response head, 2 client; bits 2-7 pick
options), a cut byte (the input is fed in two pieces cut there), then the bytes from the peer.

Invariants: the documented exceptions only (``RequestError`` from the reader and
``.request()``, ``HandshakeError`` from ``.response()``, ``HandshakeError``/``InvalidURL`` from
``ClientHandshake.follow``); ``ServerHandshake.receive_data``, ``check`` and
``ClientHandshake.receive_data``/``receive_eof`` never raise; a head reads the same fed whole or
in pieces; a 101 the server builds for a request it accepts is accepted by a client that sent
that request.
"""

from __future__ import annotations

from typing import Any

from wsfuzz import Input, instrumented, main

with instrumented():
    from wsfast.exceptions import HandshakeError, InvalidURL
    from wsfast.handshake import (
        MAX_HEAD_SIZE,
        MAX_HEADERS,
        ClientHandshake,
        HeadReader,
        Refusal,
        Request,
        RequestError,
        ServerHandshake,
        Upgrade,
    )
    from wsfast.options import ClientOptions, ServerOptions
    from wsfast.subprotocol import is_valid_token

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
DEFLATE_OPTIONS: list[Any] = [
    None,
    {},
    {"server_max_window_bits": 10, "client_max_window_bits": 9},
    {"server_no_context_takeover": True, "client_no_context_takeover": True},
    {"server_max_window_bits": False, "server_no_context_takeover": False},
]
LIMITS = [(MAX_HEAD_SIZE, MAX_HEADERS), (300, 6)]
ADDRESSES = [
    "ws://example.com/chat",
    "wss://user:pw@example.com:9000/x?y=1",
    "ws+unix:///tmp/s.sock:/p",
]


def read_head(wire: bytes, cut: int, limits: tuple[int, int]) -> tuple[Any, ...]:
    """(start line, headers, rest) fed in two pieces, or the RequestError's status."""
    reader = HeadReader(*limits)
    try:
        reader.feed(wire[:cut])
        done = reader.feed(wire[cut:])
    except RequestError as exc:
        assert exc.status in (400, 431), exc.status
        return ("error", exc.status)
    if not done:
        return ("incomplete",)
    assert "\n" not in reader.start_line
    for name in reader.headers:
        assert is_valid_token(name), name
    return (reader.start_line, list(reader.headers.items()), reader.take_rest())


def same_head(pieces: tuple[Any, ...], whole: tuple[Any, ...]) -> None:
    # The refusal may differ: a head is refused as too large (431) as soon as it is, before a
    # later bare LF (400) arrives, fed whole or not.
    assert pieces == whole or pieces[0] == whole[0] == "error", (pieces, whole)


def server(inp: Input, flags: int, wire: bytes, cut: int) -> None:
    limits = LIMITS[(flags >> 2) & 1]
    whole = read_head(wire, len(wire), limits)
    same_head(read_head(wire, cut, limits), whole)
    options = ServerOptions(
        no_server=True,
        per_message_deflate=DEFLATE_OPTIONS[(flags >> 3) % len(DEFLATE_OPTIONS)],
        path="/chat" if flags & 0x80 else None,
        max_head_size=limits[0],
        max_headers=limits[1],
    )
    handshake = ServerHandshake(options, plain_http=bool(flags & 0x40))
    result = handshake.receive_data(wire[:cut])
    # What the adapter passes on after the head: the rest of the read that completed it, and
    # then the reads that follow (never fed to the handshake).
    unread = wire[cut:]
    if result is None:
        result = handshake.receive_data(wire[cut:])
        unread = b""
    if result is None:
        assert whole[0] == "incomplete"
        return
    if isinstance(result, Refusal):
        # A head the reader refused, or a complete one with a bad request line (400).
        assert result.status in ((400, 431) if whole[0] == "error" else (400,)), (result, whole)
        assert result.response().startswith(b"HTTP/1.1 4")
        return
    assert isinstance(result, Request)
    decision = handshake.check(result)
    if isinstance(decision, Refusal):
        assert 400 <= decision.status < 500, decision
        assert decision.response().startswith(b"HTTP/1.1 4")
        return
    assert isinstance(decision, Upgrade)
    protocol = decision.select_protocol(None)
    rest = handshake.take_rest() + unread
    assert rest == whole[2]
    answer = decision.response(decision.headers(protocol)) + rest
    # The client that sent this request accepts the answer.
    client_options = ClientOptions(
        protocols=tuple(decision.protocols),
        per_message_deflate={} if decision.extensions else None,
    )
    client = ClientHandshake(
        "ws://example.com/chat", client_options, key_factory=lambda: decision.key
    )
    client.request(client.prepare_headers())
    client.receive_data(answer)
    assert client.state == client.OPEN, (client.state, client.error, answer)
    assert client.protocol == protocol
    assert client.take_rest() == whole[2]


def response(inp: Input, flags: int, wire: bytes, cut: int) -> None:
    limits = LIMITS[(flags >> 2) & 1]
    whole = read_head(wire, len(wire), limits)
    same_head(read_head(wire, cut, limits), whole)
    if whole[0] in ("error", "incomplete"):
        return
    reader = HeadReader(*limits)
    assert reader.feed(wire)
    try:
        head = reader.response()
    except HandshakeError as exc:
        assert exc.code == "WS_ERR_INVALID_RESPONSE", exc.code
        return
    assert 0 <= head.status <= 999 and head.http_version in ("HTTP/1.0", "HTTP/1.1")


def client(inp: Input, flags: int, wire: bytes, cut: int) -> None:
    options = ClientOptions(
        protocols=(("chat", "superchat"), ())[(flags >> 2) & 1],
        per_message_deflate=DEFLATE_OPTIONS[(flags >> 3) % 4],
        follow_redirects=bool(flags & 0x20),
        max_redirects=1,
    )
    address = ADDRESSES[(flags >> 6) % len(ADDRESSES)]
    handshake = ClientHandshake(address, options, key_factory=lambda: KEY)
    handshake.request(handshake.prepare_headers())
    pieces = [wire[:cut], wire[cut:]]
    for piece in pieces:
        handshake.receive_data(piece)
        if handshake.state == handshake.REDIRECT:
            try:
                handshake.follow()
            except (HandshakeError, InvalidURL):
                return
            handshake.request(handshake.prepare_headers(check_hosts=bool(flags & 2)))
    handshake.receive_eof()
    state = handshake.state
    assert state in ("HEAD", "OPEN", "REDIRECT", "BODY", "DONE", "FAILED"), state
    if state == "FAILED":
        assert isinstance(handshake.error, HandshakeError)
    elif state == "HEAD":
        raise AssertionError("EOF left the handshake waiting for its head")
    elif state == "OPEN":
        assert handshake.response is not None and handshake.response.status == 101
    elif state == "DONE":
        assert handshake.response is not None and isinstance(handshake.response.body, bytes)
        assert isinstance(handshake.unexpected_error(), HandshakeError)


def TestOneInput(data: bytes) -> None:
    inp = Input(data)
    flags = inp.byte()
    cut_fraction = inp.byte()
    wire = inp.rest()
    cut = cut_fraction * (len(wire) + 1) // 256
    (server, response, client, server)[flags & 3](inp, flags, wire, cut)


if __name__ == "__main__":
    main(TestOneInput)

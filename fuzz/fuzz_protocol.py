"""Fuzz the connection state machine ``wsfast.protocol.Protocol``: peer bytes, EOF and the
application's calls (send, ping, pong, close, terminate, the close timer, connection_lost) in an
order decoded from the input.

Input: a flags byte (bit 0 server, bit 1 deflate, bit 2 auto_pong off, bit 3 a pong cap of 2,
bits 4-5 binary_type), then operations: an opcode byte, and for "peer bytes" a length byte and
that many bytes.

Invariants: the only exceptions are the documented ones (``InvalidState`` while not OPEN, the
close code/reason errors of ``close()`` for a bad code or reason, the 125-byte limit of control
payloads); the state never goes back; everything written parses with a Receiver of the other
role, with at most one close frame and nothing after it; nothing is written once the connection
is being dropped; ``on_error`` is called at most once, with a close code in {1002, 1007, 1008,
1009}.
"""

from __future__ import annotations

from typing import Any

from wsfuzz import Input, instrumented, main

with instrumented():
    from wsfast import extension
    from wsfast.exceptions import WebSocketError
    from wsfast.options import ConnectionOptions
    from wsfast.permessage_deflate import PerMessageDeflate
    from wsfast.protocol import CLOSED, OPEN, InvalidState, Protocol
    from wsfast.receiver import DONE, Receiver

MAX_PAYLOAD = 1 << 20
BINARY_TYPES = ("bytes", "bytearray", "fragments", "bytes")
# (code, reason, valid): close() must raise exactly for the invalid ones.
CLOSES: list[tuple[Any, Any, bool]] = [
    (None, "", True),
    (1000, "", True),
    (1001, "going away", True),
    (4000, "é" * 61, True),
    (3000, b"x" * 123, True),
    (1000, "x" * 124, False),
    (1005, "", False),
    (1004, "", False),
    (999, "", False),
    (None, "why", False),
]
MESSAGES: list[Any] = ["", "hello", "é" * 700, b"", b"\x00\xff", bytes(2000), bytearray(b"ab")]


def deflates(is_server: bool) -> tuple[PerMessageDeflate, PerMessageDeflate]:
    """A negotiated pair: (ours, the peer's)."""
    server = PerMessageDeflate({}, is_server=True, max_payload=MAX_PAYLOAD)
    params = server.accept(extension.parse("permessage-deflate")["permessage-deflate"])  # type: ignore[arg-type]
    client = PerMessageDeflate({}, is_server=False)
    answer = extension.format({"permessage-deflate": params})
    client.accept(extension.parse(answer)["permessage-deflate"])  # type: ignore[arg-type]
    return (server, client) if is_server else (client, server)


def TestOneInput(data: bytes) -> None:
    inp = Input(data)
    flags = inp.byte()
    is_server = bool(flags & 1)
    ours = peers = None
    if flags & 2:
        ours, peers = deflates(is_server)
    options = ConnectionOptions(
        max_payload=MAX_PAYLOAD,
        auto_pong=not flags & 4,
        max_pending_auto_pongs=2 if flags & 8 else 0,
        binary_type=BINARY_TYPES[(flags >> 4) & 3],
        close_timeout=30,
    )
    written: list[bytes] = []
    dropped_at: int | None = None
    errors: list[WebSocketError] = []

    def write(chunk: Any) -> None:
        assert dropped_at is None, "written after terminate/expire"
        written.append(bytes(chunk))

    proto = Protocol(
        is_server=is_server,
        options=options,
        deflate=ours,
        write=write,
        on_error=errors.append,
    )
    timer_armed = False
    last_state = proto.state
    while inp.left:
        op = inp.byte() % 12
        state = proto.state
        try:
            if op <= 2:
                proto.receive_data(inp.take(inp.byte()))
            elif op == 3:
                proto.receive_eof()
            elif op == 4:
                code, reason, valid = inp.choice(CLOSES)
                try:
                    proto.close(code, reason)
                except (TypeError, ValueError):
                    assert not valid and state is OPEN, (code, reason, state)
            elif op == 5 or op == 6:
                flags2 = inp.byte()
                message = MESSAGES[flags2 % len(MESSAGES)]
                binary = (None, True, False)[(flags2 >> 3) % 3]
                proto.send(message, binary, fin=not flags2 & 0x40, compress=bool(flags2 & 0x80))
            elif op == 7:
                payload = bytes(inp.byte() & 0x7F)  # up to 127: 126 and 127 are refused
                try:
                    (proto.pong if inp.bool() else proto.ping)(payload)
                except WebSocketError as exc:
                    assert not isinstance(exc, InvalidState) or state is not OPEN
                    assert isinstance(exc, InvalidState) or len(payload) > 125, exc
            elif op == 8:
                proto.terminate()
            elif op == 9:
                if timer_armed:  # the adapter calls expire() only for an armed timer
                    proto.expire()
            elif op == 10:
                proto.connection_lost()
            else:
                proto.auto_pongs_flushed()
        except InvalidState:
            assert state is not OPEN and op in (5, 6, 7), (op, state)
        assert proto.state >= last_state, (last_state, proto.state)
        last_state = proto.state
        if proto.timer is not None:
            timer_armed = True
            proto.timer = None
        if proto.aborted and dropped_at is None:
            dropped_at = len(written)
        assert len(errors) <= 1
    if errors:
        assert errors[0].status_code in {1002, 1007, 1008, 1009}, errors[0].status_code
        assert proto.error is errors[0]
    if proto.state is CLOSED:
        assert proto.close_code is not None

    # What we wrote, as the peer reads it.
    frames: list[Any] = []
    peer = Receiver(
        is_server=not is_server,
        deflate=peers,
        skip_utf8_validation=True,  # a text message may be sent in fragments cut mid-character
        on_message=lambda data, binary: frames.append(("message", binary)),
        on_ping=lambda data: frames.append(("ping", data)),
        on_pong=lambda data: frames.append(("pong", data)),
        on_close=lambda code, reason: frames.append(("close", code)),
    )
    wire = b"".join(written)
    peer.feed(wire)
    closes = [f for f in frames if f[0] == "close"]
    assert len(closes) == proto.close_sent, (closes, proto.close_sent)
    if closes:
        assert frames[-1][0] == "close" and peer.state == DONE, frames[-3:]
        assert not peer.buffered
    if proto.state is OPEN:
        assert not proto.close_sent


if __name__ == "__main__":
    main(TestOneInput)

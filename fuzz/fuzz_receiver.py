"""Fuzz ``Receiver.feed``: both roles, permessage-deflate or not, each binary_type, the input
split at points drawn from the data, listeners that pause the receiver.

Input: a flags byte (bit 0 server, bit 1 deflate, bits 2-3 binary_type, bit 4 pause on every
other event, bit 5 skip_utf8_validation, bit 6 max_fragments 4), a cut-count byte (low 3 bits),
that many cut bytes, then the wire bytes.

Invariants: ``WebSocketError`` is the only exception, with a ``WS_ERR_*`` code and a close code
in {1002, 1007, 1008, 1009}, after which the receiver is done and ignores input; messages have
the type binary_type says and at most max_payload bytes; control payloads at most 125 bytes;
nothing after a close frame; and the events are those of the same bytes fed whole and unpaused,
except that a text frame cut before its end may be refused early (fail-fast UTF-8, 1007).
"""

from __future__ import annotations

from typing import Any

from wsfuzz import Input, instrumented, main

with instrumented():
    from wsfast import extension
    from wsfast.exceptions import WebSocketError
    from wsfast.permessage_deflate import PerMessageDeflate
    from wsfast.receiver import DONE, Receiver

MAX_PAYLOAD = 1 << 20
BINARY_TYPES = ("bytes", "bytearray", "fragments", "bytes")
TYPES = {"bytes": bytes, "bytearray": bytearray, "fragments": list}
STATUS_CODES = {1002, 1007, 1008, 1009}


def make_deflate(is_server: bool) -> PerMessageDeflate:
    pmd = PerMessageDeflate({}, is_server=is_server, max_payload=MAX_PAYLOAD)
    pmd.accept(extension.parse("permessage-deflate")["permessage-deflate"])  # type: ignore[arg-type]
    return pmd


def run(flags: int, chunks: list[bytes], pausing: bool) -> tuple[list[Any], Any]:
    """Feed ``chunks``; returns (events, error or None)."""
    is_server = bool(flags & 1)
    binary_type = BINARY_TYPES[(flags >> 2) & 3]
    events: list[Any] = []
    closed = False

    def event(*item: Any) -> None:
        nonlocal closed
        assert not closed, f"event after the close frame: {item!r}"
        events.append(item)
        if pausing and len(events) & 1:
            receiver.paused = True

    def on_message(data: Any, is_binary: bool) -> None:
        if is_binary:
            assert type(data) is TYPES[binary_type], (binary_type, type(data))
            size = sum(map(len, data)) if binary_type == "fragments" else len(data)
            if binary_type == "fragments":
                assert data and all(type(part) is bytes for part in data), data
            data = b"".join(data) if binary_type == "fragments" else bytes(data)
        else:
            assert type(data) is str
            size = len(data.encode("utf-8", "surrogatepass"))
        # Replacement characters (skip_utf8_validation) take 3 bytes for 1.
        assert size <= MAX_PAYLOAD * (3 if flags & 32 else 1), size
        event("message", data, is_binary)

    def on_control(kind: str) -> Any:
        def callback(data: bytes) -> None:
            assert type(data) is bytes and len(data) <= 125, data
            event(kind, data)

        return callback

    def on_close(code: int, reason: str) -> None:
        nonlocal closed
        assert code == 1005 or 1000 <= code <= 4999, code
        event("close", code, reason)
        closed = True

    receiver = Receiver(
        is_server=is_server,
        max_payload=MAX_PAYLOAD,
        deflate=make_deflate(is_server) if flags & 2 else None,
        skip_utf8_validation=bool(flags & 32),
        binary_type=binary_type,
        max_fragments=4 if flags & 64 else 0,
        on_message=on_message,
        on_ping=on_control("ping"),
        on_pong=on_control("pong"),
        on_close=on_close,
    )
    error: Any = None
    try:
        for chunk in chunks:
            receiver.feed(chunk)
            # Resume as WebSocket.resume does: unpause, parse what was buffered.
            while receiver.paused and receiver.state != DONE:
                receiver.paused = False
                # The front ends ask has_buffered; it must agree with the count.
                assert receiver.has_buffered == (receiver.buffered > 0)
                if receiver.has_buffered:
                    receiver.feed(b"")
            receiver.paused = False
    except WebSocketError as exc:
        assert isinstance(exc.code, str) and exc.code.startswith("WS_ERR_"), exc.code
        assert exc.status_code in STATUS_CODES, (exc.code, exc.status_code)
        assert receiver.state == DONE
        error = (exc.code, exc.status_code)
        count = len(events)
        receiver.feed(chunks[-1] if chunks else b"\x81\x00")
        assert len(events) == count, "input parsed after an error"
    return events, error


def TestOneInput(data: bytes) -> None:
    inp = Input(data)
    flags = inp.byte()
    cuts = [inp.byte() for _ in range(inp.byte() & 7)]
    wire = inp.rest()
    # Cut positions spread over the input: each cut byte is a fraction of its length.
    points = sorted({c * (len(wire) + 1) // 256 for c in cuts})
    chunks = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    whole_events, whole_error = run(flags & ~16, [wire], False)
    events, error = run(flags, chunks, bool(flags & 16))
    if error == whole_error:
        assert events == whole_events, (events, whole_events)
    else:
        # A cut inside a text frame lets fail-fast validation refuse it before its end.
        assert error == ("WS_ERR_INVALID_UTF8", 1007) and whole_error is None, (error, whole_error)
        assert events == whole_events[: len(events)], (events, whole_events)


if __name__ == "__main__":
    main(TestOneInput)

"""Whatever one side's Sender writes, the other side's Receiver reads back unchanged, however the
bytes are split on the way."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wsfast.receiver import Receiver
from wsfast.sender import Sender

# One operation: ("message", data, number of fragments) or ("ping"/"pong", payload).
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("message"),
            st.one_of(st.text(max_size=200), st.binary(max_size=70_000)),
            st.integers(min_value=1, max_value=5),
        ),
        st.tuples(st.sampled_from(["ping", "pong"]), st.binary(max_size=125)),
    ),
    max_size=8,
)


def _send(sender: Sender, ops: list[Any]) -> bytes:
    out = bytearray()
    for op in ops:
        if op[0] != "message":
            out += getattr(sender, op[0])(op[1])
            continue
        _, data, pieces = op
        binary = isinstance(data, bytes)
        step = max(1, -(-len(data) // pieces))
        parts = [data[i : i + step] for i in range(0, len(data), step)] or [data]
        for i, part in enumerate(parts):
            out += sender.message(part, binary, fin=i == len(parts) - 1)
    return bytes(out)


def _expected(ops: list[Any]) -> list[tuple[Any, ...]]:
    return [
        ("message", op[1], isinstance(op[1], bytes)) if op[0] == "message" else (op[0], op[1])
        for op in ops
    ]


def _receive(is_server: bool, pieces: list[bytes]) -> list[tuple[Any, ...]]:
    events: list[tuple[Any, ...]] = []
    receiver = Receiver(
        is_server=is_server,
        on_message=lambda data, is_binary: events.append(("message", data, is_binary)),
        on_ping=lambda data: events.append(("ping", data)),
        on_pong=lambda data: events.append(("pong", data)),
    )
    for piece in pieces:
        receiver.feed(piece)
    return events


@settings(max_examples=100, deadline=None)
@given(
    ops=operations,
    client_sends=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=10),
)
def test_sender_to_receiver(ops: list[Any], client_sends: bool, cuts: list[int]) -> None:
    wire = _send(Sender(is_client=client_sends), ops)
    points = sorted({c % (len(wire) + 1) for c in cuts})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    assert _receive(client_sends, pieces) == _expected(ops)

"""A Hypothesis stateful test of the closing handshake of :class:`wsfast.protocol.Protocol`.

The machine plays the peer (frames, EOF), the local application (send, ping, close,
terminate), the clock (the close timer) and the adapter (acting on ``eof_due``, ``abort_due``
and ``timer`` as ``websocket.py``'s ``_apply`` does, closing TCP, dropping it). What the protocol
writes is parsed by a :class:`~wsfast.receiver.Receiver` of the other role, so every frame is
checked as the peer would check it. The invariants are RFC 6455 section 7's.
"""

from __future__ import annotations

from typing import Any

from conftest import MASK
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from wsfast import WebSocketError
from wsfast.options import ConnectionOptions
from wsfast.protocol import CLOSED, OPEN, InvalidState, Protocol
from wsfast.receiver import DONE, Receiver
from wsfast.sender import frame

CLOSE_TIMEOUT = 5.0
STEPS = 30  # stateful_step_count
CAP = 2  # max_pending_auto_pongs, small enough for a flood of pings to reach

PAYLOADS = st.binary(max_size=40)
CONTROL_PAYLOADS = st.binary(max_size=20)
PEER_CLOSES = st.one_of(
    st.just((None, "")),
    st.tuples(st.sampled_from([1000, 1001, 1011, 3000, 4999]), st.sampled_from(["", "bye", "é"])),
)
# The rules that end the connection, each enabled from a step drawn by ``schedule``.
ENDINGS = ("peer_close", "peer_error", "peer_eof", "terminate", "drop")
BAD_CODES_LIST = [0, 999, 1005, 1006, 5000]
BAD_CODES = st.sampled_from(BAD_CODES_LIST)
# Frames each side must refuse, whatever its role (the masking of these is fixed up per role).
GARBAGE = st.sampled_from(
    [
        (0x3, b"", "reserved opcode"),
        (0x1, b"\xff", "invalid UTF-8"),
        (0x8, b"\x03", "1-byte close payload"),
        (0x8, b"\x03\xed", "close code 1005 on the wire"),
        (0x9, b"x" * 126, "control frame over 125 bytes"),
    ]
)


class ClosingHandshake(RuleBasedStateMachine):
    """The machine for one role; subclasses fix :attr:`IS_SERVER`."""

    IS_SERVER = True

    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[Any, ...]] = []  # frames of the protocol, as the peer parsed them
        self.close_written: tuple[int, str] | None = None
        self.events: list[tuple[Any, ...]] = []
        self.peer_rx = Receiver(
            is_server=not self.IS_SERVER,
            on_message=lambda data, binary: self.written.append(("message", data, binary)),
            on_ping=lambda data: self.written.append(("ping", data)),
            on_pong=lambda data: self.written.append(("pong", data)),
            on_close=self._close_parsed,
        )
        self.proto = Protocol(
            is_server=self.IS_SERVER,
            options=ConnectionOptions(
                close_timeout=CLOSE_TIMEOUT, max_pending_auto_pongs=CAP, generate_mask=lambda: MASK
            ),
            write=self._write,
            on_message=lambda data, binary: self.events.append(("message", data, binary)),
            on_ping=lambda data: self.events.append(("ping", data)),
            on_pong=lambda data: self.events.append(("pong", data)),
            on_close_frame=lambda code, reason: self.events.append(("close", code, reason)),
            on_error=lambda exc: self.events.append(("error", exc)),
        )
        # What the machine has done so far.
        self.local_close: tuple[int | None, str] | None = None
        self.peer_eof = False  # the peer half-closed TCP
        self.eof_done = False  # the adapter half-closed TCP (on eof_due)
        self.abort_done = False
        self.timer_armed = False
        self.lost = False
        self.abort_allowed = False  # terminate(), expire() or the auto-pong cap happened
        # What the invariants saw.
        self.eof_due_seen = False
        self.last_state = OPEN
        self.close_sent_before = False
        self.steps = 0
        # The step from which each way of ending the connection is enabled (see schedule).
        self.allowed_from: dict[str, int] = {}

    @initialize(steps=st.fixed_dictionaries({name: st.integers(0, STEPS) for name in ENDINGS}))
    def schedule(self, steps: dict[str, int]) -> None:
        # Each way of ending the connection may happen at any step, but not from the first one
        # in most runs: with every one enabled throughout, most runs ended within a few steps
        # and a close started here was answered by the peer in 8 runs of 200.
        self.allowed_from = steps

    def _allowed(self, name: str) -> bool:
        return self.steps >= self.allowed_from[name]

    # -- plumbing ---------------------------------------------------------------------------------

    def _write(self, data: Any) -> None:
        # RFC 6455 5.5.1: after sending a close frame an endpoint sends no more data frames; and
        # ws sends no control frame either.
        assert self.close_written is None, "a frame was written after the close frame"
        try:
            self.peer_rx.feed(bytes(data))
        except WebSocketError as exc:
            # Not re-raised as is: inside receive_data() it would pass for the peer's error.
            raise AssertionError(f"the peer refuses what was written: {exc!r}") from exc

    def _close_parsed(self, code: int, reason: str) -> None:
        self.close_written = (code, reason)
        proto = self.proto
        if proto.error is not None:
            # Failing the connection: the close frame carries the error's code.
            assert code == proto.error.status_code and reason == ""
        elif proto.close_received:
            # The peer's close is echoed, a close without a code answered without one.
            assert (code, reason) == (proto.close_code, proto.close_reason)
        else:
            assert self.local_close is not None
            wanted, why = self.local_close
            assert (code, reason) == (1005 if wanted is None else wanted, why)

    def _frame(self, data: bytes, opcode: int, fin: bool = True) -> bytes:
        """A frame of the peer: masked towards a server (RFC 6455 5.3), plain towards a client."""
        return bytes(frame(data, opcode, fin=fin, mask=MASK if self.IS_SERVER else None))

    def _feed(self, data: bytes, split: int) -> None:
        split = min(split, len(data))
        self.proto.receive_data(data[:split])
        self.proto.receive_data(data[split:])

    def _can_receive(self) -> bool:
        # Input that the protocol still parses (see peer_sends_after_the_end for the rest).
        return not self.lost and not self.peer_eof and self.proto.receiver.state != DONE

    # -- the peer ---------------------------------------------------------------------------------

    @precondition(lambda self: self._can_receive())
    @rule(
        data=CONTROL_PAYLOADS,
        kind=st.sampled_from(["text", "binary", "pong"]),
        split=st.integers(0, 8),
    )
    def peer_sends_data_or_pong(self, data: bytes, kind: str, split: int) -> None:
        written, events = len(self.written), len(self.events)
        if kind == "pong":
            self._feed(self._frame(data, 0xA), split)
            assert self.events[events:] == [("pong", data)]
        else:
            text = kind == "text"
            if text:
                data = data.decode("latin-1").encode("utf-8")
            self._feed(self._frame(data, 0x1 if text else 0x2), split)
            message = data.decode("utf-8") if text else data
            assert self.events[events:] == [("message", message, not text)]
        assert len(self.written) == written

    @precondition(lambda self: self._can_receive())
    @rule(data=CONTROL_PAYLOADS, count=st.integers(1, CAP + 2), split=st.integers(0, 8))
    def peer_sends_pings(self, data: bytes, count: int, split: int) -> None:
        # One read of ``count`` pings: a flood reaches the auto-pong cap within one read.
        proto = self.proto
        was_open = proto.state is OPEN
        room = CAP - proto.pending_auto_pongs
        written, events = len(self.written), len(self.events)
        self._feed(self._frame(data, 0x9) * count, split)
        pongs = self.written[written:]
        pings = self.events[events:]
        if not was_open:
            assert pongs == [] and pings == [("ping", data)] * count
        elif count > room:
            # ws 8.23: the peer does not read our pongs; drop it, without a close frame. The
            # ping that hit the cap is reported; the rest of the read is not parsed.
            event("auto-pong cap reached")
            self.abort_allowed = True
            assert proto.abort_due and proto.state is not OPEN
            assert pongs == [("pong", data)] * room and pings == [("ping", data)] * (room + 1)
        else:
            assert pongs == [("pong", data)] * count and pings == [("ping", data)] * count

    @precondition(lambda self: self._allowed("peer_close") and self._can_receive())
    @rule(close=PEER_CLOSES, split=st.integers(0, 8))
    def peer_sends_close(self, close: tuple[int | None, str], split: int) -> None:
        code, reason = close
        payload = b"" if code is None else code.to_bytes(2, "big") + reason.encode("utf-8")
        proto = self.proto
        self._feed(self._frame(payload, 0x8), split)
        assert proto.close_received
        assert (proto.close_code, proto.close_reason) == (
            1005 if code is None else code,
            reason,
        )
        assert proto.close_sent and self.close_written is not None

    @precondition(lambda self: self._allowed("peer_error") and self._can_receive())
    @rule(garbage=GARBAGE, split=st.integers(0, 8))
    def peer_breaks_the_protocol(self, garbage: tuple[int, bytes, str], split: int) -> None:
        opcode, payload, _ = garbage
        proto = self.proto
        self._feed(self._frame(payload, opcode), split)
        assert proto.error is not None and proto.eof_due
        assert proto.close_code == proto.error.status_code

    @precondition(lambda self: self._can_receive() and self.proto.close_sent)
    @rule(split=st.integers(0, 8))
    def peer_answers_our_close(self, split: int) -> None:
        assert self.local_close is not None  # a failure would have stopped the parsing
        self.peer_sends_close(self.local_close, split)

    @precondition(
        lambda self: not self.lost and not self.peer_eof and self.proto.receiver.state == DONE
    )
    @rule(
        frame=st.sampled_from([(0x1, b"late"), (0x2, b""), (0x9, b"p"), (0x8, b""), (0x3, b"")]),
    )
    def peer_sends_after_the_end(self, frame: tuple[int, bytes]) -> None:
        # After its close frame, a failure or terminate(), nothing the peer sends counts.
        written, events = len(self.written), len(self.events)
        state = self.proto.state
        self.proto.receive_data(self._frame(frame[1], frame[0]))
        assert len(self.written) == written and len(self.events) == events
        assert self.proto.state is state

    @precondition(lambda self: self._allowed("peer_eof") and not self.lost and not self.peer_eof)
    @rule()
    def peer_sends_eof(self) -> None:
        self.peer_eof = True
        self.proto.receive_eof()
        assert self.proto.state is not OPEN

    # -- the local application --------------------------------------------------------------------

    @rule(data=st.one_of(PAYLOADS, st.text(max_size=20)), ping=st.booleans())
    def local_sends(self, data: bytes | str, ping: bool) -> None:
        proto = self.proto
        written = len(self.written)
        send = proto.ping if ping else proto.send
        if proto.state is OPEN:
            send(data)
            if ping:
                payload = data.encode("utf-8") if isinstance(data, str) else data
                assert self.written[written:] == [("ping", payload)]
            else:
                assert self.written[written:] == [("message", data, isinstance(data, bytes))]
        else:
            try:
                send(data)
            except InvalidState as exc:
                assert exc.state is proto.state
            else:
                raise AssertionError("sending when not OPEN must raise InvalidState")
            assert len(self.written) == written

    @rule(close=st.one_of(PEER_CLOSES, st.tuples(BAD_CODES, st.just(""))))
    def local_closes(self, close: tuple[int | None, str]) -> None:
        code, reason = close
        proto = self.proto
        state = proto.state
        written = len(self.written)
        if code in BAD_CODES_LIST:
            try:
                proto.close(code)
            except TypeError:
                assert state is OPEN  # validated only when a close frame is to be sent
            else:
                assert state is not OPEN
            assert proto.state is state and len(self.written) == written
            return
        if state is OPEN:
            self.local_close = (code, reason)
        proto.close(code, reason)
        if state is OPEN:
            assert proto.close_sent and proto.state is not OPEN

    @precondition(lambda self: self._allowed("terminate"))
    @rule()
    def local_terminates(self) -> None:
        proto = self.proto
        if self.lost:
            abort_due = proto.abort_due
            proto.terminate()
            assert proto.abort_due is abort_due and proto.state is CLOSED
        else:
            self.abort_allowed = True
            proto.terminate()
            assert proto.abort_due and proto.state is not OPEN

    @precondition(lambda self: self.lost)
    @rule(data=st.one_of(PAYLOADS, st.text(max_size=20)))
    def application_after_connection_lost(self, data: bytes | str) -> None:
        proto = self.proto
        written = len(self.written)
        due = (proto.abort_due, proto.eof_due, proto.timer, proto.pending)
        for call in (lambda: proto.send(data), lambda: proto.ping(), lambda: proto.pong()):
            try:
                call()
            except InvalidState as exc:
                assert exc.state is CLOSED
            else:
                raise AssertionError("sending when CLOSED must raise InvalidState")
        proto.close(1000)
        proto.close(5000)  # not even validated once CLOSED, as ws
        proto.terminate()
        proto.expire()
        assert len(self.written) == written and proto.state is CLOSED
        assert (proto.abort_due, proto.eof_due, proto.timer, proto.pending) == due

    # -- the clock and the adapter ----------------------------------------------------------------

    @precondition(lambda self: self.timer_armed and not self.lost)
    @rule()
    def timer_expires(self) -> None:
        event("close timer expired")
        self.timer_armed = False
        self.abort_allowed = True
        self.proto.expire()
        assert self.proto.abort_due

    @precondition(lambda self: not self.lost)
    @rule(flushed=st.booleans())
    def adapter_acts(self, flushed: bool) -> None:
        # The end of websocket.py's data_received: _apply (abort first and nothing else, else
        # arm the timer, then EOF) when pending, then the transport's buffer may be empty.
        proto = self.proto
        if flushed:
            proto.auto_pongs_flushed()
            assert proto.pending_auto_pongs == 0
        if not proto.pending:
            return
        proto.pending = False
        if proto.abort_due:
            proto.abort_due = False
            self.abort_done = True
            self.connection_lost()  # transport.abort(): asyncio reports connection_lost next
            return
        if proto.timer is not None:
            assert proto.timer == CLOSE_TIMEOUT
            proto.timer = None
            self.timer_armed = True
        if proto.eof_due:
            proto.eof_due = False
            self.eof_done = True

    @precondition(lambda self: not self.lost and (self.eof_done or self.peer_eof))
    @rule()
    def tcp_closes(self) -> None:
        # Our EOF went out and the peer's came back, or the peer's EOF made asyncio close.
        self.connection_lost()

    @precondition(lambda self: not self.lost and self._allowed("drop"))
    @rule()
    def network_drops(self) -> None:
        self.connection_lost()

    def connection_lost(self) -> None:
        self.lost = True
        self.timer_armed = False  # the adapter cancels its timer in _finish
        proto = self.proto
        proto.connection_lost()
        assert proto.state is CLOSED and proto.close_code is not None
        clean = proto.close_sent and proto.close_received and proto.error is None
        event(f"connection lost: {'clean' if clean else 'failed' if proto.error else 'other'}")
        if proto.close_received:
            assert proto.close_code == self._peer_close_code()
        elif proto.error is not None:
            assert proto.close_code == proto.error.status_code
        else:
            assert proto.close_code == 1006

    def _peer_close_code(self) -> int:
        closes = [e for e in self.events if e[0] == "close"]
        assert len(closes) == 1
        code: int = closes[0][1]
        return code

    # -- invariants -------------------------------------------------------------------------------

    @invariant()
    def count_steps(self) -> None:
        self.steps += 1

    @invariant()
    def state_moves_forward(self) -> None:
        state = self.proto.state
        assert state >= self.last_state, (self.last_state, state)
        self.last_state = state

    @invariant()
    def one_close_outcome(self) -> None:
        kinds = [e[0] for e in self.events]
        assert kinds.count("close") + kinds.count("error") <= 1
        assert kinds.count("close") == int(self.proto.close_received)
        error = [e[1] for e in self.events if e[0] == "error"]
        assert error == ([] if self.proto.error is None else [self.proto.error])
        if self.proto.error is not None:
            assert isinstance(self.proto.error, WebSocketError)

    @invariant()
    def close_frame_written_once_and_timed(self) -> None:
        proto = self.proto
        assert proto.close_sent == (self.close_written is not None)
        if proto.close_sent and not self.close_sent_before and not self.lost:
            # The step that wrote the close frame asked for the close timer (ws' setCloseTimer).
            assert proto.timer == CLOSE_TIMEOUT and proto.pending
        self.close_sent_before = proto.close_sent

    @invariant()
    def eof_and_abort_are_due_only_when_allowed(self) -> None:
        proto = self.proto
        if proto.eof_due:
            self.eof_due_seen = True
            # Both close frames exchanged (RFC 6455 7.1.1: the server closes TCP first), or the
            # connection failed (7.1.7).
            assert proto.error is not None or (proto.close_sent and proto.close_received)
            if not proto.is_server:
                # The client waits for the server's EOF unless it failed the connection.
                assert proto.error is not None
        if proto.abort_due:
            assert self.abort_allowed
        clean = proto.close_sent and proto.close_received and proto.error is None
        if clean and not self.abort_done:
            assert self.eof_due_seen is proto.is_server
        if not self.lost and (proto.eof_due or proto.abort_due or proto.timer is not None):
            assert proto.pending  # the adapter checks this one flag

    @invariant()
    def closed_only_after_connection_lost(self) -> None:
        assert (self.proto.state is CLOSED) == self.lost


SETTINGS = settings(
    max_examples=200,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class ServerClosingHandshake(ClosingHandshake):
    IS_SERVER = True


class ClientClosingHandshake(ClosingHandshake):
    IS_SERVER = False


TestServerClosingHandshake = ServerClosingHandshake.TestCase
TestServerClosingHandshake.settings = SETTINGS
TestClientClosingHandshake = ClientClosingHandshake.TestCase
TestClientClosingHandshake.settings = SETTINGS

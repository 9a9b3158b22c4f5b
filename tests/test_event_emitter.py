"""The Node-style event emitter under every public object."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from conftest import wait_for

from wsfast.event_emitter import EventEmitter


def test_on_and_emit_in_order() -> None:
    emitter = EventEmitter()
    calls: list[Any] = []
    emitter.on("x", lambda *a: calls.append(("first", a)))
    emitter.on("x", lambda *a: calls.append(("second", a)))
    assert emitter.emit("x", 1, "two") is True
    assert calls == [("first", (1, "two")), ("second", (1, "two"))]
    assert emitter.emit("nothing") is False


def test_on_returns_self_for_chaining() -> None:
    emitter = EventEmitter()
    assert emitter.on("x", print) is emitter
    assert emitter.off("x", print) is emitter


def test_on_as_decorator() -> None:
    emitter = EventEmitter()
    calls: list[Any] = []

    @emitter.on("x")
    def listener(value: Any) -> None:
        calls.append(value)

    emitter.emit("x", 1)
    assert calls == [1]
    assert listener.__name__ == "listener"  # the decorator returns the function itself


def test_once() -> None:
    emitter = EventEmitter()
    calls: list[Any] = []
    emitter.once("x", calls.append)
    emitter.emit("x", 1)
    emitter.emit("x", 2)
    assert calls == [1]
    assert emitter.listener_count("x") == 0


def test_once_as_decorator() -> None:
    emitter = EventEmitter()
    calls: list[Any] = []

    @emitter.once("x")
    def listener(value: Any) -> None:
        calls.append(value)

    emitter.emit("x", 1)
    emitter.emit("x", 2)
    assert calls == [1]


def test_off_removes_once_wrapper_and_one_registration() -> None:
    emitter = EventEmitter()
    calls: list[Any] = []
    emitter.once("x", calls.append)
    emitter.off("x", calls.append)
    emitter.emit("x", 1)
    assert calls == []
    emitter.on("x", calls.append)
    emitter.on("x", calls.append)
    emitter.off("x", calls.append)
    emitter.emit("x", 2)
    assert calls == [2]
    emitter.off("unknown", calls.append)  # no error


def test_listeners_and_counts() -> None:
    emitter = EventEmitter()
    emitter.on("x", print)
    emitter.once("x", repr)
    assert emitter.listeners("x") == [print, repr]
    assert emitter.listener_count("x") == 2
    emitter.remove_all_listeners("x")
    assert emitter.listener_count("x") == 0
    emitter.on("a", print)
    emitter.on("b", print)
    emitter.remove_all_listeners()
    assert emitter.listener_count("a") == emitter.listener_count("b") == 0


def test_listener_exception_is_logged_and_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    emitter = EventEmitter()
    calls: list[Any] = []

    def bad(*args: Any) -> None:
        raise RuntimeError("boom")

    emitter.on("x", bad)
    emitter.on("x", calls.append)
    with caplog.at_level(logging.ERROR, logger="wsfast"):
        assert emitter.emit("x", 1) is True
    assert calls == [1]
    assert "boom" in caplog.text


def test_error_without_listener_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    emitter = EventEmitter()
    with caplog.at_level(logging.ERROR, logger="wsfast"):
        assert emitter.emit("error", ValueError("nobody listens")) is False
    assert "nobody listens" in caplog.text


@pytest.mark.parametrize("existing", [1, 2], ids=["one-listener", "two-listeners"])
def test_listener_added_during_emit_waits_for_next_emit(existing: int) -> None:
    # Node copies the listener array before calling: a listener added while an event is being
    # emitted is not called for that same event.
    emitter = EventEmitter()
    calls: list[str] = []

    def adder(*args: Any) -> None:
        calls.append("adder")
        emitter.on("x", lambda *a: calls.append("added"))

    emitter.on("x", adder)
    for _ in range(existing - 1):
        emitter.on("x", lambda *a: calls.append("other"))
    emitter.emit("x")
    assert "added" not in calls
    emitter.emit("x")
    assert "added" in calls


def test_listener_removed_during_emit_still_runs_this_time() -> None:
    # Node: removing a listener during emit does not affect the listeners of that emit.
    emitter = EventEmitter()
    calls: list[str] = []

    def second(*args: Any) -> None:
        calls.append("second")

    def first(*args: Any) -> None:
        calls.append("first")
        emitter.off("x", second)

    emitter.on("x", first)
    emitter.on("x", second)
    emitter.emit("x")
    assert calls == ["first", "second"]
    emitter.emit("x")
    assert calls == ["first", "second", "first"]


async def test_coroutine_listener_is_scheduled(caplog: pytest.LogCaptureFixture) -> None:
    emitter = EventEmitter()
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def listener(value: Any) -> None:
        await asyncio.sleep(0)
        done.set_result(value)

    async def failing(value: Any) -> None:
        raise RuntimeError("async boom")

    emitter.on("x", listener)
    emitter.on("x", failing)
    with caplog.at_level(logging.ERROR, logger="wsfast"):
        emitter.emit("x", 42)
        assert await wait_for(done) == 42
        await asyncio.sleep(0.01)
    assert "async boom" in caplog.text

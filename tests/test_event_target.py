"""The WHATWG EventTarget interface (ws' ``lib/event-target.js``) over real loopback sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import settle, url_of, wait_for

import wsfast
from wsfast.event_target import CloseEvent, ErrorEvent, Event, EventTarget, MessageEvent


def test_event_objects() -> None:
    event = Event("open", "t")
    assert (event.type, event.target) == ("open", "t")
    message = MessageEvent("message", b"x")
    assert (message.type, message.data, message.target) == ("message", b"x", None)
    close = CloseEvent("close", 1000, "bye", True)
    assert (close.code, close.reason, close.was_clean, close.wasClean) == (1000, "bye", True, True)
    assert CloseEvent().code == 0 and CloseEvent().reason == "" and not CloseEvent().was_clean
    exc = ValueError("boom")
    error = ErrorEvent("error", exc, "boom")
    assert (error.error, error.message) == (exc, "boom")
    assert ErrorEvent().error is None and ErrorEvent().message == ""
    assert "open" in repr(event)


def test_websocket_is_an_event_target() -> None:
    assert issubclass(wsfast.WebSocket, EventTarget)


async def test_listeners_get_event_objects(echo_server: wsfast.WebSocketServer) -> None:
    events: list[Event] = []
    loop = asyncio.get_running_loop()
    closed = loop.create_future()
    ws = wsfast.WebSocket(url_of(echo_server), per_message_deflate=False)
    ws.add_event_listener("open", events.append)
    ws.add_event_listener("open", lambda e: ws.send("hello"))
    ws.add_event_listener("open", lambda e: ws.send(b"\x00\x01"))

    def on_message(event: MessageEvent) -> None:
        events.append(event)
        if isinstance(event.data, bytes):
            ws.close(1000, "done")

    ws.add_event_listener("message", on_message)
    ws.add_event_listener("close", lambda e: (events.append(e), closed.set_result(None)))
    await wait_for(closed)
    opened, text, binary, close = events
    assert type(opened) is Event and opened.type == "open" and opened.target is ws
    assert isinstance(text, MessageEvent) and text.data == "hello" and text.target is ws
    assert isinstance(binary, MessageEvent) and binary.data == b"\x00\x01"
    assert isinstance(close, CloseEvent) and close.target is ws
    assert (close.code, close.reason, close.was_clean) == (1000, "done", True)


async def test_was_clean_false_when_terminated(echo_server: wsfast.WebSocketServer) -> None:
    closed: asyncio.Future[CloseEvent] = asyncio.get_running_loop().create_future()
    ws = wsfast.WebSocket(url_of(echo_server), per_message_deflate=False)
    ws.onopen = lambda e: ws.terminate()
    ws.onclose = closed.set_result
    event = await wait_for(closed)
    assert event.code == 1006 and event.was_clean is False


async def test_on_attributes_replace_one_listener(echo_server: wsfast.WebSocketServer) -> None:
    seen: list[str] = []
    done = asyncio.get_running_loop().create_future()
    ws = wsfast.WebSocket(url_of(echo_server), per_message_deflate=False)
    assert ws.onopen is None and ws.onmessage is None and ws.onclose is None
    assert ws.onerror is None

    def first(event: MessageEvent) -> None:
        seen.append("first " + event.data)

    def second(event: MessageEvent) -> None:
        seen.append("second " + event.data)
        done.set_result(None)

    ws.onmessage = first
    assert ws.onmessage is first
    ws.onmessage = second  # replaces, does not add
    assert ws.onmessage is second
    ws.add_event_listener("message", first)  # a listener added apart from the attribute stays
    assert ws.listener_count("message") == 2
    ws.onopen = lambda event: ws.send("a")
    await wait_for(done)
    assert seen == ["second a", "first a"]
    ws.onmessage = None
    assert ws.onmessage is None and ws.listener_count("message") == 1
    ws.onmessage = "not callable"
    assert ws.onmessage is None
    ws.close()
    await wait_for(ws.wait_closed())


async def test_add_twice_remove_and_once(echo_server: wsfast.WebSocketServer) -> None:
    seen: list[Any] = []
    got_three = asyncio.get_running_loop().create_future()
    ws = wsfast.WebSocket(url_of(echo_server), per_message_deflate=False)

    def listener(event: MessageEvent) -> None:
        seen.append(("l", event.data))

    def once(event: MessageEvent) -> None:
        seen.append(("once", event.data))

    def counter(event: MessageEvent) -> None:
        if event.data == "3":
            got_three.set_result(None)

    ws.add_event_listener("message", listener)
    ws.add_event_listener("message", listener)  # the DOM ignores a duplicate
    ws.add_event_listener("message", once, once=True)
    ws.add_event_listener("message", counter)
    ws.add_event_listener("ping", listener)  # ws forwards only open/message/close/error
    assert ws.listener_count("message") == 3 and ws.listener_count("ping") == 0
    await wait_for(ws.wait_open())
    ws.send("1")
    await wait_for(_until_len(seen, 2))
    ws.remove_event_listener("message", listener)
    ws.remove_event_listener("message", listener)  # nothing left to remove: no error
    ws.send("2")
    ws.send("3")
    await wait_for(got_three)
    assert seen == [("l", "1"), ("once", "1")]
    ws.close()
    await wait_for(ws.wait_closed())


async def _until_len(items: list[Any], n: int) -> None:
    while len(items) < n:
        await asyncio.sleep(0.005)


async def test_error_event_and_handle_event_objects() -> None:
    class Handler:
        def __init__(self) -> None:
            self.events: list[Event] = []

        def handle_event(self, event: Event) -> None:
            self.events.append(event)

    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    handler = Handler()
    ws = wsfast.WebSocket(f"ws://127.0.0.1:{port}/", per_message_deflate=False)
    ws.addEventListener("error", handler)
    ws.addEventListener("close", handler)
    await wait_for(ws.wait_closed())
    error, close = handler.events
    assert isinstance(error, ErrorEvent) and isinstance(error.error, OSError)
    assert error.message == str(error.error) and error.target is ws
    assert isinstance(close, CloseEvent) and close.code == 1006 and not close.was_clean
    ws.removeEventListener("error", handler)
    assert ws.listener_count("error") == 0


async def test_mixed_with_node_style_listeners(echo_server: wsfast.WebSocketServer) -> None:
    order: list[str] = []
    done = asyncio.get_running_loop().create_future()
    ws = wsfast.WebSocket(url_of(echo_server), per_message_deflate=False)
    ws.on("message", lambda data, is_binary: order.append("on"))
    ws.onmessage = lambda event: (order.append("attr"), done.set_result(None))
    ws.on("open", lambda: ws.send("x"))
    await wait_for(done)
    assert order == ["on", "attr"]
    ws.close()
    await wait_for(ws.wait_closed())
    await settle()


async def test_async_listener_is_scheduled(echo_server: wsfast.WebSocketServer) -> None:
    done = asyncio.get_running_loop().create_future()
    ws = wsfast.WebSocket(url_of(echo_server), per_message_deflate=False)

    async def on_message(event: MessageEvent) -> None:
        await asyncio.sleep(0)
        done.set_result(event.data)

    ws.onmessage = on_message
    ws.onopen = lambda event: ws.send("async")
    assert await wait_for(done) == "async"
    ws.close()
    await wait_for(ws.wait_closed())


def test_not_a_listener_raises_when_called() -> None:
    from wsfast.event_target import _call

    with pytest.raises(TypeError):
        _call(object(), Event("open"))

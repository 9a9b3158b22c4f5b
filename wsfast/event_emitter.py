"""A small synchronous event emitter with Node's ``on``/``once``/``off``/``emit`` semantics."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from types import CoroutineType
from typing import Any

__all__ = ["EventEmitter"]

logger = logging.getLogger("wsfast")

Listener = Callable[..., Any]


class EventEmitter:
    """Node-style events. ``on`` doubles as a decorator when given only the event name.

    Listeners run synchronously in registration order. A listener that is a coroutine function
    is scheduled as a task on the running loop. An exception raised by a listener is logged and
    never propagates into the protocol code that emitted the event, so a bug in user code cannot
    corrupt a connection's state; an ``'error'`` with no listener is logged too (a Node process
    would crash there; a server must not).
    """

    __slots__ = ("_events", "__weakref__")

    def __init__(self) -> None:
        self._events: dict[str, list[Listener]] = {}

    def on(self, event: str, listener: Listener | None = None) -> Any:
        """Add ``listener`` for ``event``; without ``listener``, return a decorator."""
        if listener is None:

            def decorator(func: Listener) -> Listener:
                self.on(event, func)
                return func

            return decorator
        self._events.setdefault(event, []).append(listener)
        self._listeners_changed(event)
        return self

    add_listener = on

    def once(self, event: str, listener: Listener | None = None) -> Any:
        """Add a listener that is removed before its first call."""
        if listener is None:

            def decorator(func: Listener) -> Listener:
                self.once(event, func)
                return func

            return decorator
        return self.on(event, _Once(self, event, listener))

    def off(self, event: str, listener: Listener) -> EventEmitter:
        """Remove one registration of ``listener`` (or of a ``once`` wrapper around it)."""
        listeners = self._events.get(event)
        if listeners:
            for i in range(len(listeners) - 1, -1, -1):
                item = listeners[i]
                # ==, not "is": a bound method is a new object at each attribute access, so
                # ws.off("message", self.handler) must compare by value (Node compares ===).
                if item == listener or getattr(item, "listener", None) == listener:
                    del listeners[i]
                    break
            if not listeners:
                del self._events[event]
            self._listeners_changed(event)
        return self

    remove_listener = off

    def remove_all_listeners(self, event: str | None = None) -> EventEmitter:
        """Remove every listener of ``event``, or of every event."""
        if event is None:
            names = list(self._events)
            self._events.clear()
        else:
            names = [event]
            self._events.pop(event, None)
        for name in names:
            self._listeners_changed(name)
        return self

    def listeners(self, event: str) -> list[Listener]:
        """A copy of the listeners of ``event``."""
        return [getattr(f, "listener", f) for f in self._events.get(event, ())]

    def listener_count(self, event: str) -> int:
        """How many listeners ``event`` has."""
        return len(self._events.get(event, ()))

    def emit(self, event: str, *args: Any) -> bool:
        """Call the listeners of ``event``; returns whether there were any."""
        listeners = self._events.get(event)
        if not listeners:
            if event == "error":
                self._logger().error(
                    "unhandled 'error' event on %r: %s", self, args[0] if args else None
                )
            return False
        # Node calls the listeners registered when emit began: iterate over a copy (or, for the
        # common single listener, a tuple of it) so that on()/off() inside a listener wait for
        # the next emit.
        for listener in listeners[:] if len(listeners) > 1 else (listeners[0],):
            self._call(event, listener, args)
        return True

    def _call(self, event: str, listener: Listener, args: tuple[Any, ...]) -> None:
        """Run one listener as emit() does: errors logged, coroutines scheduled."""
        try:
            result = listener(*args)
        except Exception:
            self._logger().exception("a %r listener of %r raised", event, self)
            return
        # Only coroutines (async def listeners) are scheduled: a listener that returns the
        # awaitable of send() (``lambda d, b: ws.send(d)``) must not cost a Task per message.
        if result is not None and type(result) is CoroutineType:
            _schedule(result)

    def _logger(self) -> logging.Logger | logging.LoggerAdapter[Any]:
        """The emitter's own ``logger`` (a WebSocket's, a server's) or ``wsfast``'s."""
        own = getattr(self, "logger", None)
        if isinstance(own, (logging.Logger, logging.LoggerAdapter)):
            return own
        return logger

    def _listeners_changed(self, event: str) -> None:
        """Hook for subclasses (the message queue of ``recv`` depends on 'message' listeners)."""


# Tasks of async listeners still running: the event loop holds only weak references to tasks,
# so an unreferenced one may be garbage collected before it finishes.
_running: set[asyncio.Task[None]] = set()


def _schedule(awaitable: Any) -> None:
    async def run() -> None:
        try:
            await awaitable
        except Exception:
            logger.exception("an async listener raised")

    task = asyncio.ensure_future(run())
    _running.add(task)
    task.add_done_callback(_running.discard)


class _Once:
    """The registration :meth:`EventEmitter.once` makes: removes itself, then calls
    ``listener``. A class and not a closure: a closure that names itself (to remove itself)
    is a reference cycle, and it held its emitter (a closed connection, its transport and
    buffers) until the next full collection. The emitter is held weakly for the same reason
    (the emitter holds this object while it is registered)."""

    __slots__ = ("_emitter", "_event", "listener")

    def __init__(self, emitter: EventEmitter, event: str, listener: Listener) -> None:
        self._emitter = weakref.ref(emitter)
        self._event = event
        self.listener = listener

    def __call__(self, *args: Any) -> Any:
        emitter = self._emitter()
        if emitter is not None:
            emitter.off(self._event, self)
        return self.listener(*args)

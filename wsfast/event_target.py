"""The WHATWG ``EventTarget`` interface over the event emitter (ws' ``lib/event-target.js``).

Browsers' WebSocket API: ``add_event_listener(type, listener)`` and the ``onopen``, ``onmessage``,
``onclose`` and ``onerror`` attributes, each listener called with one event object
(:class:`Event`, :class:`MessageEvent`, :class:`CloseEvent`, :class:`ErrorEvent`). As in ws this
is a thin layer: every listener is a wrapper registered on the Node-style emitter, so both styles
can be mixed on one connection and see the same events in registration order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .event_emitter import EventEmitter

__all__ = ["Event", "MessageEvent", "CloseEvent", "ErrorEvent", "EventTarget"]

# The only event types ws' EventTarget forwards (ws ignores every other type silently).
_TYPES = ("open", "message", "close", "error")


class Event:
    """An event: its ``type`` and its ``target`` (the WebSocket that dispatched it)."""

    __slots__ = ("type", "target")

    def __init__(self, type: str, target: Any = None) -> None:
        self.type = type
        self.target = target

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__} type={self.type!r}>"


class MessageEvent(Event):
    """A ``'message'`` event: ``data`` is a ``str`` for text and binary data otherwise."""

    __slots__ = ("data",)

    def __init__(self, type: str = "message", data: Any = None, target: Any = None) -> None:
        super().__init__(type, target)
        self.data = data


class CloseEvent(Event):
    """A ``'close'`` event with ``code``, ``reason`` and ``was_clean``.

    ``was_clean`` is true when a close frame was both received and sent (ws'
    ``wasClean = _closeFrameReceived && _closeFrameSent``).
    """

    __slots__ = ("code", "reason", "was_clean")

    def __init__(
        self,
        type: str = "close",
        code: int = 0,
        reason: str = "",
        was_clean: bool = False,
        target: Any = None,
    ) -> None:
        super().__init__(type, target)
        self.code = code
        self.reason = reason
        self.was_clean = was_clean

    @property
    def wasClean(self) -> bool:  # noqa: N802 - the browser's spelling, for ported code
        """Alias of :attr:`was_clean`."""
        return self.was_clean


class ErrorEvent(Event):
    """An ``'error'`` event: the exception (``error``) and its ``message``."""

    __slots__ = ("error", "message")

    def __init__(
        self,
        type: str = "error",
        error: BaseException | None = None,
        message: str = "",
        target: Any = None,
    ) -> None:
        super().__init__(type, target)
        self.error = error
        self.message = message


def _call(listener: Any, event: Event) -> Any:
    # The WHATWG callback interface: a function, or an object with handleEvent (handle_event).
    if callable(listener):
        return listener(event)
    handler = getattr(listener, "handle_event", None) or getattr(listener, "handleEvent", None)
    if handler is None:
        raise TypeError(f"{listener!r} is neither callable nor has handle_event")
    return handler(event)


class EventTarget(EventEmitter):
    """The WHATWG EventTarget methods and ``on<event>`` attributes, mixed into a WebSocket.

    Only ``'open'``, ``'message'``, ``'close'`` and ``'error'`` are dispatched, as in ws. Adding
    the same listener twice for one type is a no-op, as the DOM specifies.
    """

    __slots__ = ()

    def add_event_listener(
        self, type: str, listener: Any, once: bool = False, *, _attribute: bool = False
    ) -> None:
        """Call ``listener(event)`` for each ``type`` event (``once=True``: only the next one)."""
        if type not in _TYPES:
            return
        if not _attribute:
            for existing in self.listeners(type):
                if getattr(existing, "_et_listener", None) is listener and not getattr(
                    existing, "_et_attribute", False
                ):
                    return
        target = self
        wrapper: Callable[..., Any]
        if type == "message":

            def wrapper(data: Any, is_binary: bool = False) -> Any:
                return _call(listener, MessageEvent("message", data, target))

        elif type == "close":

            def wrapper(code: int = 1005, reason: str = "") -> Any:
                was_clean = bool(getattr(target, "was_clean", False))
                return _call(listener, CloseEvent("close", code, reason, was_clean, target))

        elif type == "error":

            def wrapper(error: BaseException) -> Any:
                return _call(listener, ErrorEvent("error", error, str(error), target))

        else:

            def wrapper() -> Any:
                return _call(listener, Event("open", target))

        setattr(wrapper, "_et_listener", listener)  # noqa: B010 - a marker read back by getattr
        setattr(wrapper, "_et_attribute", _attribute)  # noqa: B010
        if once:
            self.once(type, wrapper)
        else:
            self.on(type, wrapper)

    def remove_event_listener(self, type: str, listener: Any) -> None:
        """Remove a listener added by :meth:`add_event_listener` (not an ``on<event>`` one)."""
        for existing in self.listeners(type):
            if getattr(existing, "_et_listener", None) is listener and not getattr(
                existing, "_et_attribute", False
            ):
                self.off(type, existing)
                break

    # The browser's camelCase names, so code ported from JavaScript runs unchanged.
    addEventListener = add_event_listener  # noqa: N815
    removeEventListener = remove_event_listener  # noqa: N815

    def _get_attribute(self, type: str) -> Any:
        for existing in self.listeners(type):
            if getattr(existing, "_et_attribute", False):
                return getattr(existing, "_et_listener", None)
        return None

    def _set_attribute(self, type: str, handler: Any) -> None:
        for existing in self.listeners(type):
            if getattr(existing, "_et_attribute", False):
                self.off(type, existing)
                break
        if handler is None or not callable(handler):
            return
        self.add_event_listener(type, handler, _attribute=True)

    @property
    def onopen(self) -> Any:
        """The one ``'open'`` listener set by assignment (None when unset)."""
        return self._get_attribute("open")

    @onopen.setter
    def onopen(self, handler: Any) -> None:
        self._set_attribute("open", handler)

    @property
    def onmessage(self) -> Any:
        """The one ``'message'`` listener set by assignment (None when unset)."""
        return self._get_attribute("message")

    @onmessage.setter
    def onmessage(self, handler: Any) -> None:
        self._set_attribute("message", handler)

    @property
    def onclose(self) -> Any:
        """The one ``'close'`` listener set by assignment (None when unset)."""
        return self._get_attribute("close")

    @onclose.setter
    def onclose(self, handler: Any) -> None:
        self._set_attribute("close", handler)

    @property
    def onerror(self) -> Any:
        """The one ``'error'`` listener set by assignment (None when unset)."""
        return self._get_attribute("error")

    @onerror.setter
    def onerror(self, handler: Any) -> None:
        self._set_attribute("error", handler)

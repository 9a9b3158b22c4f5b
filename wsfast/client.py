"""The client's opening handshake over asyncio (ws' ``initAsClient``), a thin adapter.

:func:`open_connection` opens the transport (TCP, TLS, a Unix socket, a proxy tunnel or the
``create_connection`` hook), feeds what the server sends to a sans-I/O
:class:`~wsfast.handshake.ClientHandshake` and acts on its decisions: hand over the upgraded
transport, follow a redirect, or fail with the connection already closed. It knows the
WebSocket only through :class:`ClientHooks` (its public ``emit`` and ``listener_count``).
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .exceptions import HandshakeError
from .handshake import ClientHandshake, Response, UnexpectedResponse
from .options import ClientOptions
from .permessage_deflate import PerMessageDeflate
from .proxy import default_ssl_context, fail_future, open_via_proxy, select_proxy
from .url import ParsedURL

__all__ = ["ClientHooks", "ClientRequest", "Upgraded", "UnexpectedResponse", "open_connection"]


class ClientHooks(Protocol):
    """What :func:`open_connection` needs from the WebSocket: its EventEmitter methods."""

    def emit(self, event: str, *args: Any) -> bool:
        """Call the listeners of ``event``; True when there were some."""
        ...

    def listener_count(self, event: str) -> int:
        """How many listeners ``event`` has."""
        ...


@dataclass
class Upgraded:
    """A completed opening handshake, handed to the WebSocket."""

    transport: asyncio.Transport
    """Reading is paused; the WebSocket calls ``set_protocol`` and resumes it."""
    head: bytes
    """Bytes that arrived after the 101 head (the first frames)."""
    protocol: str
    """The selected subprotocol, or ``""``."""
    extensions: dict[str, Any]
    """Negotiated parameters per extension name, e.g. ``{"permessage-deflate": {...}}``."""
    deflate: PerMessageDeflate | None
    response: Response
    """The 101 response (what ``'upgrade'`` gets)."""
    url: str
    """The final URL, after redirects."""


class ClientRequest:
    """The upgrade request (ws' ``http.ClientRequest``), given to ``'redirect'`` and
    ``'unexpected-response'`` listeners.

    ``'redirect'`` listeners get it before it is written, so they may still change its
    headers; with such a listener wsfast leaves the headers alone, as ws does.
    """

    def __init__(self, url: str, target: str, headers: dict[str, str]) -> None:
        self.method = "GET"
        self.url = url
        self.path = target
        self.headers = headers

    def get_header(self, name: str) -> str | None:
        """The value of ``name`` (any case), or None."""
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def set_header(self, name: str, value: str) -> None:
        """Set ``name``, replacing any value it had under another case."""
        self.remove_header(name)
        self.headers[name] = value

    def remove_header(self, name: str) -> None:
        """Remove ``name`` (any case)."""
        for key in [k for k in self.headers if k.lower() == name.lower()]:
            del self.headers[key]

    def __repr__(self) -> str:
        return f"ClientRequest(GET {self.url})"


class _HandshakeProtocol(asyncio.Protocol):
    """Writes the upgrade request and feeds the answer to the ClientHandshake.

    ``head`` resolves once the handshake left its HEAD state, ``body`` once the body of a
    non-101 answer is complete; the connection is closed then, or aborted on any failure.
    """

    def __init__(self, handshake: ClientHandshake, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.handshake = handshake
        # The handshake object outlives a redirected attempt; this connection's late events
        # (connection_lost after the abort) must not reach the next attempt.
        self.attempt = handshake.redirects
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.head: asyncio.Future[None] = loop.create_future()
        self.body: asyncio.Future[bytes] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.attempt == self.handshake.redirects:
            self.handshake.receive_data(data)
            self._update()

    def eof_received(self) -> None:
        if self.attempt == self.handshake.redirects:
            self.handshake.receive_eof()
            self._update()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.attempt != self.handshake.redirects:
            return
        if exc is not None and not self.head.done():
            fail_future(
                self.head, HandshakeError(f"socket error: {exc}", "WS_ERR_HANDSHAKE_CLOSED")
            )
            return
        self.handshake.receive_eof()
        self._update()
        if not self.body.done():
            self.body.cancel()  # the body of an answer nobody waits for (redirect, no listener)

    def _update(self) -> None:
        handshake = self.handshake
        state = handshake.state
        transport = self.transport
        assert transport is not None
        if state == handshake.HEAD:
            return
        if state == handshake.FAILED:
            assert handshake.error is not None
            transport.abort()
            fail_future(self.body if self.head.done() else self.head, handshake.error)
            return
        if not self.head.done():
            if state == handshake.OPEN:
                # Frames may follow the head at once: they wait for the WebSocket.
                transport.pause_reading()
            self.head.set_result(None)
        if state == handshake.DONE and not self.body.done():
            assert handshake.response is not None
            self.body.set_result(handshake.response.body)
            transport.close()

    def body_deadline(self, timeout: float) -> None:
        """Abort if the body is not complete within ``timeout`` seconds: the WebSocket is
        closed by then and nothing else would ever end a server's half-sent body."""
        handle = asyncio.get_running_loop().call_later(timeout, self._body_timed_out)
        self.body.add_done_callback(lambda _: handle.cancel())

    def _body_timed_out(self) -> None:
        assert self.transport is not None
        self.transport.abort()
        fail_future(
            self.body, HandshakeError("Opening handshake has timed out", "WS_ERR_HANDSHAKE_TIMEOUT")
        )

    async def read_body(self) -> bytes:
        # Shielded: a reader that gives up must not cancel the body for a later read().
        return await asyncio.shield(self.body)


async def _open_transport(
    url: ParsedURL, options: ClientOptions, protocol: _HandshakeProtocol
) -> None:
    loop = asyncio.get_running_loop()
    ssl_context: ssl_module.SSLContext | None = None
    if url.secure:
        given = options.ssl
        ssl_context = given if isinstance(given, ssl_module.SSLContext) else None
        ssl_context = ssl_context or default_ssl_context()
    hook = options.create_connection
    proxy = select_proxy(options.proxy, url)  # per attempt: a redirect may change the host
    if hook is not None:
        await hook(lambda: protocol, url, ssl_context)
    elif url.unix_path is not None:
        await loop.create_unix_connection(lambda: protocol, url.unix_path)
    elif proxy is not None:
        await open_via_proxy(proxy, url, protocol, ssl_context, options.proxy_ssl)
    else:
        await loop.create_connection(
            lambda: protocol,
            url.host,
            url.port,
            ssl=ssl_context,
            server_hostname=url.host if ssl_context else None,
        )


async def _attempt(url: ParsedURL, options: ClientOptions, protocol: _HandshakeProtocol) -> None:
    try:
        await _open_transport(url, options, protocol)
        await protocol.head
    except BaseException:
        if protocol.transport is not None:
            protocol.transport.abort()
        raise


async def open_connection(
    address: str,
    options: ClientOptions,
    hooks: ClientHooks,
    on_redirect: Callable[[str], None],
) -> Upgraded:
    """Run the opening handshake to ``address``; returns the upgraded connection.

    ``handshake_timeout`` applies to each attempt (connect plus response head). Redirects are
    followed when ``options.follow_redirects``: ``on_redirect(url)`` is called with each new
    URL and ``'redirect'`` is emitted with ``(url, ClientRequest)`` before the request is sent.
    A non-101 answer emits ``'unexpected-response'`` as soon as its head arrives, when that
    event has listeners, then raises :class:`UnexpectedResponse` (``handled`` True); its body
    keeps arriving for ``await response.read()`` and the connection closes once it is
    complete (or after ``handshake_timeout`` more seconds, when set). Every other failure
    raises (:class:`HandshakeError`, :class:`InvalidURL`, :class:`ProxyError`,
    :class:`OSError`, :class:`ssl.SSLError`) with the connection already closed, and so does
    cancellation.
    """
    handshake = ClientHandshake(address, options)
    while True:
        headers = handshake.prepare_headers(check_hosts=not hooks.listener_count("redirect"))
        request = ClientRequest(handshake.address, handshake.url.target, headers)
        if handshake.redirects:
            hooks.emit("redirect", handshake.address, request)
        protocol = _HandshakeProtocol(handshake, handshake.request(request.headers))
        try:
            await asyncio.wait_for(
                _attempt(handshake.url, options, protocol), options.handshake_timeout
            )
        except asyncio.TimeoutError:
            raise HandshakeError(
                "Opening handshake has timed out", "WS_ERR_HANDSHAKE_TIMEOUT"
            ) from None
        transport = protocol.transport
        assert transport is not None
        if handshake.state == handshake.REDIRECT:
            transport.abort()
            on_redirect(handshake.follow())
            continue
        response = handshake.response
        assert response is not None
        if handshake.state != handshake.OPEN:
            if not hooks.listener_count("unexpected-response"):
                transport.abort()
                raise handshake.unexpected_error()
            if handshake.state == handshake.BODY:
                response.body_source = protocol.read_body
                if options.handshake_timeout is not None:
                    protocol.body_deadline(options.handshake_timeout)
            try:
                hooks.emit("unexpected-response", request, response)
            except BaseException:
                transport.abort()
                raise
            raise UnexpectedResponse(response, handled=True)
        return Upgraded(
            transport,
            handshake.take_rest(),
            handshake.protocol,
            handshake.extensions,
            handshake.deflate,
            response,
            handshake.address,
        )

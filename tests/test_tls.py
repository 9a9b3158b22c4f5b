"""TLS on both sides with certificates made by the tests (issue 5).

``wss://`` verifies the server by default (``ssl=None`` uses ``ssl.create_default_context()``),
an ``ssl.SSLContext`` that trusts the test CA connects, and the server's ``ssl=`` option makes
``request.secure`` and ``info.secure`` true.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
from certs import Certs, client_context, make_certs, record_default_contexts, server_context
from conftest import scaled
from test_transports import Events, echo_once, echo_server, raw_server, round_trip, within, ws_url

import wsfast


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path)


async def test_wss_with_a_context_that_trusts_the_ca(certs: Certs) -> None:
    seen: list[Any] = []

    def verify(info: wsfast.VerifyInfo) -> bool:
        seen.append((info.secure, info.request.secure))
        return True

    async with echo_server(ssl=server_context(certs), verify_client=verify) as server:
        ws = wsfast.WebSocket(ws_url(server, "/tls", scheme="wss"), ssl=client_context(certs))
        assert await echo_once(ws, "secret") == "secret"
        await ws.send(bytes(range(256)) * 1000)
        assert await within(ws.recv()) == bytes(range(256)) * 1000
        assert ws.transport is not None
        assert ws.transport.get_extra_info("ssl_object").version().startswith("TLSv1.")
        request = server.requests[0]  # type: ignore[attr-defined]
        assert request.secure is True
        assert request.path == "/tls"
        assert seen == [(True, True)]
        ws.close(1000, "bye")
        await within(ws.wait_closed())
        assert ws.close_code == 1000


async def test_wss_by_host_name(certs: Certs) -> None:
    async with echo_server(ssl=server_context(certs)) as server:
        port = server.address()[1]
        ws = await round_trip(f"wss://localhost:{port}/", "by name", ssl=client_context(certs))
        assert ws.url == f"wss://localhost:{port}/"


@pytest.mark.parametrize(
    "client_ssl",
    [None, True, ssl.create_default_context()],
    ids=["default", "ssl-true", "default-context-without-the-ca"],
)
async def test_wss_verifies_the_certificate_by_default(certs: Certs, client_ssl: Any) -> None:
    async with echo_server(ssl=server_context(certs)) as server:
        ws = wsfast.WebSocket(ws_url(server, scheme="wss"), ssl=client_ssl)
        events = Events(ws)
        error = await events.failed()
        assert isinstance(error, ssl.SSLCertVerificationError)
        assert "CERTIFICATE_VERIFY_FAILED" in str(error)
        assert events.close_args[0] == 1006
        assert not server.requests  # type: ignore[attr-defined]


async def test_self_signed_server_certificate(certs: Certs) -> None:
    async with echo_server(ssl=server_context(certs, self_signed=True)) as server:
        url = ws_url(server, scheme="wss")
        # Refused by a client that trusts only the CA...
        error = await Events(wsfast.WebSocket(url, ssl=client_context(certs))).failed()
        assert isinstance(error, ssl.SSLCertVerificationError)
        # ...accepted by one that pins the certificate itself...
        pinned = ssl.create_default_context(cafile=str(certs.self_signed_cert))
        await round_trip(url, "pinned", ssl=pinned)
        # ...and by an explicitly non-verifying context (what `wsfast connect --no-check` does).
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        await round_trip(url, "unchecked", ssl=insecure)


async def test_plain_ws_client_against_a_tls_server_fails_cleanly(certs: Certs) -> None:
    async with echo_server(ssl=server_context(certs)) as server:
        errors: list[Any] = []
        server.on("error", errors.append)
        error = await Events(wsfast.WebSocket(ws_url(server))).failed()
        assert isinstance(error, wsfast.HandshakeError)
        # The server survives the bad client and serves the next one.
        await round_trip(ws_url(server, scheme="wss"), ssl=client_context(certs))
        assert errors == []


async def test_plain_server_request_is_not_secure() -> None:
    seen: list[bool] = []
    async with echo_server(verify_client=lambda info: seen.append(info.secure) or True) as server:
        await round_trip(ws_url(server))
        assert server.requests[0].secure is False  # type: ignore[attr-defined]
        assert seen == [False]


def _opener(server: wsfast.WebSocketServer, seen: list[Any]) -> Any:
    """A ``create_connection`` hook to ``server`` that records the TLS context it is given."""
    port = server.address()[1]

    async def opener(protocol_factory: Any, url: Any, ssl_context: Any) -> Any:
        seen.append(ssl_context)
        loop = asyncio.get_running_loop()
        return await loop.create_connection(
            protocol_factory, "127.0.0.1", port, ssl=ssl_context, server_hostname="localhost"
        )

    return opener


async def test_create_connection_hook_gets_the_ssl_context_for_wss(certs: Certs) -> None:
    context = client_context(certs)
    async with echo_server(ssl=server_context(certs)) as server:
        seen: list[Any] = []
        opener = _opener(server, seen)
        await round_trip(
            "wss://service.internal/", "hooked tls", ssl=context, create_connection=opener
        )
        assert seen == [context]
        assert server.requests[0].headers["host"] == "service.internal"  # type: ignore[attr-defined]


async def test_wss_connections_share_one_default_context(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    made_defaults = record_default_contexts(certs, monkeypatch)
    async with echo_server(ssl=server_context(certs)) as server:
        seen: list[Any] = []
        port, opener = server.address()[1], _opener(server, seen)
        for message in ("one", "two"):
            await round_trip(f"wss://localhost:{port}/", message, create_connection=opener)
        # Made once, on first use, and shared (issue 9: 18 ms per connection before)...
        assert len(made_defaults) == 1
        assert seen == [made_defaults[0], made_defaults[0]]
        assert seen[0] is seen[1] is wsfast.proxy.default_ssl_context()
        # ...while a context given with ssl= is used as it is.
        given = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # (not made by create_default_context)
        given.load_verify_locations(certs.ca_cert)
        await round_trip(f"wss://localhost:{port}/", "given", ssl=given, create_connection=opener)
        assert seen[2] is given
        assert len(made_defaults) == 1


async def test_server_handshake_timeout_covers_the_tls_handshake(certs: Certs) -> None:
    async with echo_server(ssl=server_context(certs), handshake_timeout=0.2) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.address()[1])
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await within(reader.read(), 5) == b""  # no ClientHello ever: dropped
        assert loop.time() - started < scaled(3)
        writer.close()
        await round_trip(ws_url(server, scheme="wss"), ssl=client_context(certs))


async def test_client_handshake_timeout_covers_the_tls_handshake() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # takes the ClientHello, never answers

    async with raw_server(silent) as port:
        ws = wsfast.WebSocket(f"wss://127.0.0.1:{port}/", handshake_timeout=0.2)
        error = await Events(ws).failed()
        assert isinstance(error, wsfast.WebSocketError)
        assert error.code == "WS_ERR_HANDSHAKE_TIMEOUT"

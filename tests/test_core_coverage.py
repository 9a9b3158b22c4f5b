"""The remaining branches of the sans-I/O core: option validation (``wsfast.options``) and the
small accessors of ``wsfast.handshake``, each with the outcome ws or Node gives.

The URL, body-framing and redirect cases live with their neighbours in ``test_url.py``,
``test_client_handshake.py`` and ``test_server_handshake.py``.
"""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from wsfast.handshake import (
    Headers,
    Request,
    Response,
    negotiate_deflate,
    request_extensions,
)
from wsfast.options import ClientOptions, ConnectionOptions, ServerOptions

# (class, keyword arguments, exception, message), one row per check of __post_init__.
INVALID_OPTIONS: list[tuple[str, type[Any], dict[str, Any], type[Exception], str]] = [
    ("max-queue-0", ConnectionOptions, {"max_queue": 0}, ValueError, "max_queue must be >= 1"),
    (
        "max-queue-negative",
        ConnectionOptions,
        {"max_queue": -1},
        ValueError,
        "max_queue must be >= 0, got -1",
    ),
    (
        "generate-mask-bytes",
        ConnectionOptions,
        {"generate_mask": b"\x00" * 4},
        TypeError,
        "generate_mask must be callable",
    ),
    (
        "protocol-version-12",
        ClientOptions,
        {"protocol_version": 12},
        ValueError,
        "Unsupported protocol version: 12 (supported versions: 8, 13)",
    ),
    (
        "client-ssl-str",
        ClientOptions,
        {"ssl": "tls"},
        TypeError,
        "ssl must be an ssl.SSLContext, a bool or None",
    ),
    (
        "client-ssl-object",
        ClientOptions,
        {"ssl": object()},
        TypeError,
        "ssl must be an ssl.SSLContext, a bool or None",
    ),
    (
        "proxy-bytes",
        ClientOptions,
        {"proxy": b"http://p:3128"},
        TypeError,
        "proxy must be a URL string, True (the environment) or None",
    ),
    (
        "server-ssl-true",
        ServerOptions,
        {"port": 0, "ssl": True},
        TypeError,
        "ssl must be an ssl.SSLContext or None",
    ),
]


@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "message"),
    [row[1:] for row in INVALID_OPTIONS],
    ids=[row[0] for row in INVALID_OPTIONS],
)
def test_invalid_options(
    cls: type[Any], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        cls(**kwargs)
    assert type(info.value) is error
    assert str(info.value) == message


def test_valid_edge_options() -> None:
    context = ssl.create_default_context()
    mask = ConnectionOptions(max_queue=1, generate_mask=lambda: b"\x00" * 4).generate_mask
    assert mask is not None and mask() == b"\x00" * 4
    assert ClientOptions(ssl=context, proxy="http://p:3128").ssl is context
    assert ClientOptions(ssl=False).ssl is False
    assert ServerOptions(port=0, ssl=context).ssl is context


@pytest.mark.parametrize(
    ("protocols", "expected"),
    [("chat", ("chat",)), (["a", "b"], ("a", "b")), (None, ()), ((), ())],
    ids=["str", "list", "none", "empty"],
)
def test_client_build_protocols(protocols: Any, expected: tuple[str, ...]) -> None:
    # ws: `if (typeof protocols === 'string') protocols = [protocols]`, then each is checked.
    assert ClientOptions.build(protocols).protocols == expected


def test_client_build_checks_a_str_as_one_protocol() -> None:
    # "a,b" is one protocol for ws, and a comma is no token character.
    with pytest.raises(ValueError, match="^An invalid or duplicated subprotocol was specified$"):
        ClientOptions.build("a,b")


def test_headers_mapping() -> None:
    headers = Headers([("Host", "h"), ("X-A", "1"), ("x-a", "2")])
    assert list(headers) == ["host", "x-a"]
    assert dict(headers) == {"host": "h", "x-a": "1, 2"}
    assert headers.get_all("X-A") == ["1", "2"]
    assert headers.get_all("missing") == []
    assert repr(headers) == "Headers([('Host', 'h'), ('X-A', '1'), ('x-a', '2')])"


def test_request_and_response_aliases() -> None:
    # ws' req.url and res.statusCode.
    assert Request("GET", "/chat?x=1", Headers()).url == "/chat?x=1"
    assert Response(403, "Forbidden", Headers()).status_code == 403


def test_no_extension_offer() -> None:
    request = Request("GET", "/", Headers([("Sec-WebSocket-Extensions", "x-other")]))
    assert request_extensions(Request("GET", "/", Headers())) == {}
    assert request_extensions(request) == {"x-other": [{}]}
    assert negotiate_deflate(request, {}, 0) == (None, {})

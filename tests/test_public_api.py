"""The public names of DESIGN section 3: they exist, keep their signatures, and every module
declares ``__all__``."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
from typing import Any

import pytest
from conftest import scaled

import wsfast

# The names users, the examples and outside checks depend on (DESIGN section 3).
CONTRACT = [
    "WebSocket",
    "connect",
    "WebSocketServer",
    "serve",
    "create_websocket_stream",
    "speedups",
    "speedups_status",
    "WebSocketError",
    "ConnectionClosed",
    "generate_mask",
    "broadcast",
    "CONNECTING",
    "OPEN",
    "CLOSING",
    "CLOSED",
]

MODULES = sorted(f"wsfast.{info.name}" for info in pkgutil.iter_modules(wsfast.__path__)) + [
    "wsfast"
]


def test_all_lists_the_contract() -> None:
    for name in CONTRACT:
        assert name in wsfast.__all__, name
        assert hasattr(wsfast, name), name


def test_all_has_no_duplicates_and_every_name_exists() -> None:
    assert len(set(wsfast.__all__)) == len(wsfast.__all__)
    for name in wsfast.__all__:
        assert hasattr(wsfast, name), name


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, Any] = {}
    exec("from wsfast import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(wsfast.__all__)


@pytest.mark.parametrize("module_name", MODULES)
def test_every_module_has_all(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__doc__, f"{module_name} has no docstring"
    names = getattr(module, "__all__", None)
    assert isinstance(names, list) and names, f"{module_name} has no __all__"
    assert len(set(names)) == len(names)
    for name in names:
        assert hasattr(module, name), f"{module_name}.__all__ lists missing {name}"


@pytest.mark.parametrize("module_name", MODULES)
def test_public_classes_and_functions_have_docstrings(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{module_name}.{name} has no docstring"


def _defaults(func: Any) -> dict[str, Any]:
    return {
        name: param.default
        for name, param in inspect.signature(func).parameters.items()
        if param.default is not inspect.Parameter.empty
    }


def test_websocket_options_and_defaults() -> None:
    defaults = _defaults(wsfast.WebSocket.__init__)
    expected = {
        "protocols": None,
        "per_message_deflate": True,
        "handshake_timeout": None,
        "origin": None,
        "headers": None,
        "protocol_version": 13,
        "max_payload": 100 * 1024 * 1024,
        "follow_redirects": False,
        "max_redirects": 10,
        "skip_utf8_validation": False,
        "auto_pong": True,
        "ssl": None,
        "proxy": None,
        "close_timeout": 30.0,
    }
    for name, value in expected.items():
        assert name in defaults, name
        assert defaults[name] == value, name


def test_websocket_server_options_and_defaults() -> None:
    defaults = _defaults(wsfast.WebSocketServer.__init__)
    expected = {
        "port": None,
        "host": None,
        "per_message_deflate": False,
        "max_payload": 100 * 1024 * 1024,
        "verify_client": None,
        "handle_protocols": None,
        "client_tracking": True,
        "path": None,
        "no_server": False,
        "ssl": None,
    }
    for name, value in expected.items():
        assert name in defaults, name
        assert defaults[name] == value, name


@pytest.mark.parametrize(
    "method, parameters",
    [
        ("send", {"binary": None, "compress": None, "fin": True, "mask": None, "callback": None}),
        ("ping", {"data": b"", "mask": None, "callback": None}),
        ("pong", {"data": b"", "mask": None, "callback": None}),
        ("close", {"code": None, "reason": ""}),
        ("terminate", {}),
        ("pause", {}),
        ("resume", {}),
        ("recv", {}),
        ("on", {}),
        ("once", {}),
        ("off", {}),
        ("emit", {}),
    ],
)
def test_websocket_methods(method: str, parameters: dict[str, Any]) -> None:
    func = getattr(wsfast.WebSocket, method)
    assert inspect.getdoc(func), method
    defaults = _defaults(func)
    for name, value in parameters.items():
        assert defaults.get(name, "missing") == value, f"{method}({name}=...)"


@pytest.mark.parametrize(
    "name",
    ["ready_state", "buffered_amount", "protocol", "extensions", "url", "binary_type", "is_paused"],
)
def test_websocket_properties(name: str) -> None:
    assert isinstance(getattr(wsfast.WebSocket, name), property)


def test_websocket_states() -> None:
    assert (wsfast.CONNECTING, wsfast.OPEN, wsfast.CLOSING, wsfast.CLOSED) == (0, 1, 2, 3)
    ws = wsfast.WebSocket
    assert (ws.CONNECTING, ws.OPEN, ws.CLOSING, ws.CLOSED) == (0, 1, 2, 3)


@pytest.mark.parametrize(
    "method", ["handle_upgrade", "close", "address", "on", "should_handle", "serve_forever"]
)
def test_server_methods(method: str) -> None:
    assert inspect.getdoc(getattr(wsfast.WebSocketServer, method)), method


def test_exceptions() -> None:
    error = wsfast.WebSocketError("bad", "WS_ERR_INVALID_OPCODE", 1002)
    assert (error.code, error.status_code, str(error)) == ("WS_ERR_INVALID_OPCODE", 1002, "bad")
    closed = wsfast.ConnectionClosed(4000, "why")
    assert (closed.code, closed.reason) == (4000, "why")
    assert issubclass(wsfast.HandshakeError, wsfast.WebSocketError)


def test_generate_mask_returns_four_bytes() -> None:
    mask = wsfast.generate_mask()
    assert isinstance(mask, bytes) and len(mask) == 4


def test_speedups_report() -> None:
    report = wsfast.speedups()
    assert set(report) == {"bufferutil", "utf8validate"}
    assert all(value is None or isinstance(value, str) for value in report.values())
    # WSFAST_EXPECT_SPEEDUPS (a native build that did not load) is checked by test_speedups.py.


def test_speedups_can_be_switched_off() -> None:
    env = dict(os.environ, WSFAST_NO_BUFFER_UTIL="1", WSFAST_NO_UTF_8_VALIDATE="1")
    code = (
        "import wsfast, wsfast.buffer_util as b, wsfast.validation as v;"
        "assert wsfast.speedups() == {'bufferutil': None, 'utf8validate': None};"
        "assert b.mask is b.py_mask and v.is_valid_utf8 is v.py_is_valid_utf8;"
        "print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=scaled(60)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"

"""The ``Sec-WebSocket-Extensions`` header (the twin of ws' ``lib/extension.js``).

RFC 6455 section 9.1 grammar: a comma separated list of extensions, each a token followed by
``; param`` or ``; param=value`` items, where a value is a token or a quoted string whose
unescaped content is itself a token. The parser keeps ws' strictness, whitespace rules and error
messages, so a header that ws refuses is refused here too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, TypeAlias

from .subprotocol import TOKEN_CHARS

__all__ = ["ExtensionParams", "ExtensionOffers", "parse", "format"]

ExtensionParams: TypeAlias = dict[str, list[str | Literal[True]]]
"""One offer or response: each parameter name maps to its values (``True`` when valueless)."""

ExtensionOffers: TypeAlias = dict[str, list[ExtensionParams]]
"""Each extension name maps to its offers, in header order."""

_WHITESPACE = " \t"

# Parser states: reading the extension name, a parameter name, or a parameter value.
_EXTENSION = 0
_PARAM = 1
_VALUE = 2


def _unexpected(i: int) -> ValueError:
    return ValueError(f"Unexpected character at index {i}")


def parse(header: str | None) -> ExtensionOffers:
    """Parse a ``Sec-WebSocket-Extensions`` value.

    ``"a; x; y=1; y=2, a, b"`` gives ``{"a": [{"x": [True], "y": ["1", "2"]}, {}], "b": [{}]}``:
    several offers of one extension stay in order, a parameter without a value is ``[True]`` and
    a repeated parameter collects its values. Raises ``ValueError`` with ws' messages
    (``Unexpected character at index N``, ``Unexpected end of input``).
    """
    offers: ExtensionOffers = {}
    if not header:
        return offers

    params: ExtensionParams = {}
    state = _EXTENSION
    extension_name = ""
    param_name = ""
    must_unescape = False
    is_escaping = False
    in_quotes = False
    start = -1
    end = -1

    def finish_value(value: str | Literal[True]) -> None:
        params.setdefault(param_name, []).append(value)

    def finish_extension(name: str) -> None:
        nonlocal params
        offers.setdefault(name, []).append(params)
        params = {}

    for i, char in enumerate(header):
        if state != _VALUE:
            if end == -1 and char in TOKEN_CHARS:
                if start == -1:
                    start = i
            elif char in _WHITESPACE and i != 0:
                # ws 8.18+ refuses leading whitespace (the HTTP parser strips it anyway).
                if end == -1 and start != -1:
                    end = i
            elif char == ";" or char == ",":
                if start == -1:
                    raise _unexpected(i)
                name = header[start : i if end == -1 else end]
                if state == _EXTENSION:
                    if char == ",":
                        finish_extension(name)
                    else:
                        extension_name = name
                        state = _PARAM
                else:
                    param_name = name
                    finish_value(True)
                    if char == ",":
                        finish_extension(extension_name)
                        state = _EXTENSION
                start = end = -1
            elif char == "=" and state == _PARAM and start != -1 and end == -1:
                # No whitespace is allowed before "=" (ws: ``end === -1``).
                param_name = header[start:i]
                state = _VALUE
                start = end = -1
            else:
                raise _unexpected(i)
        elif is_escaping:
            # RFC 6455 section 9.1: an unescaped quoted value must still be a token, so only a
            # token character may follow the backslash.
            if char not in TOKEN_CHARS:
                raise _unexpected(i)
            if start == -1:
                start = i  # the backslash before ``start`` is already left out
            else:
                must_unescape = True
            is_escaping = False
        elif in_quotes:
            if char in TOKEN_CHARS:
                if start == -1:
                    start = i
            elif char == '"' and start != -1:
                in_quotes = False
                end = i
            elif char == "\\":
                is_escaping = True
            else:
                raise _unexpected(i)
        elif char == '"' and header[i - 1] == "=":
            in_quotes = True
        elif end == -1 and char in TOKEN_CHARS:
            if start == -1:
                start = i
        elif start != -1 and char in _WHITESPACE:
            if end == -1:
                end = i
        elif char == ";" or char == ",":
            if start == -1:
                raise _unexpected(i)
            value = header[start : i if end == -1 else end]
            finish_value(value.replace("\\", "") if must_unescape else value)
            must_unescape = False
            if char == ",":
                finish_extension(extension_name)
                state = _EXTENSION
            else:
                state = _PARAM
            start = end = -1
        else:
            raise _unexpected(i)

    # ws 8.18+ refuses trailing whitespace too, as the end of input.
    if start == -1 or in_quotes or header[-1] in _WHITESPACE:
        raise ValueError("Unexpected end of input")

    token = header[start : len(header) if end == -1 else end]
    if state == _EXTENSION:
        finish_extension(token)
    else:
        if state == _PARAM:
            param_name = token
            finish_value(True)
        else:
            finish_value(token.replace("\\", "") if must_unescape else token)
        finish_extension(extension_name)
    return offers


def _format_value(name: str, value: object) -> str:
    if value is True:
        return name
    # ws interpolates JavaScript values; spell booleans the same way on the wire.
    text = "false" if value is False else str(value)
    return f"{name}={text}"


def format(extensions: Mapping[str, Mapping[str, object] | Sequence[Mapping[str, object]]]) -> str:
    """Build a ``Sec-WebSocket-Extensions`` value, the inverse of :func:`parse`.

    Each extension maps to one params mapping or a sequence of them (several offers); each
    parameter value is ``True`` (written bare), a scalar, or a list of those.
    ``format({"permessage-deflate": {"client_max_window_bits": True}})`` gives
    ``"permessage-deflate; client_max_window_bits"``.
    """
    offers: list[str] = []
    for name, configurations in extensions.items():
        if isinstance(configurations, Mapping):
            configurations = [configurations]
        for params in configurations:
            items = [name]
            for key, values in params.items():
                if not isinstance(values, list):
                    values = [values]
                items.extend(_format_value(key, value) for value in values)
            offers.append("; ".join(items))
    return ", ".join(offers)

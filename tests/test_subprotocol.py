"""Sec-WebSocket-Protocol parsing, with ws' strictness and messages."""

from __future__ import annotations

import pytest

from wsfast import subprotocol


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("foo", ["foo"]),
        ("foo,bar", ["foo", "bar"]),
        ("foo , bar,\tbaz", ["foo", "bar", "baz"]),
        ("chat, superchat, v1.json", ["chat", "superchat", "v1.json"]),
        ("b,a,c", ["b", "a", "c"]),
    ],
    ids=repr,
)
def test_parse(header: str, expected: list[str]) -> None:
    assert subprotocol.parse(header) == expected


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", "Unexpected end of input"),
        ("foo,", "Unexpected end of input"),
        ("foo ", "Unexpected end of input"),
        ("foo\t", "Unexpected end of input"),
        ("foo, bar ", "Unexpected end of input"),
        (" foo", "Unexpected character at index 0"),
        ("\tfoo", "Unexpected character at index 0"),
        (",", "Unexpected character at index 0"),
        ("foo,,bar", "Unexpected character at index 4"),
        ("foo, ,bar", "Unexpected character at index 5"),
        ("fo o", "Unexpected character at index 3"),
        ("foo;bar", "Unexpected character at index 3"),
        ("f@o", "Unexpected character at index 1"),
        ('"foo"', "Unexpected character at index 0"),
        ("f\u00f6o", "Unexpected character at index 1"),
        ("foo,foo", 'The "foo" subprotocol is duplicated'),
        ("foo,bar,foo", 'The "foo" subprotocol is duplicated'),
        ("foo , foo ,bar", 'The "foo" subprotocol is duplicated'),
    ],
    ids=repr,
)
def test_parse_invalid(header: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        subprotocol.parse(header)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("chat", True),
        ("v1.json", True),
        ("!#$%&'*+-.^_`|~09azAZ", True),
        ("", False),
        ("a b", False),
        ("a,b", False),
        ("a;b", False),
        ('"a"', False),
        ("\u00e9", False),
        ("a\x00", False),
        ("a\x7f", False),
    ],
    ids=repr,
)
def test_is_valid_token(value: str, valid: bool) -> None:
    assert subprotocol.is_valid_token(value) is valid

"""Sec-WebSocket-Extensions parsing and formatting, with ws' strictness and messages."""

from __future__ import annotations

import pytest

from wsfast import extension


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("", {}, id="empty"),
        pytest.param(None, {}, id="none"),
        pytest.param("foo", {"foo": [{}]}, id="single"),
        pytest.param(
            "foo;bar;baz=1;bar=2", {"foo": [{"bar": [True, "2"], "baz": ["1"]}]}, id="params"
        ),
        pytest.param(
            "foo,bar;baz,foo;baz",
            {"foo": [{}, {"baz": [True]}], "bar": [{"baz": [True]}]},
            id="several-offers-in-order",
        ),
        pytest.param('foo;bar="hi"', {"foo": [{"bar": ["hi"]}]}, id="quoted"),
        pytest.param('foo;bar="\\0"', {"foo": [{"bar": ["0"]}]}, id="escaped-first"),
        pytest.param('foo;bar="b\\a\\z"', {"foo": [{"bar": ["baz"]}]}, id="escaped-inner"),
        pytest.param('foo;bar="b\\az";bar', {"foo": [{"bar": ["baz", True]}]}, id="escaped-then"),
        pytest.param(
            "hasOwnProperty, toString, __proto__",
            {"hasOwnProperty": [{}], "toString": [{}], "__proto__": [{}]},
            id="object-like-names",
        ),
        pytest.param(
            'foo; bar\t; \tbaz=1\t ;  bar="1"\t\t, \tqux\t ;norf ',
            {"foo": [{"bar": [True, "1"], "baz": ["1"]}], "qux": [{"norf": [True]}]},
            id="optional-whitespace",
        ),
        pytest.param(
            "permessage-deflate; client_max_window_bits=10, permessage-deflate",
            {"permessage-deflate": [{"client_max_window_bits": ["10"]}, {}]},
            id="pmd-two-offers",
        ),
        pytest.param(
            'permessage-deflate; server_max_window_bits="10"',
            {"permessage-deflate": [{"server_max_window_bits": ["10"]}]},
            id="pmd-quoted-value",
        ),
    ],
)
def test_parse(header: str | None, expected: extension.ExtensionOffers) -> None:
    assert extension.parse(header) == expected


@pytest.mark.parametrize(
    ("header", "index"),
    [
        # an empty name
        (",", 0),
        ("foo,,", 4),
        ("foo,  ,", 6),
        ("foo;=", 4),
        ("foo; =", 5),
        ("foo;;", 4),
        ("foo; ;", 5),
        ("foo;bar=,", 8),
        ('foo;bar=""', 9),
        # misplaced whitespace
        ("f oo", 2),
        ("foo;ba r", 7),
        ("foo;bar =", 8),
        ("foo;bar= ", 8),
        ("foo=bar", 3),
        # characters outside the token set
        ("f@o", 1),
        ("f\\oo", 1),
        ('"foo"', 0),
        ('f"oo"', 1),
        ("foo;b@r", 5),
        ("foo;b\\ar", 5),
        ('foo;"bar"', 4),
        ('foo;b"ar"', 5),
        ("foo;bar=b@z", 9),
        ("foo;bar=b\\az ", 9),
        ('foo;bar="b@z"', 10),
        ('foo;bar="baz;"', 12),
        ('foo;bar=b"az"', 9),
        ('foo;bar="\\\\"', 10),
        ("f\u00e9o", 1),
        ("foo;bar=\u00e9", 8),
        # text after a closing quote
        ('foo;bar="baz"qux', 13),
        ('foo;bar="baz" qux', 14),
    ],
    ids=repr,
)
def test_parse_unexpected_character(header: str, index: int) -> None:
    with pytest.raises(ValueError, match=rf"^Unexpected character at index {index}$"):
        extension.parse(header)


@pytest.mark.parametrize(
    "header",
    ["foo, ", "foo;", "foo;bar,", "foo;bar; ", "foo;bar=", 'foo;bar="baz', 'foo;bar="1\\', " "],
    ids=repr,
)
def test_parse_unexpected_end(header: str) -> None:
    with pytest.raises(ValueError, match=r"^Unexpected end of input$"):
        extension.parse(header)


@pytest.mark.parametrize(
    ("extensions", "expected"),
    [
        pytest.param({"foo": {}}, "foo", id="single"),
        pytest.param({"foo": {"bar": [True, 2], "baz": 1}}, "foo; bar; bar=2; baz=1", id="params"),
        pytest.param(
            {"foo": [{}, {"baz": True}], "bar": {"baz": True}},
            "foo, foo; baz, bar; baz",
            id="several",
        ),
        pytest.param(
            {"permessage-deflate": {"client_max_window_bits": True, "server_max_window_bits": 10}},
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10",
            id="pmd",
        ),
        pytest.param({"foo": {"bar": False}}, "foo; bar=false", id="false-as-ws"),
        pytest.param({}, "", id="nothing"),
    ],
)
def test_format(extensions: dict[str, object], expected: str) -> None:
    assert extension.format(extensions) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "header",
    [
        "foo",
        "foo; bar; bar=2; baz=1",
        "foo, foo; baz, bar; baz",
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=10, "
        "permessage-deflate; client_max_window_bits",
    ],
)
def test_round_trip(header: str) -> None:
    parsed = extension.parse(header)
    assert extension.format(parsed) == header
    assert extension.parse(extension.format(parsed)) == parsed

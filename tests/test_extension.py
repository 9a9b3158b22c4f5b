"""Sec-WebSocket-Extensions parsing and formatting, with ws' strictness and messages."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wsfast import extension, subprotocol


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
            'foo; bar\t; \tbaz=1\t ;  bar="1"\t\t, \tqux\t ;norf',
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
        (" foo", 0),
        ("\tfoo", 0),
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
    [
        "foo, ",
        "foo;",
        "foo;bar,",
        "foo;bar; ",
        "foo;bar=",
        'foo;bar="baz',
        'foo;bar="1\\',
        "foo ",
        "foo\t",
        "foo;bar ",
        "foo;bar=1\t",
        'foo;bar="1" ',
    ],
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


# -- differential against node's ws (skipped without node and tests/interop/node_modules/ws) -----
# Here for both header parsers, extension and subprotocol, which share the token rules.

WS_LIB = Path(__file__).parent / "interop" / "node_modules" / "ws" / "lib"

# Parses each header of a JSON list from stdin with ws' module named in argv and prints, per
# header, the result (a Set becomes a list) or the error message.
NODE_SCRIPT = r"""
const parser = require(process.argv[1]);
const headers = JSON.parse(require('fs').readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(headers.map((header) => {
  try {
    const result = parser.parse(header);
    return { result: result instanceof Set ? [...result] : result };
  } catch (err) {
    return { error: err.message };
  }
})));
"""

# Characters that steer both state machines, a non-token and a non-ASCII one among them.
ALPHABET = 'ab=;," \t\\@\u00e9'


# Pieces of header-like strings: words and separators for each parser.
SHAPES = {
    "extension": (
        ["a", "ab", "a=b", 'a="b"', 'a="\\b"', "a=", " a", "a ", "", " "],
        [";", "; ", ",", ", ", " ;", "\t,"],
    ),
    "subprotocol": (["a", "b", "ab", "a.b", "a b", "", " ", "a@"], [",", ", ", " ,", "\t, "]),
}


def fuzz_headers(module: str, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    headers = {"".join(rng.choices(ALPHABET, k=rng.randrange(1, 12))) for _ in range(count)}
    # Shapes close to real headers, so that valid ones are common too.
    words, separators = SHAPES[module]
    for _ in range(count):
        parts = [rng.choice(words[:4])]
        for _ in range(rng.randrange(4)):
            parts += [rng.choice(separators), rng.choice(words)]
        headers.add("".join(parts))
    return sorted(headers)


def ws_parse(module: str, headers: list[str]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not (WS_LIB / f"{module}.js").exists():
        pytest.skip("node or tests/interop/node_modules/ws is missing")
    done = subprocess.run(
        [node, "-e", NODE_SCRIPT, str(WS_LIB / f"{module}.js")],
        input=json.dumps(headers),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


@pytest.mark.parametrize(
    ("module", "parse"),
    [("extension", extension.parse), ("subprotocol", subprotocol.parse)],
    ids=["extension", "subprotocol"],
)
def test_parsers_match_ws(module: str, parse: Callable[[str], object]) -> None:
    headers = fuzz_headers(module, 3000, seed=7)
    expected = ws_parse(module, headers)
    mismatches = []
    for header, theirs in zip(headers, expected, strict=True):
        try:
            ours: dict[str, Any] = {"result": parse(header)}
        except ValueError as exc:
            ours = {"error": str(exc)}
        if ours != theirs:
            mismatches.append((header, ours, theirs))
    assert not mismatches, mismatches[:5]
    # The fuzz reaches both outcomes in numbers.
    assert sum("error" in r for r in expected) > 100
    assert sum("result" in r for r in expected) > 100

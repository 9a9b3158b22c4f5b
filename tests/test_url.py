"""URLs as Node's WHATWG ``URL`` parses them (``wsfast.url``), checked against node itself.

The table is what ws sends: ``url.host`` in the Host header (punycode, lowercase, normalised
IPv4/IPv6, default port left out) and ``pathname + search`` as the request target (dot segments
removed, spaces and non-ASCII percent-encoded, existing ``%xx`` left alone).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from wsfast.exceptions import InvalidURL
from wsfast.url import basic_auth, parse_url, resolve_url

# (address, Host header, request target, userinfo); None for an address node refuses.
TABLE: list[tuple[str, str | None, str, str]] = [
    ("ws://bücher.example/", "xn--bcher-kva.example", "/", ""),
    ("ws://BÜCHER.Example:8080/a b", "xn--bcher-kva.example:8080", "/a%20b", ""),
    ("ws://ß.de/", "xn--zca.de", "/", ""),
    ("ws://faß.de/é?q=é é", "xn--fa-hia.de", "/%C3%A9?q=%C3%A9%20%C3%A9", ""),
    ("ws://ΣΑΣ.gr/", "xn--mxa9ab.gr", "/", ""),
    ("ws://例え.テスト/パス", "xn--r8jz45g.xn--zckzah", "/%E3%83%91%E3%82%B9", ""),
    ("ws://ＡＢＣ.com/", "abc.com", "/", ""),
    ("ws://MiXeD.Example.COM/Path", "mixed.example.com", "/Path", ""),
    ("ws://xn--bcher-kva.example/", "xn--bcher-kva.example", "/", ""),
    ("ws://h/a/../b/./c?x='\"<>", "h", "/b/c?x=%27%22%3C%3E", ""),
    ("ws://h/%41%zz/%2e%2e/x", "h", "/x", ""),
    ("ws://h/{}|^`", "h", "/%7B%7D|^%60", ""),
    ("ws://h/p?", "h", "/p", ""),
    ("ws://h/#", "h", "/", ""),
    ("ws:\\\\h\\p", "h", "/p", ""),
    ("ws://h:/x", "h", "/x", ""),
    ("ws://h:80/x", "h", "/x", ""),
    ("wss://h:80/x", "h:80", "/x", ""),
    ("ws://127.1/", "127.0.0.1", "/", ""),
    ("ws://0x7f.1:8080/", "127.0.0.1:8080", "/", ""),
    ("wss://[0:0::1]:443/", "[::1]", "/", ""),
    ("ws://a_b.example/", "a_b.example", "/", ""),
    ("ws://h.example./x", "h.example.", "/x", ""),
    ("ws://us%40er:p@ss@h/", "h", "/", "us%40er:p%40ss"),
    ("ws://u ser:pw@h/", "h", "/", "u%20ser:pw"),
    ("ws://exa mple/", None, "", ""),
    ("ws://h:65536/", None, "", ""),
    ("ws://256.1.1.1/", None, "", ""),
    ("ws://1.2.3.4.5/", None, "", ""),
    ("ws://a.b.1/", None, "", ""),
    ("ws://[::1/", None, "", ""),
    ("ws://010.0.0.1/", "8.0.0.1", "/", ""),
    ("ws://0x.0X.0x.1/", "0.0.0.1", "/", ""),
    ("ws://127.0.0.1./", "127.0.0.1", "/", ""),
    ("ws://1.2.3.4.:81/", "1.2.3.4:81", "/", ""),
    ("ws://09/", None, "", ""),
    ("ws://[::g]/", None, "", ""),
    ("ws://[1::2::3]/", None, "", ""),
    ("ws://%ff/", None, "", ""),
    ("ws://%c3/", None, "", ""),
    ("ws://h/../x", "h", "/x", ""),
    ("ws://h/%2e%2E/x", "h", "/x", ""),
    ("ws://h/a/..", "h", "/", ""),
    ("ws://h/a/.%2e?q", "h", "/?q", ""),
    ("ws://h/a/.", "h", "/a/", ""),
    ("ws://h/a/%2e", "h", "/a/", ""),
    ("ws://user@h/", "h", "/", "user"),
    ("ws://user:@h/", "h", "/", "user"),
    ("http//nope", None, "", ""),
]

_NODE_SCRIPT = """
const out = [];
for (const a of process.argv.slice(1)) {
  try {
    const u = new URL(a);
    const user = u.username || u.password ? `${u.username}:${u.password}` : '';
    out.push([u.host, u.pathname + u.search, user.replace(/:$/, '')]);
  } catch (e) { out.push(null); }
}
console.log(JSON.stringify(out));
"""


def _ours(address: str) -> tuple[str, str, str] | None:
    try:
        url = parse_url(address)
    except InvalidURL:
        return None
    return url.host_header, url.target, url.userinfo


@pytest.mark.parametrize(
    ("address", "host", "target", "userinfo"), TABLE, ids=[t[0] for t in TABLE]
)
def test_parse_url(address: str, host: str | None, target: str, userinfo: str) -> None:
    expected = None if host is None else (host, target, userinfo)
    assert _ours(address) == expected


@pytest.mark.interop
def test_table_matches_node() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    addresses = [row[0] for row in TABLE]
    result = subprocess.run(
        [node, "-e", _NODE_SCRIPT, *addresses], capture_output=True, check=True, timeout=30
    )
    theirs = json.loads(result.stdout)
    for address, node_parts in zip(addresses, theirs, strict=True):
        assert _ours(address) == (None if node_parts is None else tuple(node_parts)), address


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("ftp://host/", 'The URL\'s protocol must be one of "ws:", "wss:", "http:", "https:", '
         'or "ws+unix:"'),
        ("ws://host/#fragment", "The URL contains a fragment identifier"),
        ("ws+unix://", "The URL's pathname is empty"),
        ("ws://", "Invalid URL: ws://"),
    ],
    ids=["scheme", "fragment", "unix-empty", "no-host"],
)  # fmt: skip
def test_ws_messages(address: str, message: str) -> None:
    with pytest.raises(InvalidURL) as info:
        parse_url(address)
    assert str(info.value) == message
    assert info.value.code == "WS_ERR_INVALID_URL"


def test_unix_socket_url() -> None:
    url = parse_url("ws+unix:///tmp/s.sock:/a b?c d")
    assert (url.unix_path, url.target, url.host_header) == (
        "/tmp/s.sock",
        "/a%20b?c%20d",
        "localhost",
    )
    assert parse_url("ws+unix:///tmp/s.sock").target == "/"


@pytest.mark.parametrize(
    "address", ["ws+unix:/tmp/s.sock:/a", "ws+unix:s.sock"], ids=["no-authority", "relative"]
)
def test_unix_socket_url_needs_the_double_slash(address: str) -> None:
    # A divergence from ws 8.23.1, which takes the WHATWG pathname of any ws+unix: URL (node:
    # new URL("ws+unix:/tmp/s.sock:/a").pathname is "/tmp/s.sock:/a") and connects to
    # /tmp/s.sock; wsfast accepts only the documented ws+unix:///path.sock:/request/path form.
    with pytest.raises(InvalidURL) as info:
        parse_url(address)
    assert str(info.value) == f"Invalid URL: {address}"
    assert info.value.code == "WS_ERR_INVALID_URL"


def test_href() -> None:
    assert (
        parse_url("HTTP://u:p@Bücher.example:80/a b?c").href
        == "ws://u:p@xn--bcher-kva.example/a%20b?c"
    )
    assert parse_url("https://h:8443").href == "wss://h:8443/"


def test_resolve_url() -> None:
    assert resolve_url("ws://h/a/b", "../c?x") == "ws://h/c?x"
    assert resolve_url("wss://h/a", "ws://other/") == "ws://other/"
    with pytest.raises(InvalidURL, match="Invalid URL: ftp://h/"):
        resolve_url("ws://h/", "ftp://h/")


def test_basic_auth_unescapes_as_ws() -> None:
    # ws: querystring.unescape(username) + ":" + querystring.unescape(password), base64.
    assert basic_auth("us%40er:p%40ss") == "Basic dXNAZXI6cEBzcw=="

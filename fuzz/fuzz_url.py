"""Fuzz URL parsing: ``wsfast.url.parse_url`` and ``resolve_url`` (a redirect's Location).

Input: a selector byte (bit 0: latin-1 or UTF-8 text; bit 1: resolve against a base; bits 2-4:
a scheme prefix, so the fuzzer need not find one), then the address.

Invariants: ``InvalidURL``/``ValueError`` are the only exceptions; what parses has a request
target and Host header that can go on the wire (visible ASCII, RFC 9112 3.2), a port in
0..65535, and (but for ``ws+unix``) an ``href`` that parses to the same result.
"""

from __future__ import annotations

import re

from wsfuzz import Input, instrumented, main

with instrumented():
    from wsfast.url import parse_url, resolve_url

PREFIXES = ["", "ws://", "wss://", "http://", "https://", "ws+unix://", "ws://user:pw@", "ws://["]
BASES = ["ws://example.com/a/b?c", "wss://user@example.com:8443/", "ws+unix:///tmp/s.sock:/x"]
VISIBLE = re.compile(r"[\x21-\x7e]+\Z")


def check(address: str) -> None:
    try:
        url = parse_url(address)
    except ValueError:  # InvalidURL is a ValueError
        return
    assert VISIBLE.match(url.target), url
    # ws+unix:///s.sock:x sends "GET x": ws splits its path at ":" the same way.
    assert url.target.startswith("/") or url.unix_path is not None, url
    assert VISIBLE.match(url.host_header), url
    assert 0 <= url.port <= 65535, url
    if url.unix_path is None:
        again = parse_url(url.href)
        assert again == url, (address, url, again)


def TestOneInput(data: bytes) -> None:
    inp = Input(data)
    selector = inp.byte()
    raw = inp.rest()
    text = raw.decode("utf-8", "replace") if selector & 1 else raw.decode("latin-1")
    if selector & 2:
        try:
            address = resolve_url(BASES[(selector >> 2) % len(BASES)], text)
        except ValueError:
            return
        parse_url(address)  # resolve_url checked it
        check(address)
    else:
        check(PREFIXES[(selector >> 2) % len(PREFIXES)] + text)


if __name__ == "__main__":
    main(TestOneInput)

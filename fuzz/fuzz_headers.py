"""Fuzz the header grammars: ``wsfast.extension.parse`` (then permessage-deflate's ``accept``
of what it parsed, as server and as client) and ``wsfast.subprotocol.parse``.

Input: a selector byte (bit 0: which parser; bit 1: the text is latin-1 or UTF-8), then the
header value.

Invariants: ``ValueError`` is the only exception; what parses formats back (``extension.format``
or ``", ".join``) to a value that parses to the same result; subprotocols are unique tokens.
"""

from __future__ import annotations

from wsfuzz import Input, instrumented, main

with instrumented():
    from wsfast import extension, subprotocol
    from wsfast.permessage_deflate import PerMessageDeflate


def check_extensions(header: str) -> None:
    try:
        parsed = extension.parse(header)
    except ValueError:
        return
    assert parsed or not header  # an empty header is no offer (ws)
    assert all(subprotocol.is_valid_token(name) for name in parsed), parsed
    assert extension.parse(extension.format(parsed)) == parsed, (header, parsed)
    offers = parsed.get("permessage-deflate")
    if offers:
        for is_server in (True, False):
            try:
                params = PerMessageDeflate({}, is_server=is_server).accept(offers)
            except ValueError:
                continue
            assert isinstance(params, dict)
            # What a server answers parses and is accepted by a client that offered defaults.
            if is_server:
                answer = extension.parse(extension.format({"permessage-deflate": params}))
                PerMessageDeflate({}, is_server=False).accept(answer["permessage-deflate"])


def check_protocols(header: str) -> None:
    try:
        protocols = subprotocol.parse(header)
    except ValueError:
        return
    assert protocols and len(set(protocols)) == len(protocols), protocols
    assert all(subprotocol.is_valid_token(p) for p in protocols), protocols
    assert subprotocol.parse(", ".join(protocols)) == protocols


def TestOneInput(data: bytes) -> None:
    inp = Input(data)
    selector = inp.byte()
    raw = inp.rest()
    header = raw.decode("utf-8", "replace") if selector & 2 else raw.decode("latin-1")
    (check_protocols if selector & 1 else check_extensions)(header)


if __name__ == "__main__":
    main(TestOneInput)

"""The ``Sec-WebSocket-Protocol`` header (the twin of ws' ``lib/subprotocol.js``).

RFC 6455 section 4.1 makes each subprotocol an RFC 7230 ``token``; the header is a comma
separated list of them. The parser keeps ws' strictness and ws' error messages, so a request
that ws answers with 400 gets 400 here as well.
"""

from __future__ import annotations

__all__ = ["TOKEN_CHARS", "is_valid_token", "parse"]

# RFC 7230 section 3.2.6: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
# "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA. The same set as ws' ``tokenChars`` table.
TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

_WHITESPACE = " \t"


def is_valid_token(s: str) -> bool:
    """True if ``s`` is a non-empty RFC 7230 token (a valid subprotocol or extension name)."""
    # A set difference rejects any character outside the table, non-ASCII included.
    return bool(s) and not set(s) - TOKEN_CHARS


def parse(header: str) -> list[str]:
    """Parse a ``Sec-WebSocket-Protocol`` value into its subprotocols, in order and unique.

    Raises ``ValueError`` with ws' messages: ``Unexpected character at index N``,
    ``Unexpected end of input`` (an empty header, a trailing comma or trailing whitespace) and
    ``The "x" subprotocol is duplicated``.
    """
    protocols: dict[str, None] = {}  # an ordered set
    start = -1
    end = -1

    def add(protocol: str) -> None:
        if protocol in protocols:
            raise ValueError(f'The "{protocol}" subprotocol is duplicated')
        protocols[protocol] = None

    for i, char in enumerate(header):
        if end == -1 and char in TOKEN_CHARS:
            if start == -1:
                start = i
        elif i != 0 and char in _WHITESPACE:
            # ws refuses leading whitespace (i == 0) but allows it around commas.
            if end == -1 and start != -1:
                end = i
        elif char == ",":
            if start == -1:
                raise ValueError(f"Unexpected character at index {i}")
            add(header[start : i if end == -1 else end])
            start = end = -1
        else:
            raise ValueError(f"Unexpected character at index {i}")

    # ws also refuses trailing whitespace here (``end !== -1``); kept for the same 400s.
    if start == -1 or end != -1:
        raise ValueError("Unexpected end of input")
    add(header[start:])
    return list(protocols)

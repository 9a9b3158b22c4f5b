"""WebSocket URLs, parsed as Node's WHATWG ``URL`` parses them (sans-I/O).

ws builds its request from ``new URL(address)``: the host is lowercased, international names go
out as punycode, IPv4 shorthands (``127.1``) and IPv6 addresses are normalised, and spaces or
non-ASCII characters in the path and query are percent-encoded with WHATWG's percent-encode sets
(https://url.spec.whatwg.org/#percent-encoded-bytes). Python's ``urlsplit`` does none of this,
so the parts the client sends are computed here. ``tests/test_url.py`` compares the results with
node's ``URL`` on a table of addresses.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote, urljoin

from .exceptions import InvalidURL

__all__ = ["ParsedURL", "parse_url", "resolve_url", "basic_auth", "domain_to_ascii"]

_SPECIAL_PORTS = {"ws": 80, "wss": 443, "http": 80, "https": 443}
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
# WHATWG's "forbidden domain code points" (after IDNA processing).
_FORBIDDEN_DOMAIN_RE = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]")
# The percent-encode sets, as the characters added to the C0 control set (WHATWG URL 1.3).
_PATH_SET = frozenset(' "#<>?`{}')
_QUERY_SET = frozenset(' "#<>')
_SPECIAL_QUERY_SET = frozenset(" \"#<>'")
_USERINFO_SET = frozenset(' "#<>?`{}/:;=@[\\]^|')
# UTS 46 maps these full stops to "." before a name is split into labels.
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


@dataclass(frozen=True)
class ParsedURL:
    """The parts of a WebSocket URL the client needs, already in their wire form."""

    secure: bool
    host: str
    port: int
    target: str
    userinfo: str
    unix_path: str | None = None

    @property
    def host_header(self) -> str:
        """The Host header (ws' ``url.host``): the port is left out when it is the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default or self.unix_path else f"{host}:{self.port}"

    @property
    def href(self) -> str:
        """The serialised URL, as ws' ``url`` after ``http:`` became ``ws:`` (not for
        ``ws+unix``, whose socket path is not kept in its WHATWG form)."""
        userinfo = f"{self.userinfo}@" if self.userinfo else ""
        scheme = "wss" if self.secure else "ws"
        return f"{scheme}://{userinfo}{self.host_header}{self.target}"


def _percent_encode(text: str, extra: frozenset[str]) -> str:
    out = []
    for char in text:
        if char in extra or ord(char) < 0x20 or ord(char) > 0x7E:
            out.append("".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass")))
        else:
            out.append(char)
    return "".join(out)


def _parse_ipv4_number(part: str) -> int | None:
    base = 10
    if part[:2].lower() == "0x":
        part, base = part[2:], 16
    elif len(part) > 1 and part[0] == "0":
        part, base = part[1:], 8
    if not part:
        return 0
    try:
        return int(part, base) if part.isascii() and part.isalnum() else None
    except ValueError:
        return None


def _ends_in_number(host: str) -> bool:
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    last = labels[-1]
    if last and last.isascii() and last.isdigit():
        return True
    return last[:2].lower() == "0x" and all(c in "0123456789abcdefABCDEF" for c in last[2:])


def _parse_ipv4(host: str, address: str) -> str:
    # WHATWG's IPv4 parser: 1 to 4 parts, decimal, octal (0...) or hex (0x...), the last part
    # filling the remaining bytes; anything else that ends in a number is not a host at all.
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    numbers = [_parse_ipv4_number(part) for part in parts]
    if len(parts) > 4 or any(n is None for n in numbers) or "" in parts:
        raise InvalidURL(f"Invalid URL: {address}")
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        raise InvalidURL(f"Invalid URL: {address}")
    ipv4 = values[-1]
    for index, number in enumerate(values[:-1]):
        ipv4 += number * 256 ** (3 - index)
    return str(ipaddress.IPv4Address(ipv4))


def domain_to_ascii(domain: str) -> str:
    """A host name as WHATWG's "domain to ASCII" gives it: lowercase, labels in punycode.

    UTS 46 non-transitional processing, as Node (ada) does: ``ß`` and final sigma stay
    themselves (``ß.de`` is ``xn--zca.de``, not ``ss.de`` as the IDNA 2003 codec would say), so
    the mapping is NFKC with a per-character lowercase rather than Python's ``idna`` codec.
    """
    labels = []
    for label in domain.translate(_DOTS).split("."):
        if label.isascii():
            labels.append(label.lower())
            continue
        mapped = unicodedata.normalize("NFKC", "".join(c.lower() for c in label))
        mapped = unicodedata.normalize("NFKC", "".join(c.lower() for c in mapped))
        labels.append(mapped if mapped.isascii() else "xn--" + mapped.encode("punycode").decode())
    return ".".join(labels)


def _parse_host(host: str, address: str) -> str:
    if host.startswith("["):
        if not host.endswith("]"):
            raise InvalidURL(f"Invalid URL: {address}")
        try:
            return ipaddress.IPv6Address(host[1:-1]).compressed
        except ValueError:
            raise InvalidURL(f"Invalid URL: {address}") from None
    name = domain_to_ascii(unquote(host, errors="strict"))
    if not name or _FORBIDDEN_DOMAIN_RE.search(name):
        raise InvalidURL(f"Invalid URL: {address}")
    return _parse_ipv4(name, address) if _ends_in_number(name) else name


def _normalise_path(path: str) -> str:
    # ws: and wss: are "special" schemes in WHATWG's URL: a backslash is a path separator.
    path = path.replace("\\", "/")
    output: list[str] = []
    segments = path.split("/")[1:] if path.startswith("/") else path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        lowered = segment.lower()
        if lowered in ("..", ".%2e", "%2e.", "%2e%2e"):
            if output:
                output.pop()
            if last:
                output.append("")
        elif lowered in (".", "%2e"):
            if last:
                output.append("")
        else:
            output.append(_percent_encode(segment, _PATH_SET))
    return "/" + "/".join(output)


def parse_url(address: str) -> ParsedURL:
    """Check and split a ``ws://``, ``wss://`` (or ``http(s)://``, ``ws+unix://``) URL.

    Raises :class:`InvalidURL` with ws' messages: an unparseable URL, another scheme, a fragment
    (an empty ``#`` is no fragment for WHATWG, nor for ws), an empty ``ws+unix`` path.
    """
    # WHATWG: strip leading and trailing C0 controls and spaces, drop every tab and newline.
    text = address.strip("".join(map(chr, range(0x21)))).translate(
        {0x09: None, 0x0A: None, 0x0D: None}
    )
    match = _SCHEME_RE.match(text)
    if match is None:
        raise InvalidURL(f"Invalid URL: {address}")
    scheme = match.group(1).lower()
    rest = text[match.end() :]
    rest, _, fragment = rest.partition("#")
    rest, has_query, query = rest.partition("?")
    if scheme not in _SPECIAL_PORTS and scheme != "ws+unix":
        raise InvalidURL(
            'The URL\'s protocol must be one of "ws:", "wss:", "http:", "https:", or "ws+unix:"'
        )
    if fragment:
        raise InvalidURL("The URL contains a fragment identifier")
    query_set = _QUERY_SET if scheme == "ws+unix" else _SPECIAL_QUERY_SET
    search = "?" + _percent_encode(query, query_set) if has_query and query else ""
    if scheme == "ws+unix":
        # ws' form: ws+unix:///path/to/socket.sock:/request/path
        if not rest.startswith("//"):
            raise InvalidURL(f"Invalid URL: {address}")
        authority, slash, path = rest[2:].partition("/")
        path = slash + path
        if not path:
            raise InvalidURL("The URL's pathname is empty")
        sock, sep, request_path = path.partition(":")
        target = _percent_encode(request_path, _PATH_SET) if sep else ""
        return ParsedURL(False, "localhost", 80, (target or "/") + search, "", unix_path=sock)
    # Special schemes ignore any run of slashes and backslashes before the authority.
    rest = rest.lstrip("/\\")
    end = min((i for i in (rest.find("/"), rest.find("\\")) if i >= 0), default=len(rest))
    authority, path = rest[:end], rest[end:]
    userinfo, at, hostport = authority.rpartition("@")
    if not at:
        userinfo = ""
    host, port_text = hostport, ""
    colon = hostport.rfind(":")
    if colon >= 0 and "]" not in hostport[colon:]:
        host, port_text = hostport[:colon], hostport[colon + 1 :]
    if not host or (port_text and not (port_text.isascii() and port_text.isdigit())):
        raise InvalidURL(f"Invalid URL: {address}")
    secure = scheme in ("wss", "https")
    port = int(port_text) if port_text else _SPECIAL_PORTS[scheme]
    if port > 65535:
        raise InvalidURL(f"Invalid URL: {address}")
    try:
        hostname = _parse_host(host, address)
    except UnicodeError:
        raise InvalidURL(f"Invalid URL: {address}") from None
    if userinfo:
        name, colon_sep, password = userinfo.partition(":")
        userinfo = _percent_encode(name, _USERINFO_SET)
        if password:
            userinfo += ":" + _percent_encode(password, _USERINFO_SET)
    target = _normalise_path(path or "/") + search
    return ParsedURL(secure, hostname, port, target, userinfo)


def resolve_url(base: str, location: str) -> str:
    """``location`` (a redirect's Location, maybe relative) resolved against ``base``.

    Raises :class:`InvalidURL` (``Invalid URL: <location>``, ws' message) when the result is
    not a WebSocket URL.
    """
    try:
        target = urljoin(base, location.strip())
        parse_url(target)
    except ValueError:
        raise InvalidURL(f"Invalid URL: {location}") from None
    return target


def basic_auth(userinfo: str) -> str:
    """The Basic credentials value for percent-encoded ``user:password`` (ws unescapes both)."""
    token = base64.b64encode(unquote(userinfo).encode("utf-8")).decode("ascii")
    return f"Basic {token}"

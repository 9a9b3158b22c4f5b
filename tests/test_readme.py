"""The README's examples section shows exactly the files of ``examples/``, every one of them.

Each ```` ```python ```` block between ``<!-- examples:start -->`` and ``<!-- examples:end -->``
follows a label line naming its file (``[`examples/name.py`](examples/name.py):``) and must equal
that file; ``tests/test_examples.py`` runs the files. After editing an example, refresh the
README blocks with ``python tests/test_readme.py --update``.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
EXAMPLES = ROOT / "examples"
START, END = "<!-- examples:start -->", "<!-- examples:end -->"

# A label line, a blank line, then the block.
_BLOCK = re.compile(
    r"\[`examples/(?P<name>[\w.]+)`\]\(examples/(?P=name)\):\n\n```python\n(?P<code>.*?)```",
    re.S,
)


def section(text: str) -> tuple[int, int]:
    """Start and end offsets of the examples section of the README's text."""
    start, end = text.index(START), text.index(END)
    assert start < end
    return start + len(START), end


def blocks(text: str) -> list[tuple[str, str]]:
    """(file name, code) of every labelled python block of the section."""
    start, end = section(text)
    return [(m["name"], m["code"]) for m in _BLOCK.finditer(text, start, end)]


def update() -> None:
    """Rewrite every labelled block of the section from its file."""
    text = README.read_text()
    start, end = section(text)

    def fresh(match: re.Match[str]) -> str:
        name = match["name"]
        code = (EXAMPLES / name).read_text()
        return f"[`examples/{name}`](examples/{name}):\n\n```python\n{code}```"

    README.write_text(text[:start] + _BLOCK.sub(fresh, text[start:end]) + text[end:])


def test_every_python_block_is_a_labelled_example() -> None:
    text = README.read_text()
    start, end = section(text)
    python_blocks = re.findall(r"```python\n", text[start:end])
    assert python_blocks, "the README has no examples section content"
    assert len(python_blocks) == len(blocks(text)), "a python block without its label line"


def test_blocks_equal_their_files() -> None:
    for name, code in blocks(README.read_text()):
        path = EXAMPLES / name
        assert path.is_file(), f"README shows examples/{name}, which does not exist"
        assert code == path.read_text(), (
            f"README's block differs from examples/{name}: run python tests/test_readme.py --update"
        )


def test_every_example_is_in_the_readme_once() -> None:
    names = [name for name, _ in blocks(README.read_text())]
    assert len(names) == len(set(names)), "an example is shown twice"
    assert sorted(names) == sorted(p.name for p in EXAMPLES.glob("*.py"))


def test_blocks_are_valid_python() -> None:
    for name, code in blocks(README.read_text()):
        ast.parse(code, filename=name)


def test_every_ws_readme_example_has_a_translation() -> None:
    # The usage examples of ws 8's README and the examples translating them.
    translations = {
        "WebSocket compression": ["compression_server.py", "compression_client_off.py"],
        "Sending and receiving text data": ["text_client.py"],
        "Sending binary data": ["binary_client.py"],
        "Simple server": ["simple_server.py"],
        "External HTTP/S server": ["external_https_server.py"],
        "ExpressJS example": ["shared_port.py"],
        "Multiple servers sharing a single HTTP/S server": ["multiple_servers.py"],
        "Client authentication": ["client_authentication.py"],
        "Server broadcast": ["broadcast_all.py", "broadcast_others.py"],
        "Round-trip time": ["round_trip_time.py"],
        "Use the Node.js streams API": ["stream_api.py"],
        "Error handling best practices": ["error_handling.py"],
        "How to get the IP address of the client?": ["client_ip.py"],
        "How to detect and close broken connections?": [
            "heartbeat_server.py",
            "heartbeat_client.py",
        ],
    }
    shown = {name for name, _ in blocks(README.read_text())}
    for heading, files in translations.items():
        for name in files:
            assert name in shown, f"ws' {heading!r} is not translated in the README"


# -- docs/: the API reference and the ws mapping stay complete --------------------------------

DOCS = ROOT / "docs"


def test_api_reference_covers_every_public_name() -> None:
    import wsfast

    headings = [
        line for line in (DOCS / "api.md").read_text().splitlines() if line.startswith("### ")
    ]
    documented = {name for line in headings for name in re.findall(r"`([^`]+)`", line)}
    missing = sorted(set(wsfast.__all__) - documented)
    assert not missing, f"docs/api.md has no section for {missing}"


# ws 8's options, events, methods and properties (lib/websocket.js, lib/websocket-server.js):
# each must be named in docs/coming-from-ws.md, with its wsfast name or "not available".
WS_NAMES = [
    # WebSocket options
    "allowSynchronousEvents",
    "autoPong",
    "closeTimeout",
    "finishRequest",
    "followRedirects",
    "generateMask",
    "handshakeTimeout",
    "maxBufferedChunks",
    "maxFragments",
    "maxPayload",
    "maxPendingAutoPongs",
    "maxRedirects",
    "origin",
    "perMessageDeflate",
    "protocolVersion",
    "skipUTF8Validation",
    "headers",
    "agent",
    "createConnection",
    "socketPath",
    # WebSocketServer options
    "backlog",
    "clientTracking",
    "handleProtocols",
    "host",
    "noServer",
    "path",
    "port",
    "server",
    "verifyClient",
    "WebSocket",
    # events
    "'open'",
    "'message'",
    "'close'",
    "'error'",
    "'ping'",
    "'pong'",
    "'upgrade'",
    "'unexpected-response'",
    "'redirect'",
    "'connection'",
    "'headers'",
    "'listening'",
    "'wsClientError'",
    # properties and methods
    "binaryType",
    "bufferedAmount",
    "extensions",
    "isPaused",
    "onopen",
    "onmessage",
    "onclose",
    "onerror",
    "protocol",
    "readyState",
    "url",
    "addEventListener",
    "removeEventListener",
    "close",
    "ping",
    "pong",
    "pause",
    "resume",
    "send",
    "terminate",
    "address",
    "clients",
    "handleUpgrade",
    "shouldHandle",
    "createWebSocketStream",
    "Receiver",
    "Sender",
]


def test_coming_from_ws_maps_every_ws_name() -> None:
    text = (DOCS / "coming-from-ws.md").read_text()
    missing = [name for name in WS_NAMES if not re.search(rf"`{re.escape(name)}[`(\[ ]", text)]
    assert not missing, f"docs/coming-from-ws.md does not map {missing}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        update()
    else:
        sys.exit("usage: python tests/test_readme.py --update")

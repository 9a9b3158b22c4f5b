"""The client's opening handshake next to node's ws 8.23 client, against one raw server.

Both clients talk to the same scripted HTTP server (every host name resolves to 127.0.0.1:
node through ``lookup``, wsfast through ``create_connection``), and what reaches the server
and what each client reports are compared: the request head for international and odd URLs,
a non-101 answer with and without an ``'unexpected-response'`` listener, and the headers that
survive a redirect.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from conftest import interop_node
from test_transports import read_request, switching_protocols, within

import wsfast
from wsfast import handshake

node = interop_node()

pytestmark = pytest.mark.interop

TIMEOUT = 20.0 * node.timeout_factor()

# A ws client that resolves every name to 127.0.0.1 and prints its events as JSON lines.
_CLIENT_JS = r"""
const WebSocket = require('ws');
const [url, config] = [process.argv[1], JSON.parse(process.argv[2])];
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const lookup = (h, o, cb) =>
  o && o.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4);
const ws = new WebSocket(url, { ...config.options, lookup });
ws.on('redirect', (u) => out({ event: 'redirect', url: u }));
if (config.listen) {
  ws.on('unexpected-response', (req, res) => {
    out({ event: 'unexpected-response', status: res.statusCode });
    const chunks = [];
    res.on('data', (c) => chunks.push(c));
    res.on('end', () => {
      out({ event: 'body', body: Buffer.concat(chunks).toString() });
      process.exit(0);
    });
  });
}
ws.on('open', () => { out({ event: 'open' }); ws.terminate(); });
ws.on('error', (e) => out({ event: 'error', message: e.message }));
ws.on('close', (code) => { out({ event: 'close', code }); process.exit(0); });
"""

Route = Callable[[handshake.Request, int], bytes]


@asynccontextmanager
async def scripted(routes: dict[str, Route]) -> AsyncIterator[tuple[int, list[handshake.Request]]]:
    """A raw server answering each request path with ``routes[path](request, port)`` (the
    upgrade when it returns b""); yields ``(port, requests seen)``."""
    seen: list[handshake.Request] = []
    box: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await read_request(reader)
            seen.append(request)
            answer = routes[request.path](request, box[0])
            writer.write(answer or switching_protocols(request))
            await writer.drain()
            await reader.read()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    box.append(server.sockets[0].getsockname()[1])
    try:
        yield box[0], seen
    finally:
        server.close()


async def run_node(url: str, options: dict[str, Any], listen: bool = False) -> list[dict[str, Any]]:
    binary = node.ensure_node_modules()
    config = json.dumps({"options": options, "listen": listen})
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-e",
        _CLIENT_JS,
        url,
        config,
        cwd=node.INTEROP_DIR,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except asyncio.TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise AssertionError(f"node client did not finish against {url}") from None
    assert proc.returncode == 0, err.decode(errors="replace")
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


async def run_wsfast(url: str, port: int, listen: bool = False, **options: Any) -> list[Any]:
    """The same client in wsfast; events as node's script prints them."""
    loop = asyncio.get_running_loop()

    async def opener(factory: Any, parsed: Any, ssl_context: Any) -> Any:
        return await loop.create_connection(factory, "127.0.0.1", port)

    ws = wsfast.WebSocket(url, create_connection=opener, **options)
    events: list[dict[str, Any]] = []
    closed: asyncio.Future[None] = loop.create_future()
    ws.on("redirect", lambda u, request: events.append({"event": "redirect", "url": u}))

    async def body(response: Any) -> None:
        events.append({"event": "body", "body": (await response.read()).decode()})

    if listen:

        def unexpected(request: Any, response: Any) -> None:
            events.append({"event": "unexpected-response", "status": response.status})
            loop.create_task(body(response))

        ws.on("unexpected-response", unexpected)
    ws.on("open", lambda: (events.append({"event": "open"}), ws.terminate()))
    ws.on("error", lambda e: events.append({"event": "error", "message": str(e)}))
    ws.on(
        "close",
        lambda code, reason: (
            events.append({"event": "close", "code": code}),
            closed.set_result(None),
        ),
    )
    await within(closed, TIMEOUT)
    await asyncio.sleep(0.05)  # the body task, when listening
    return events


URLS = [
    "ws://Bücher.example:{port}/a b/../c?q=é é",
    "ws://ß.de:{port}/%41%zz/./x?'\"<>",
    "ws://例え.テスト:{port}/パス",
    "ws://0x7f.1:{port}/{{}}|^`",
    "ws://user:pa%20ss@h.example:{port}/",
]


@pytest.mark.parametrize("template", URLS)
async def test_request_head_matches_node(template: str) -> None:
    async with scripted(_AnyPath({})) as (port, seen):
        url = template.format(port=port)
        theirs = await run_node(url, {"perMessageDeflate": False})
        ours = await run_wsfast(url, port, per_message_deflate=False)
    assert theirs == ours == [{"event": "open"}, {"event": "close", "code": 1006}]
    node_request, wsfast_request = seen
    assert wsfast_request.path == node_request.path
    for name in ("host", "authorization"):
        assert wsfast_request.headers.get(name) == node_request.headers.get(name)


class _AnyPath(dict[str, Route]):
    def __missing__(self, key: str) -> Route:
        return lambda request, port: b""


NON_101 = {
    "chunked-kept-alive": (
        b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nnope!\r\n0\r\n\r\n"
    ),
    "content-length": b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 5\r\n\r\nnope!",
}


@pytest.mark.parametrize("answer", list(NON_101.values()), ids=list(NON_101))
@pytest.mark.parametrize("listen", [False, True], ids=["no-listener", "listener"])
async def test_non_101_answer_like_node(answer: bytes, listen: bool) -> None:
    async with scripted(_AnyPath({"/": lambda r, p: answer})) as (port, _):
        url = f"ws://127.0.0.1:{port}/"
        theirs = await run_node(url, {"perMessageDeflate": False}, listen=listen)
        ours = await run_wsfast(url, port, listen=listen, per_message_deflate=False)
    if listen:
        # ws leaves the request to the listener; wsfast then closes without an error.
        assert theirs[:2] == ours[:1] + [e for e in ours if e["event"] == "body"]
        assert [e["event"] for e in ours] == ["unexpected-response", "close", "body"]
        assert ours[-1]["body"] == "nope!"
    else:
        assert [e for e in theirs if e["event"] == "error"] == [
            e for e in ours if e["event"] == "error"
        ]
        assert [e["event"] for e in ours] == ["error", "close"]


# (Location, request headers); the second request's Authorization, Cookie and Host compared.
REDIRECTS = [
    ("/next", {}),
    ("ws://other.example:{port}/next", {}),
    ("ws://h.example:{port}/next", {}),
    ("ws://H.EXAMPLE:{port}/next", {"Host": "custom"}),
    ("ws://other.example:{port}/next", {"Host": "custom"}),
]


@pytest.mark.parametrize(("location", "extra"), REDIRECTS, ids=lambda v: str(v))
async def test_redirect_headers_like_node(location: str, extra: dict[str, str]) -> None:
    headers = {"Authorization": "Bearer s", "Cookie": "c=1", **extra}

    def first(request: handshake.Request, port: int) -> bytes:
        target = location.format(port=port)
        return handshake.build_response(302, [f"Location: {target}", "Content-Length: 0"])

    routes = _AnyPath({"/start": first})
    async with scripted(routes) as (port, seen):
        url = f"ws://u:p@h.example:{port}/start"
        theirs = await run_node(
            url, {"perMessageDeflate": False, "followRedirects": True, "headers": headers}
        )
        ours = await run_wsfast(
            url, port, per_message_deflate=False, follow_redirects=True, headers=headers
        )
    assert [e["event"] for e in ours] == ["redirect", "open", "close"]
    assert theirs == ours
    assert len(seen) == 4

    def kept(request: handshake.Request) -> tuple[str | None, ...]:
        return tuple(request.headers.get(name) for name in ("authorization", "cookie", "host"))

    assert kept(seen[3]) == kept(seen[1])

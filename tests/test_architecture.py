"""DESIGN section 2 checked on the source: the sans-I/O core imports no I/O, the package has no
import cycle (imports inside functions count), and no module reaches into the private attributes
of another module's objects."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "wsfast"

SANS_IO = (
    "receiver",
    "sender",
    "handshake",
    "protocol",
    "permessage_deflate",
    "extension",
    "subprotocol",
    "validation",
    "buffer_util",
    "constants",
    "exceptions",
    "options",
    "url",
    "log",
)
# Adapters (DESIGN section 2, layer 2) that drive the core's protocol objects directly, so they
# import from the sans-I/O core alone, never from another adapter: module -> the third-party
# package it plugs into.
CORE_ONLY_ADAPTERS = {"uvicorn": "uvicorn"}
IO_MODULES = {"asyncio", "socket", "ssl", "threading", "selectors", "time", "trio", "anyio"}

# Private names read on something other than self/cls, each on an object of the same module or a
# project-internal diagnostic: (module, expression) -> reason.
ALLOWED_PRIVATE = {
    ("workers", "os._exit"): "a forked worker ends without the parent's atexit handlers",
    ("websocket", "ws._keep_alive"): "accept(), in websocket.py, sets up its own WebSocket",
    ("websocket", "ws._attach"): "accept(), in websocket.py",
    ("websocket", "ws._start"): "start(), in websocket.py",
    ("websocket", "ws._tick"): "_Keepalive, in websocket.py, runs its connections' keepalive",
    ("websocket_server", "self.server._upgrade"): "_ServerConnection, in websocket_server.py",
    ("websocket_server", "self.server._emit_connection"): "_ServerConnection, same module",
    ("websocket_server", "self.server._write_refusal"): "_ServerConnection, same module",
    ("websocket_server", "super()._call"): "the EventEmitter hook it overrides",
    ("log", "super()._send_close"): "TracingProtocol traces the Protocol hook it overrides",
    ("_bench_speedups", "bu._kernel"): "the natives' documented diagnostic (stubs declare it)",
    ("_bench_speedups", "u8._kernel"): "the natives' documented diagnostic (stubs declare it)",
    ("_bench_echo", "site._server"): "aiohttp's TCPSite has no public port accessor",
}


# Subpackages of adapters: their modules are named "sync.connection" and so on.
SUBPACKAGES = ("sync",)
# An adapter on blocking sockets and threads (DESIGN section 2): it may import socket,
# threading, ssl and selectors, and no event loop.
SYNC_ALLOWED_IO = {"socket", "ssl", "threading", "selectors", "time"}


def _modules() -> dict[str, ast.Module]:
    modules = {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.glob("*.py"))}
    for sub in SUBPACKAGES:
        for p in sorted((PACKAGE / sub).glob("*.py")):
            modules[f"{sub}.{p.stem}"] = ast.parse(p.read_text(), str(p))
    return modules


def _package_of(name: str) -> str:
    return name.rpartition(".")[0]


def _imports(name: str, tree: ast.Module) -> tuple[set[str], set[str]]:
    """(top-level external modules, wsfast modules) imported anywhere in the module."""
    external: set[str] = set()
    internal: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top == "wsfast":
                    internal.add(alias.name.split(".")[1] if "." in alias.name else "__init__")
                else:
                    external.add(top)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                module = node.module or ""
                if module.split(".")[0] == "wsfast":
                    internal.add(module.split(".")[1] if "." in module else "__init__")
                else:
                    external.add(module.split(".")[0])
            else:
                # Relative: level 1 is the module's own package, each further level one up.
                base = _package_of(name).split(".") if _package_of(name) else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join(base)
                if node.module:
                    target = f"{prefix}.{node.module}" if prefix else node.module
                    parts = target.split(".")
                    internal.add(".".join(parts[:2]) if parts[0] in SUBPACKAGES else parts[0])
                else:  # from . import a, b
                    internal.update(
                        f"{prefix}.{alias.name}" if prefix else alias.name for alias in node.names
                    )
    internal.discard(name)
    return external, internal


def _runtime_tree(tree: ast.Module) -> ast.Module:
    """The module without its ``if TYPE_CHECKING:`` blocks (never executed)."""
    body = [
        node
        for node in tree.body
        if not (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        )
    ]
    return ast.Module(body=body, type_ignores=[])


@pytest.mark.parametrize("name", SANS_IO)
def test_sans_io_modules_import_no_io(name: str) -> None:
    tree = _runtime_tree(_modules()[name])
    external, internal = _imports(name, tree)
    assert not external & IO_MODULES, f"{name} imports {sorted(external & IO_MODULES)}"
    # Nor through another wsfast module that does I/O.
    assert internal <= set(SANS_IO), f"{name} imports {sorted(internal - set(SANS_IO))}"


@pytest.mark.parametrize(
    "name", ["sync.transport", "sync.connection", "sync.client", "sync.server"]
)
def test_sync_adapter_runs_on_threads_not_an_event_loop(name: str) -> None:
    external, internal = _imports(name, _runtime_tree(_modules()[name]))
    assert not (external & IO_MODULES) - SYNC_ALLOWED_IO, f"{name} imports {sorted(external)}"
    # It drives the sans-I/O core; of the asyncio adapters it uses only public, loop-free
    # names (VerifyInfo, the proxy's CONNECT helpers), never their connections.
    assert not internal & {"websocket", "client"}, f"{name} imports {sorted(internal)}"


def test_sans_io_modules_do_not_import_the_sync_adapter() -> None:
    modules = _modules()
    for name in SANS_IO:
        _, internal = _imports(name, _runtime_tree(modules[name]))
        assert not any(dep.startswith("sync") for dep in internal), name


@pytest.mark.parametrize("name", sorted(CORE_ONLY_ADAPTERS))
def test_core_only_adapters_build_on_the_core_alone(name: str) -> None:
    tree = _runtime_tree(_modules()[name])
    external, internal = _imports(name, tree)
    assert internal <= set(SANS_IO), f"{name} imports {sorted(internal - set(SANS_IO))}"
    # It is an I/O adapter: it does I/O, through the package it plugs into.
    assert "asyncio" in external and CORE_ONLY_ADAPTERS[name] in external


def test_no_import_cycle() -> None:
    modules = _modules()
    graph = {name: _imports(name, _runtime_tree(tree))[1] for name, tree in modules.items()}
    graph = {name: {d for d in deps if d in modules} for name, deps in graph.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    # The package's __init__ imports everything and nothing imports it back.
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_module_reads_another_modules_private_attributes() -> None:
    found: dict[tuple[str, str], int] = {}
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                base = node.value
                if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                    continue
                found[(name, ast.unparse(node))] = node.lineno
    unexpected = {key: line for key, line in found.items() if key not in ALLOWED_PRIVATE}
    assert not unexpected, "private attributes of other objects: " + ", ".join(
        f"{mod}.py:{line} {expr}" for (mod, expr), line in sorted(unexpected.items())
    )
    stale = set(ALLOWED_PRIVATE) - set(found)
    assert not stale, f"allowlist entries no longer needed: {sorted(stale)}"

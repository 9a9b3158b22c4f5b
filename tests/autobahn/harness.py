"""Drive the Autobahn testsuite (``wstest``) against a testee and read its verdicts.

Two roles, as in the Autobahn documentation:

* ``server``: a testee echo server (``testee_server.py``) is started on a free 127.0.0.1 port and
  ``wstest -m fuzzingclient`` connects to it.
* ``client``: ``wstest -m fuzzingserver --webport=0`` listens on a free 127.0.0.1 port and the
  testee client (``testee_client.py``) runs every selected case against it.

Either way the JSON report (``<outdir>/index.json``) is parsed into one :class:`CaseResult`
per case.
A case passes when ``behavior`` is OK, NON-STRICT or INFORMATIONAL and ``behaviorClose`` is OK or
INFORMATIONAL (DESIGN section 6).

``wstest`` is looked up in ``$WSFAST_WSTEST``, then in the virtualenv that
``.ci/install-autobahn.sh`` makes (``$WSFAST_AUTOBAHN_VENV`` or ``.ci/cache/autobahn``), then on
``PATH``. The testee is ``wsfast`` unless ``$WSFAST_AUTOBAHN_TESTEE=websockets`` picks the
stand-in (``testee_websockets_standin.py``), which exists to prove this harness without wsfast.
wsfast's testees take the front end under test, ``api``: ``events`` (ws' event API) or
``asyncio`` (``serve``/``connect`` with ``async for`` and ``await ws.send``), or ``uvicorn``
(an ASGI echo app under uvicorn with ``wsfast.uvicorn``; server role only: ``SERVER_ONLY_APIS``).

Run by hand: ``python tests/autobahn/harness.py server 1-10`` (prints the verdict table).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "AGENT",
    "APIS",
    "PASSING_BEHAVIOR",
    "PASSING_CLOSE",
    "SECTIONS",
    "VERDICTS",
    "AutobahnError",
    "CaseResult",
    "SuiteResult",
    "find_wstest",
    "path_label",
    "run_suite",
    "timeout_factor",
    "write_summary",
]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
AGENT = "wsfast"

PASSING_BEHAVIOR = frozenset({"OK", "NON-STRICT", "INFORMATIONAL"})
PASSING_CLOSE = frozenset({"OK", "INFORMATIONAL"})
# Columns of the printed table; a case that does not pass and is not UNIMPLEMENTED is FAILED
# (that includes a behavior of OK with a failing behaviorClose).
VERDICTS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")

# Section selections. Autobahn has no section 11; 12 and 13 are permessage-deflate.
SECTIONS: dict[str, dict[str, list[str]]] = {
    "1-10": {"cases": ["*"], "exclude-cases": ["12.*", "13.*"]},
    "12-13": {"cases": ["12.*", "13.*"], "exclude-cases": []},
    "all": {"cases": ["*"], "exclude-cases": []},
}

# Per-run limits in seconds, before timeout_factor(). Measured: 1-10 about 30 s per role; 12-13
# with both roles side by side 10 min on a quiet machine, and 19.5 min on 2026-12-03 when this
# machine ran everything 2-3x slower (raw TCP echo 31k round trips/s instead of 92k): the limit
# leaves room for such a day, the wstest fuzzer being the bottleneck.
DEFAULT_TIMEOUTS = {"1-10": 300.0, "12-13": 2700.0, "all": 3000.0}

TESTEES = {
    "wsfast": {"server": HERE / "testee_server.py", "client": HERE / "testee_client.py"},
    "websockets": {
        "server": HERE / "testee_websockets_standin.py",
        "client": HERE / "testee_websockets_standin.py",
    },
}


# Front ends of wsfast's testees (``--api``); the stand-in has one.
APIS = ("events", "asyncio", "sync", "uvicorn")
# Front ends that only serve: uvicorn's engine has no client to drive.
SERVER_ONLY_APIS = ("uvicorn",)


class AutobahnError(RuntimeError):
    """wstest or the testee could not run, or produced no report.

    ``result`` holds the verdicts of the cases that did run when they could be had (a testee
    client past its time limit), with ``partial`` set; otherwise it is None.
    """

    result: SuiteResult | None = None


@dataclass(frozen=True)
class CaseResult:
    case: str
    behavior: str
    behavior_close: str
    duration_ms: int | None = None
    remote_close_code: int | None = None

    @property
    def passed(self) -> bool:
        return self.behavior in PASSING_BEHAVIOR and self.behavior_close in PASSING_CLOSE

    @property
    def verdict(self) -> str:
        if self.passed:
            return self.behavior
        if self.behavior == "UNIMPLEMENTED":
            return "UNIMPLEMENTED"
        return "FAILED"


@dataclass
class SuiteResult:
    role: str
    section: str
    testee: str
    path: str
    api: str = "events"
    cases: dict[str, CaseResult] = field(default_factory=dict)
    seconds: float = 0.0
    outdir: str = ""
    partial: bool = False

    @property
    def failing(self) -> list[CaseResult]:
        return [c for c in self.sorted_cases() if not c.passed]

    def counts(self) -> dict[str, int]:
        counter = Counter(c.verdict for c in self.cases.values())
        return {v: counter.get(v, 0) for v in VERDICTS}

    def sorted_cases(self) -> list[CaseResult]:
        return sorted(self.cases.values(), key=lambda c: case_key(c.case))

    def table(self) -> str:
        counts = self.counts()
        head = f"{'role':<7}{'sections':<9}" + "".join(f"{v:>15}" for v in VERDICTS)
        head += f"{'total':>8}{'seconds':>9}"
        row = f"{self.role:<7}{self.section:<9}" + "".join(f"{counts[v]:>15}" for v in VERDICTS)
        row += f"{len(self.cases):>8}{self.seconds:>9.1f}"
        title = f"Autobahn {self.testee} ({self.path} path, {self.api} API)"
        if self.partial:
            title += " PARTIAL: stopped at its time limit, the cases not run are not counted"
        lines = [title, head, row]
        for c in self.failing[:40]:
            lines.append(f"  not passing: {c.case} behavior={c.behavior} close={c.behavior_close}")
        if len(self.failing) > 40:
            lines.append(f"  ... and {len(self.failing) - 40} more (see {self.outdir})")
        return "\n".join(lines)

    def as_json(self) -> dict[str, object]:
        return {
            "role": self.role,
            "sections": self.section,
            "testee": self.testee,
            "path": self.path,
            "api": self.api,
            "counts": self.counts(),
            "total": len(self.cases),
            "seconds": round(self.seconds, 1),
            "failing": {c.case: [c.behavior, c.behavior_close] for c in self.failing},
            "report": self.outdir,
            "partial": self.partial,
        }


def case_key(case: str) -> tuple[int, ...]:
    return tuple(int(p) for p in case.split(".") if p.isdigit())


def timeout_factor() -> float:
    """One factor scales every test timeout (``WSFAST_TEST_TIMEOUT_FACTOR``, default 1)."""
    return float(os.environ.get("WSFAST_TEST_TIMEOUT_FACTOR", "1") or 1)


def path_label(env: dict[str, str] | os._Environ[str] | None = None) -> str:
    """``fallback`` when either speedup is switched off by its variable; else ``fast`` when both
    native speedups load here (the testee runs in this interpreter and environment), ``python``
    when they are not installed."""
    env = os.environ if env is None else env
    if env.get("WSFAST_NO_BUFFER_UTIL") or env.get("WSFAST_NO_UTF_8_VALIDATE"):
        return "fallback"
    try:
        import wsfast

        active = wsfast.speedups()
    except Exception:  # wsfast missing or broken: the testee will say so
        return "fast"
    return "fast" if all(active.values()) else "python"


def _share_import_path(env: dict[str, str]) -> None:
    """The testee (run from a scratch directory) imports the same wsfast as this process."""
    spec = importlib.util.find_spec("wsfast")
    if spec is None or not spec.submodule_search_locations:
        return
    root = str(Path(next(iter(spec.submodule_search_locations))).resolve().parent)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([root, *paths])


def find_wstest() -> str | None:
    explicit = os.environ.get("WSFAST_WSTEST")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    venv = Path(os.environ.get("WSFAST_AUTOBAHN_VENV") or REPO / ".ci" / "cache" / "autobahn")
    candidate = venv / "bin" / "wstest"
    if os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("wstest")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, deadline: float, proc: subprocess.Popen[bytes]) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AutobahnError(f"wstest exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AutobahnError(f"nothing listened on 127.0.0.1:{port} in time")


def _read_port(log: Path, proc: subprocess.Popen[bytes], deadline: float) -> int:
    """The testee server prints its port as the first line made of digits on stdout (a log file,
    so a chatty testee never blocks on a full pipe)."""
    while time.monotonic() < deadline:
        text = log.read_bytes() if log.exists() else b""
        for line in text.split(b"\n")[:-1]:
            m = re.fullmatch(rb"\s*(?:PORT\s+)?(\d+)\s*", line)
            if m:
                return int(m.group(1))
        if proc.poll() is not None:
            raise AutobahnError(
                f"testee server exited with {proc.returncode}; see {log.name} in the report dir"
            )
        time.sleep(0.05)
    raise AutobahnError(
        f"testee server printed no port in time; see {log.name} in the report directory"
    )


def _wait_exit(proc: subprocess.Popen[bytes], deadline: float, what: str, outdir: Path) -> None:
    try:
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise AutobahnError(f"{what} ran past its time limit; output in {outdir}") from None
    if rc != 0:
        raise AutobahnError(f"{what} exited with {rc}; see {outdir}")


def _request_reports(port: int, agent: str, timeout: float = 120.0) -> None:
    """Asks the fuzzing server to write its reports, as the testee client does last
    (``/updateReports``): it writes them before answering, then closes."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /updateReports?agent={agent} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request.encode())
        sock.recv(65536)  # the 101 response comes once the reports are on disk


def _rescue_partial(exc: AutobahnError, result: SuiteResult, port: int, outdir: Path) -> None:
    """After a testee client ran out of time: the verdicts of the cases it did run."""
    try:
        _request_reports(port, AGENT)
        result.cases = parse_report(outdir / "index.json")
    except (OSError, ValueError, AutobahnError):
        return
    result.partial = True
    exc.result = result


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    """Ends a process this module started (its own process group), by PID."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


def _popen(cmd: list[str], cwd: Path, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out, open(log.with_suffix(".stderr.log"), "wb") as err:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # own process group: _stop() ends it and its children only
        )


def parse_report(index_json: Path, agent: str = AGENT) -> dict[str, CaseResult]:
    data = json.loads(index_json.read_text())
    if agent not in data:
        raise AutobahnError(f"agent {agent!r} not in {index_json} (agents: {sorted(data)})")
    out = {}
    for case, r in data[agent].items():
        out[case] = CaseResult(
            case=case,
            behavior=r.get("behavior", "?"),
            behavior_close=r.get("behaviorClose", "?"),
            duration_ms=r.get("duration"),
            remote_close_code=r.get("remoteCloseCode"),
        )
    return out


def run_suite(
    role: str,
    section: str,
    *,
    testee: str | None = None,
    outdir: Path | None = None,
    timeout: float | None = None,
    deflate: bool = True,
    wstest: str | None = None,
    env: dict[str, str] | None = None,
    api: str = "events",
) -> SuiteResult:
    """Runs one role over one section selection and returns the parsed verdicts.

    ``deflate`` turns permessage-deflate on in the testee (it only changes anything in sections
    12 and 13: wstest offers or accepts the extension in those cases alone).
    """
    if role not in ("server", "client"):
        raise ValueError(f"role must be 'server' or 'client', not {role!r}")
    selection = SECTIONS[section]
    testee = testee or os.environ.get("WSFAST_AUTOBAHN_TESTEE") or "wsfast"
    if testee not in TESTEES:
        raise ValueError(f"unknown testee {testee!r}; one of {sorted(TESTEES)}")
    if api not in APIS:
        raise ValueError(f"unknown api {api!r}; one of {APIS}")
    if role == "client" and api in SERVER_ONLY_APIS:
        raise ValueError(f"the {api} front end is a server only: run it in the server role")
    wstest = wstest or find_wstest()
    if not wstest:
        raise AutobahnError("wstest not found: run .ci/install-autobahn.sh (or set WSFAST_WSTEST)")
    env = dict(os.environ if env is None else env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    _share_import_path(env)
    label = path_label(env)
    timeout = (timeout or DEFAULT_TIMEOUTS[section]) * timeout_factor()
    name = f"{label}-{role}-{section}" if api == "events" else f"{label}-{api}-{role}-{section}"
    if testee != "wsfast":
        name = f"{testee}-{name}"
    final = outdir or REPO / "reports" / "autobahn" / name
    # Each run writes into a directory of its own and replaces ``final`` when done, so two runs
    # at once (two developers in one checkout) never delete or mix each other's reports.
    outdir = final.with_name(f"{final.name}.run-{os.getpid()}-{time.monotonic_ns()}")
    outdir.mkdir(parents=True)
    script = TESTEES[testee][role]
    testee_cmd = [sys.executable, str(script)]
    if testee == "websockets":
        testee_cmd.append(role)
    testee_cmd += ["--deflate" if deflate else "--no-deflate"]
    if testee == "wsfast":
        testee_cmd += ["--api", api]

    result = SuiteResult(
        role=role, section=section, testee=testee, path=label, api=api, outdir=str(final)
    )
    work = Path(tempfile.mkdtemp(prefix="wsfast-autobahn-"))
    spec = work / "spec.json"
    started = time.monotonic()
    deadline = started + timeout
    server_proc = wstest_proc = client_proc = None
    try:
        if role == "server":
            server_log = outdir / "testee-server.log"
            server_proc = _popen(testee_cmd + ["--port", "0"], work, server_log, env)
            port = _read_port(server_log, server_proc, min(deadline, time.monotonic() + 30))
            spec.write_text(
                json.dumps(
                    {
                        "outdir": str(outdir),
                        "servers": [
                            {
                                "agent": AGENT,
                                "url": f"ws://127.0.0.1:{port}",
                                "options": {"version": 18},
                            }
                        ],
                        "cases": selection["cases"],
                        "exclude-cases": selection["exclude-cases"],
                        "exclude-agent-cases": {},
                    },
                    indent=2,
                )
            )
            wstest_proc = _popen(
                [wstest, "-m", "fuzzingclient", "-s", str(spec)], work, outdir / "wstest.log", env
            )
            _wait_exit(wstest_proc, deadline, "wstest -m fuzzingclient", final)
            if server_proc.poll() is not None:
                raise AutobahnError(f"testee server died (exit {server_proc.returncode})")
        else:
            port = free_port()
            url = f"ws://127.0.0.1:{port}"
            spec.write_text(
                json.dumps(
                    {
                        "url": url,
                        "outdir": str(outdir),
                        "cases": selection["cases"],
                        "exclude-cases": selection["exclude-cases"],
                        "exclude-agent-cases": {},
                    },
                    indent=2,
                )
            )
            wstest_proc = _popen(
                [wstest, "-m", "fuzzingserver", "-s", str(spec), "--webport=0"],
                work,
                outdir / "wstest.log",
                env,
            )
            _wait_port(port, min(deadline, time.monotonic() + 60), wstest_proc)
            client_proc = _popen(
                testee_cmd + ["--url", url, "--agent", AGENT],
                work,
                outdir / "testee-client.log",
                env,
            )
            try:
                _wait_exit(client_proc, deadline, "the testee client", final)
            except AutobahnError as exc:
                _stop(client_proc)
                _rescue_partial(exc, result, port, outdir)
                raise
        index = outdir / "index.json"
        if not index.exists():
            raise AutobahnError(f"no report at {index}")
        result.cases = parse_report(index)
    finally:
        for p in (client_proc, wstest_proc, server_proc):
            _stop(p)
        shutil.rmtree(work, ignore_errors=True)
        for _ in range(3):  # another run may land its report between the two calls
            shutil.rmtree(final, ignore_errors=True)
            try:
                outdir.rename(final)
                break
            except OSError:
                continue
        result.seconds = time.monotonic() - started
    return result


def write_summary(result: SuiteResult, path: Path | None = None) -> Path:
    """Merges one run's counts into ``reports/autobahn-summary.json`` (key path/role/sections)."""
    path = path or REPO / "reports" / "autobahn-summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        summary = {}
    key = f"{result.path}/{result.role}/{result.section}"
    if result.api != "events":
        key = f"{result.path}/{result.api}/{result.role}/{result.section}"
    summary[key if result.testee == "wsfast" else f"{result.testee}:{key}"] = result.as_json()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["server", "client"])
    parser.add_argument("section", choices=sorted(SECTIONS))
    parser.add_argument("--testee", choices=sorted(TESTEES))
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--no-deflate", action="store_true")
    parser.add_argument("--api", choices=APIS, default="events")
    args = parser.parse_args(argv)
    if args.role == "client" and args.api in SERVER_ONLY_APIS:
        parser.error(f"the {args.api} front end is a server only: run it in the server role")
    # A SIGTERM (``timeout``, a CI runner) still runs run_suite's cleanup of its processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result = run_suite(
            args.role,
            args.section,
            testee=args.testee,
            timeout=args.timeout,
            deflate=not args.no_deflate,
            api=args.api,
        )
    except AutobahnError as exc:
        if exc.result is None:
            raise
        result = exc.result
        print(f"error: {exc}")
    print(result.table())
    print("summary:", write_summary(result))
    return 0 if not result.failing else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

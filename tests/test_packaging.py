"""Release engineering (DESIGN section 4, issue 11 section 4): one version source per
distribution, sdists that carry what their tests need, workflows that parse and name live runner
images, and a failed native build that never passes for a good one.

The fast tests run with the suite. The ``slow`` ones build sdists and install them in throwaway
venvs (minutes, PyPI for the build dependencies, a C compiler): they run only with
``WSFAST_SLOW_TESTS=1``, e.g. ``WSFAST_SLOW_TESTS=1 python -m pytest -m slow
tests/test_packaging.py`` (docs/releasing.md).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

import wsfast

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
EXTS = {"bufferutil": "wsfast_bufferutil", "utf8validate": "wsfast_utf8validate"}

slow = pytest.mark.slow
#: Above the suite's 300 s: each slow test builds in pip's isolated environments (the scenario
#: takes ~2 min alone on 2 cores, over 5 min beside another test run).
long_timeout = pytest.mark.timeout(1200)
needs_slow = pytest.mark.skipif(
    os.environ.get("WSFAST_SLOW_TESTS") != "1",
    reason="builds and installs distributions: set WSFAST_SLOW_TESTS=1",
)
in_checkout = pytest.mark.skipif(
    not (ROOT / "ext").is_dir() or not WORKFLOWS.is_dir(),
    reason="needs the source checkout (ext/, .github/), not an sdist",
)


# --- one version source per distribution ---------------------------------------------------------


def _pyx_version(ext: str) -> str:
    text = (ROOT / "ext" / ext / "src" / f"{EXTS[ext]}.pyx").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    assert match, f"no __version__ in the .pyx of {ext}"
    return match.group(1)


def test_wsfast_version_has_one_source() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]$', pyproject, re.M)
    assert 'version = { attr = "wsfast.__version__" }' in pyproject
    assert not re.search(r'^version = "', pyproject, re.M)  # no static version beside it


def test_wsfast_version_is_the_installed_metadata() -> None:
    try:
        installed = importlib.metadata.version("wsfast")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("wsfast is not installed (run from a checkout on PYTHONPATH)")
    assert wsfast.__version__ == installed


@in_checkout
@pytest.mark.parametrize("ext", sorted(EXTS))
def test_extension_version_has_one_source(ext: str) -> None:
    pyproject = (ROOT / "ext" / ext / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]$', pyproject, re.M)
    assert not re.search(r'^version = "', pyproject, re.M)  # no static version beside it
    # The C file generated from the .pyx (built when Cython is absent) carries the same version.
    c_file = (ROOT / "ext" / ext / "src" / f"{EXTS[ext]}.c").read_text()
    assert f'__version__ = "{_pyx_version(ext)}"' in c_file, "regenerate the C file"


@pytest.mark.parametrize("ext", sorted(EXTS))
def test_extension_version_is_the_installed_metadata(ext: str) -> None:
    try:
        module = importlib.import_module(EXTS[ext])
    except ImportError:
        pytest.skip(f"{EXTS[ext]} is not importable here")
    installed = importlib.metadata.version(f"wsfast-{ext}")
    assert module.__version__ == installed
    if (ROOT / "ext").is_dir():
        assert installed == _pyx_version(ext), "the installed build is not this checkout's"


# --- workflows -----------------------------------------------------------------------------------

RETIRED_RUNNERS = {
    "ubuntu-18.04",
    "ubuntu-20.04",
    "macos-11",
    "macos-12",
    "macos-13",
    "windows-2016",
    "windows-2019",
}


def _workflows() -> dict[str, Any]:
    import yaml  # the test extra has pyyaml

    return {
        path.name: yaml.safe_load(path.read_text()) for path in sorted(WORKFLOWS.glob("*.y*ml"))
    }


def _runners(workflow: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for job in workflow.get("jobs", {}).values():
        runs_on = job.get("runs-on")
        if isinstance(runs_on, str) and "${{" not in runs_on:
            found.add(runs_on)
        for entry in (job.get("strategy") or {}).get("matrix", {}).get("include", []) or []:
            if "os" in entry:
                found.add(entry["os"])
        for value in (job.get("strategy") or {}).get("matrix", {}).get("os", []) or []:
            found.add(value)
    return found


@in_checkout
def test_workflows_parse_and_use_live_runners() -> None:
    workflows = _workflows()
    assert {"ci.yml", "wheels-common.yml", "wheels-bufferutil.yml", "wheels-utf8validate.yml"} <= (
        set(workflows)
    )
    assert "publish.yml" in workflows
    for name, workflow in workflows.items():
        assert isinstance(workflow, dict) and workflow.get("jobs"), name
        # YAML 1.1 reads the key "on" as True.
        assert "on" in workflow or True in workflow, name
        retired = _runners(workflow) & RETIRED_RUNNERS
        assert not retired, f"{name} uses retired runner images {sorted(retired)}"


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


@in_checkout
def test_wheel_workflow_builds_cpython_3_14() -> None:
    common = _workflows()["wheels-common.yml"]
    uses = [step["uses"] for step in _steps(common) if "cibuildwheel" in step.get("uses", "")]
    assert uses, "wheels-common.yml does not run cibuildwheel"
    for use in uses:
        major, minor = (int(x) for x in re.findall(r"@v(\d+)\.(\d+)", use)[0])
        assert (major, minor) >= (3, 1), f"{use} does not know CPython 3.14 (cibuildwheel >= 3.1)"
    for ext in EXTS:
        pyproject = (ROOT / "ext" / ext / "pyproject.toml").read_text()
        build = re.search(r'^build = "([^"]*)"$', pyproject, re.M)
        assert build, ext
        assert build.group(1).split() == [f"cp31{n}-*" for n in range(5)], ext


@in_checkout
def test_publish_workflow_of_wsfast() -> None:
    publish = _workflows()["publish.yml"]
    jobs = publish["jobs"]
    runs = "\n".join(step.get("run", "") for step in _steps(publish))
    assert "python -m build" in runs and "twine check" in runs
    publishers = [
        (name, job)
        for name, job in jobs.items()
        if any("pypa/gh-action-pypi-publish" in s.get("uses", "") for s in job.get("steps", []))
    ]
    assert len(publishers) == 1
    name, job = publishers[0]
    assert job["permissions"]["id-token"] == "write"  # trusted publishing, no token
    assert "refs/tags/v" in job["if"]


# --- sdists (slow) -------------------------------------------------------------------------------


def _build_sdist(source: Path, outdir: Path) -> Path:
    pytest.importorskip("build", reason="pip install build")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--outdir", str(outdir), str(source)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (sdist,) = outdir.glob("*.tar.gz")
    return sdist


def _unpack(sdist: Path, into: Path) -> tuple[list[str], Path]:
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
        tar.extractall(into, filter="data") if sys.version_info >= (3, 12) else tar.extractall(into)
    (top,) = into.iterdir()
    return [name.split("/", 1)[1] for name in names if "/" in name], top


@slow
@long_timeout
@needs_slow
@in_checkout
def test_wsfast_sdist_carries_and_passes_its_docs_tests(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "node_modules", "build"))
    files, top = _unpack(_build_sdist(source, tmp_path / "dist"), tmp_path / "unpacked")
    for needed in (
        "README.md",
        "LICENSE",
        "docs/api.md",
        "examples/simple_server.py",
        "tests/conftest.py",
        "tests/test_readme.py",
        "tests/test_examples.py",
        "tests/test_public_api.py",
        "wsfast/__init__.py",
        "wsfast/py.typed",
    ):
        assert needed in files, needed
    assert not [f for f in files if "node_modules" in f or "__pycache__" in f]
    # The quick subset (docs/releasing.md): the README, docs and examples agree with the code.
    env = dict(os.environ, PYTHONPATH=str(top))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"]
        + ["tests/test_readme.py", "tests/test_examples.py", "tests/test_public_api.py"],
        cwd=top,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


@slow
@long_timeout
@needs_slow
@in_checkout
@pytest.mark.parametrize("ext", sorted(EXTS))
def test_extension_sdist_carries_and_passes_its_tests(tmp_path: Path, ext: str) -> None:
    source = tmp_path / "src"
    shutil.copytree(ROOT / "ext" / ext, source, ignore=shutil.ignore_patterns("build", "*.so"))
    files, top = _unpack(_build_sdist(source, tmp_path / "dist"), tmp_path / "unpacked")
    module = EXTS[ext]
    for needed in (
        f"src/{module}.pyx",
        f"src/{module}.c",
        f"src/{module}-stubs/__init__.pyi",
        "tests/kernel_check.c",
        f"tests/test_{ext}.py",
        "README.md",
        "LICENSE",
    ):
        assert needed in files, needed
    assert [f for f in files if f.startswith("src/") and f.endswith(".h")]
    # Its tests, against a build from the unpacked sdist (a failed build is an error here).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", str(top), "pytest", "hypothesis"],
        check=True,
        env=dict(os.environ, WSFAST_REQUIRE_EXTENSIONS="1"),
        timeout=600,
    )
    result = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(top / "tests")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    # The C cross-check, as its header says.
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "no C compiler"
    subprocess.run(
        [cc, "-O2", "-I../src", "kernel_check.c", "-o", str(tmp_path / "kc")],
        cwd=top / "tests",
        check=True,
        timeout=120,
    )
    check = subprocess.run(
        [str(tmp_path / "kc")], capture_output=True, text=True, timeout=300, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


@slow
@long_timeout
@needs_slow
@in_checkout
def test_failed_native_build_scenario() -> None:
    """ext/check_failed_build.sh: no compiler, then a compiler, from the same sdists."""
    result = subprocess.run(
        ["bash", str(ROOT / "ext" / "check_failed_build.sh"), sys.executable],
        env=dict(os.environ, WSFAST_CHECK_DIRS="0"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "py3-none-native_build_failed.whl" in result.stdout
    assert "OK (index installs" in result.stdout

"""Build script for wsfast-bufferutil: the native module is optional unless a release asks.

A user without a C compiler still gets a working install: the build failure becomes a warning,
the distribution installs without the ``wsfast_bufferutil`` module, and wsfast falls back to its
pure-Python masking. Release builds (cibuildwheel) set ``WSFAST_REQUIRE_EXTENSIONS=1`` so that a
broken build fails loudly instead of publishing an empty wheel.

A wheel built without the module must never be taken for a real one, nor served again from
pip's wheel cache once a compiler is there: it is tagged ``py3-none-native_build_failed``, a
platform no installer supports. pip installs the wheel it has just built without checking its
tags, but never picks it out of its cache (``pip/_internal/cache.py`` skips cached wheels whose
tags are not supported), so the next ``pip install`` builds again. The file name in pip's
"Created wheel" line says what happened.

The version has one source, ``__version__`` in the .pyx; ``pyproject.toml`` declares it dynamic
and this script reads it.
"""

import os
import re
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
REQUIRED = os.environ.get("WSFAST_REQUIRE_EXTENSIONS", "") == "1"
NAME = "wsfast_bufferutil"
#: The platform tag of a wheel built without its native module (see the docstring).
FAILED_TAG = ("py3", "none", "native_build_failed")
#: Extensions whose build failed in this run; read by bdist_wheel.get_tag.
_FAILED: list = []

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]


def _version() -> str:
    text = (HERE / "src" / f"{NAME}.pyx").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    if not match:
        raise RuntimeError(f"no __version__ in src/{NAME}.pyx")
    return match.group(1)


def _headers() -> list:
    # The kernels live in headers: a change there must rebuild the module.
    return sorted(str(p.relative_to(HERE)) for p in (HERE / "src").glob("*.h"))


def _sources() -> list:
    pyx = Path("src") / f"{NAME}.pyx"
    c_file = Path("src") / f"{NAME}.c"
    try:
        from Cython.Build import cythonize
    except ImportError:
        cythonize = None
    if cythonize is not None and (HERE / pyx).exists():
        try:
            return cythonize(
                [Extension(NAME, [str(pyx)], include_dirs=["src"], depends=_headers())],
                compiler_directives={"language_level": "3"},
                # Generate into build/, not over the checked-in src/*.c (which the sdist
                # carries for builds without Cython).
                build_dir="build/cython",
                quiet=True,
            )
        except Exception:
            if REQUIRED or not (HERE / c_file).exists():
                raise
    # No Cython: the generated C file shipped in the sdist builds on its own.
    return [Extension(NAME, [str(c_file)], include_dirs=["src"], depends=_headers())]


class OptionalBuildExt(build_ext):
    """build_ext that turns a failure into a warning unless WSFAST_REQUIRE_EXTENSIONS=1."""

    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "msvc":
            flags = ["/O2"]
        else:
            # -O3 for the scalar word loops; no -march: SIMD kernels are chosen at run time.
            flags = ["-O3", "-fno-strict-aliasing"]
        for ext in self.extensions:
            ext.extra_compile_args = flags + list(ext.extra_compile_args or [])
        super().build_extensions()

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure is treated alike
            self._failed(exc, self.extensions)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc, [ext])

    def _failed(self, exc: Exception, extensions: list) -> None:
        if REQUIRED:
            raise exc
        # A module left in build/ by an earlier successful build would otherwise be installed
        # as if this build had worked (pip builds local directories in place).
        for ext in extensions:
            _FAILED.append(ext.name)
            stale = self.get_ext_fullpath(ext.name)
            if os.path.exists(stale):
                os.remove(stale)
        sys.stderr.write(
            f"WARNING: {NAME} could not be compiled ({exc!r}); installing without it, in a "
            f"wheel tagged {'-'.join(FAILED_TAG)} that pip will not reuse from its cache. "
            "wsfast will use its pure-Python masking. Set WSFAST_REQUIRE_EXTENSIONS=1 to make "
            "this an error.\n"
        )


class BdistWheel(bdist_wheel):
    """bdist_wheel that tags a wheel without its native module as installable nowhere else."""

    def get_tag(self) -> tuple:
        # Called after the build step, so _FAILED is final here.
        if _FAILED:
            return FAILED_TAG
        return super().get_tag()


setup(
    version=_version(),
    ext_modules=_sources(),
    cmdclass={"build_ext": OptionalBuildExt, "bdist_wheel": BdistWheel},
)

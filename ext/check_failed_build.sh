#!/usr/bin/env bash
# The failed-build scenario of issue 11 section 4, end to end, in throwaway venvs under /tmp:
#
#   1. no C compiler (CC=false LDSHARED=false): `pip install "wsfast[speedups]"` from a local
#      package index (the extensions as sdists, as on PyPI for a platform without wheels)
#      succeeds, as a user without a compiler needs, but the wheel pip builds is tagged
#      py3-none-native_build_failed and `wsfast info` / `wsfast.speedups_status()` say
#      "installed WITHOUT its native module", with the fix;
#   2. a compiler: `pip install --force-reinstall "wsfast[speedups]"` (pip's cache left on) builds
#      again instead of reusing the fallback wheel from pip's wheel cache (what happened before:
#      pip looked the sdist up in its cache by name and version and installed the empty wheel),
#      and the native modules load;
#   3. the same from the sdist files (`pip install dist/wsfast_bufferutil-*.tar.gz`: a plain
#      install, pip reinstalls local archives), and
#   4. from the extension directories (`pip install ./ext/bufferutil ...`, built in place:
#      copies under /tmp, the checkout is untouched).
#
# WSFAST_CHECK_DIRS=0 leaves out steps 3 and 4 (tests/test_packaging.py): ~2 min instead of ~4
# on 2 cores.
# It uses its own pip cache (the scenario is about that cache) and prints every step; it exits 1
# on the first step that does not behave. Needs PyPI (or a mirror) for the build dependencies.
#   bash ext/check_failed_build.sh [PYTHON]     (default: python3.11)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-${PYTHON:-python3.11}}"
TMP="$(mktemp -d -t wsfast-failed-build-XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
export PIP_CACHE_DIR="$TMP/pip-cache" PIP_DISABLE_PIP_VERSION_CHECK=1
START=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - START )) s] $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
NO_COMPILER=(env CC=false CXX=false LDSHARED=false)

step "venv ($PY); a local package index: wsfast, the sdists of both extensions, their build deps"
"$PY" -m venv "$TMP/venv"
VPY="$TMP/venv/bin/python"
"$VPY" -m pip install --quiet build
for ext in bufferutil utf8validate; do
    cp -r "$REPO/ext/$ext" "$TMP/$ext"   # copies: pip builds directories in place
    rm -rf "$TMP/$ext/build"
    "$VPY" -m build --sdist --outdir "$TMP/index" "$TMP/$ext" >"$TMP/build.log" 2>&1 \
        || { cat "$TMP/build.log"; fail "python -m build --sdist $ext"; }
done
SDISTS=("$TMP"/index/*.tar.gz)
"$VPY" -m pip wheel --quiet --no-deps --wheel-dir "$TMP/index" "$REPO"
"$VPY" -m pip download --quiet --only-binary :all: --dest "$TMP/index" \
    "setuptools>=77" "Cython>=3.0,<4"
ls -1 "$TMP/index"
# What `pip install "wsfast[speedups]"` does against PyPI, where no wheel fits (a platform without
# wheels): pip builds each extension from its sdist and caches the wheel under the sdist's URL.
INDEX=(--no-index --find-links "$TMP/index")

# $1: the state expected for both speedups; prints `wsfast info` and checks speedups_status().
expect() {
    (cd "$TMP" && "$TMP/venv/bin/wsfast" info | grep '^speedup')
    "$VPY" - "$1" <<'EOF'
import sys
import wsfast
states = {name: s.state for name, s in wsfast.speedups_status().items()}
print("speedups_status():", states, "speedups():", wsfast.speedups())
sys.exit(0 if set(states.values()) == {sys.argv[1]} else 1)
EOF
}

# $1: label; the rest: what to install. pip's own lines about building and caching are shown.
install() {
    local label="$1"; shift
    "$@" 2>&1 | grep -E "Building wheel|Created wheel|Stored in|Using cached|Successfully installed|WARNING: wsfast_" \
        | sed -e "s|$TMP|\$TMP|g" -e 's/sha256=[0-9a-f]*/sha256=.../' || fail "$label"
}

step "1. no compiler: pip install \"wsfast[speedups]\" (from the index)"
install "index install without a compiler" \
    "${NO_COMPILER[@]}" "$VPY" -m pip install -v "${INDEX[@]}" "wsfast[speedups]"
expect no-native-module || fail "without a compiler, the status is not no-native-module"
echo "pip's wheel cache now holds:"
find "$PIP_CACHE_DIR/wheels" -name '*.whl' -printf '  %f\n'

step "2. with a compiler: pip install --force-reinstall \"wsfast[speedups]\" (cache left on)"
install "index install with a compiler" \
    "$VPY" -m pip install -v --force-reinstall "${INDEX[@]}" "wsfast[speedups]"
expect native || fail "with a compiler, the native modules are not loaded (cached fallback wheel?)"
echo "pip's wheel cache now holds:"
find "$PIP_CACHE_DIR/wheels" -name '*.whl' -printf '  %f\n'

if [ "${WSFAST_CHECK_DIRS:-1}" = 0 ]; then
    step "OK (index installs; steps 3 and 4 left out by WSFAST_CHECK_DIRS=0)"
    exit 0
fi

step "3a. no compiler: pip install --force-reinstall <the sdist files>"
install "sdist install without a compiler" \
    "${NO_COMPILER[@]}" "$VPY" -m pip install -v --force-reinstall --no-deps "${SDISTS[@]}"
expect no-native-module || fail "without a compiler (sdist files), status is not no-native-module"

step "3b. with a compiler: plain pip install <the same sdist files>"
install "sdist install with a compiler" "$VPY" -m pip install -v "${SDISTS[@]}"
expect native || fail "with a compiler (sdist files), the native modules are not loaded"

step "4a. no compiler: pip install --force-reinstall <the extension directories>"
install "directory install without a compiler" \
    "${NO_COMPILER[@]}" "$VPY" -m pip install -v --force-reinstall --no-deps \
    "$TMP/bufferutil" "$TMP/utf8validate"
expect no-native-module || fail "without a compiler (directories), status is not no-native-module"

step "4b. with a compiler: plain pip install <the extension directories>"
install "directory install with a compiler" \
    "$VPY" -m pip install -v "$TMP/bufferutil" "$TMP/utf8validate"
expect native || fail "with a compiler (directories), the native modules are not loaded"

step "OK: a failed build is reported, and a later install with a compiler loads the native modules"

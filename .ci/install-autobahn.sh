#!/usr/bin/env bash
# Installs the Autobahn testsuite (wstest) into a Python 2.7 virtualenv, idempotently.
#
#   .ci/install-autobahn.sh            # -> ${WSFAST_AUTOBAHN_VENV:-$REPO/.ci/cache/autobahn}/bin/wstest
#
# autobahntestsuite only runs on Python 2.7 (it is built on Twisted and autobahn 0.10.x), so it
# lives in its own virtualenv made from pyenv's 2.7.18, never in the project's venv.
# The pins below are the set resolved and verified on 2026-11-27 (wstest -m fuzzingclient and
# -m fuzzingserver run clean with them); pinning all of them keeps a future release of any
# Python-2-compatible dependency from breaking CI. Cold install: ~25 s on 2 cores (wsaccel,
# autobahn and txaio are built from sdists; a warm pip cache makes it faster).
# Environment: WSFAST_AUTOBAHN_VENV (target dir), WSFAST_PY2 (a Python 2.7 interpreter).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${WSFAST_AUTOBAHN_VENV:-$REPO/.ci/cache/autobahn}"
WSTEST="$DIR/bin/wstest"

PINS="autobahntestsuite==25.10.1
autobahn==0.10.9
Twisted==19.10.0
txaio==2.1.0
six==1.16.0
zope.interface==4.6.0
attrs==21.4.0
Automat==22.10.0
constantly==15.1.0
hyperlink==21.0.0
incremental==16.10.1
idna==2.10
typing==3.10.0.0
PyHamcrest==1.10.1
wsaccel==0.6.6
ujson==2.0.3
klein==17.10.0
Werkzeug==1.0.1
Jinja2==2.11.3
MarkupSafe==1.1.1
pyOpenSSL==19.1.0
cryptography==3.3.2
cffi==1.15.1
pycparser==2.21
enum34==1.1.10
ipaddress==1.0.23
service-identity==18.1.0
pyasn1==0.5.1
pyasn1-modules==0.3.0
unittest2==1.1.0
linecache2==1.0.0
traceback2==1.4.0
argparse==1.4.0"
STAMP_WANT="$(printf '%s\n' "$PINS" | sha256sum | cut -c1-16)"
STAMP="$DIR/.wsfast-pins"

start=$(date +%s)
if [ -x "$WSTEST" ] && [ "$(cat "$STAMP" 2>/dev/null || true)" = "$STAMP_WANT" ] \
    && "$WSTEST" --help >/dev/null 2>&1; then
    echo "install-autobahn: already installed in $DIR ($("$WSTEST" --autobahnversion 2>/dev/null | tr '\n' ' '))"
    exit 0
fi

if [ -n "${WSFAST_PY2:-}" ]; then
    PY2="$WSFAST_PY2"
elif command -v pyenv >/dev/null 2>&1 && [ -x "$(pyenv root)/versions/2.7.18/bin/python" ]; then
    PY2="$(pyenv root)/versions/2.7.18/bin/python"
elif command -v python2.7 >/dev/null 2>&1; then
    PY2="$(command -v python2.7)"
else
    echo "install-autobahn: no Python 2.7 found (pyenv 2.7.18, python2.7 or WSFAST_PY2)" >&2
    exit 1
fi
echo "install-autobahn: using $PY2 ($("$PY2" --version 2>&1)) -> $DIR"

# virtualenv 20.15.1 is the newest that still runs on (and creates) Python 2.7 environments.
if ! "$PY2" -m virtualenv --version >/dev/null 2>&1; then
    "$PY2" -m pip install --quiet --user --disable-pip-version-check "virtualenv==20.15.1"
fi

rm -rf "$DIR"
mkdir -p "$(dirname "$DIR")"
"$PY2" -m virtualenv --quiet "$DIR"
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
printf '%s\n' "$PINS" > "$CONSTRAINTS"
# Python 2.7's pip prints deprecation warnings; they are noise, not failures.
"$DIR/bin/pip" install --quiet --disable-pip-version-check --no-python-version-warning \
    -c "$CONSTRAINTS" autobahntestsuite

"$WSTEST" --help >/dev/null
echo "$STAMP_WANT" > "$STAMP"
echo "install-autobahn: installed $("$WSTEST" --autobahnversion 2>/dev/null | tr '\n' ' ')in $(( $(date +%s) - start )) s"

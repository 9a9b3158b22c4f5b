#!/bin/sh
# Installs redis-server, the broker tests/test_backplane.py starts on a free 127.0.0.1 port
# (Debian or Ubuntu, as root or with sudo). The tests start and stop their own instances, with no
# persistence; nothing runs after this script exits. macOS: `brew install redis`.
set -eu
if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends redis-server
# The package's service is not wanted: the tests run their own instances.
$SUDO service redis-server stop >/dev/null 2>&1 || true

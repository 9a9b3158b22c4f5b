#!/bin/sh
# Installs tinyproxy, the HTTP CONNECT proxy tests/test_proxy.py starts on 127.0.0.1 (Debian or
# Ubuntu, as root or with sudo). The tests start and stop their own instances with a generated
# configuration; nothing runs after this script exits. macOS: `brew install tinyproxy`.
set -eu
if command -v tinyproxy >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends tinyproxy
# The package's service is not wanted: the tests run their own instances.
$SUDO service tinyproxy stop >/dev/null 2>&1 || true

#!/bin/sh
# Installs the proxy servers tests/test_proxy.py starts on 127.0.0.1 (Debian or Ubuntu, as root
# or with sudo): tinyproxy (HTTP CONNECT) and microsocks (SOCKS5). The third, pproxy (socks4://
# and https://), is a PyPI package in the test extra. The tests start and stop their own
# instances; nothing runs after this script exits. macOS: `brew install tinyproxy microsocks`.
set -eu
if command -v tinyproxy >/dev/null 2>&1 && command -v microsocks >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends tinyproxy microsocks
# The packages' services are not wanted: the tests run their own instances.
$SUDO service tinyproxy stop >/dev/null 2>&1 || true
$SUDO service microsocks stop >/dev/null 2>&1 || true

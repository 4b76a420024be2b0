#!/usr/bin/env bash
# Installs what the tests need into .venv and runs the whole suite: ruff, mypy --strict, pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "Python 3.11 or newer is needed (found: $("$PYTHON" --version 2>&1))" >&2
    exit 1
fi

# need PACKAGES WHY -- CHECK...: when CHECK fails, install Debian's PACKAGES as root, or else say
# what to install and stop. Tests that need a server start their own on a free port.
need() {
    local packages=$1 why=$2
    shift 3
    "$@" && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing $packages (Debian packages) for $why"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
            install -y -qq $packages >/dev/null
    else
        echo "missing for $why: install the Debian packages '$packages'" >&2
        echo "(e.g. sudo apt-get install $packages); the tests never use a running server." >&2
        exit 1
    fi
}
have() { command -v "$1" >/dev/null 2>&1; }

need "redis-server" "the market-data tests" -- have redis-server
need "chromium chromium-driver" "the trading page's headless-browser tests" -- \
    eval 'have chromium && have chromedriver'
need "prometheus" "promtool, which checks and unit-tests deploy/'s alert rules" -- have promtool
need "g++ libquickfix-dev" "the real QuickFIX initiator in the FIX tests" -- \
    eval 'have g++ && [ -f /usr/include/quickfix/SocketInitiator.h ]'

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

echo "== ruff"
.venv/bin/ruff check exchange gateway loadtest bench tests
echo "== import layers"
.venv/bin/lint-imports
echo "== mypy --strict"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

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

if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing redis-server (Debian package) for the market-data tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
        echo "redis-server is not installed: install the 'redis-server' package (e.g. sudo apt-get install redis-server);" >&2
        echo "the tests start their own server on a free port and never use a running one." >&2
        exit 1
    fi
fi

# The trading page's tests drive a real headless Chromium (Debian's chromium + chromium-driver).
if ! { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing chromium and chromium-driver (Debian packages) for the browser tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
            install -y -qq chromium chromium-driver >/dev/null
    else
        echo "chromium or chromedriver is not installed: install the 'chromium' and" >&2
        echo "'chromium-driver' packages (e.g. sudo apt-get install chromium chromium-driver);" >&2
        echo "the browser tests start their own exchange on free ports." >&2
        exit 1
    fi
fi

# promtool checks and unit-tests the Prometheus alert rules in deploy/ (tests/deploy).
if ! command -v promtool >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing prometheus (Debian package, for promtool) for the deploy tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
            install -y -qq prometheus >/dev/null
    else
        echo "promtool is not installed: install the 'prometheus' package (e.g. sudo apt-get" >&2
        echo "install prometheus); the tests run promtool on deploy/prometheus only." >&2
        exit 1
    fi
fi

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

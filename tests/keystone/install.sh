#!/usr/bin/env bash
# Installs a real Keystone for troved's identity tests (issue #16) into a venv:
#
#   bash tests/keystone/install.sh [VENV]        (default: target/keystone-venv)
#
# PyPI `keystone` (SQLite backend, fernet tokens) under `gunicorn`, pinned; the venv is
# reused when it already holds these versions. Prints the venv's python on success; the
# tests take it from TROVED_TEST_KEYSTONE (tests/keystone/keystone_server.py runs with it).
set -euo pipefail
KEYSTONE_VERSION=30.0.0
GUNICORN_VERSION=27.0.1
venv="${1:-target/keystone-venv}"
python="${PYTHON:-python3}"

pinned() {
    [ -x "$venv/bin/python" ] && [ -x "$venv/bin/keystone-manage" ] && [ -x "$venv/bin/gunicorn" ] \
        && "$venv/bin/python" - <<PY 2>/dev/null
import importlib.metadata as m
assert m.version("keystone") == "$KEYSTONE_VERSION"
assert m.version("gunicorn") == "$GUNICORN_VERSION"
PY
}

if ! pinned; then
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "keystone==$KEYSTONE_VERSION" "gunicorn==$GUNICORN_VERSION" >&2
    pinned || { echo "the venv at $venv does not hold keystone $KEYSTONE_VERSION" >&2; exit 2; }
fi
cd "$venv" && echo "$PWD/bin/python"

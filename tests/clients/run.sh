#!/usr/bin/env bash
# Real-client test: the OpenStack CLI (python-openstackclient + python-troveclient)
# against `troved serve` on the embedded defaults. See tests/clients/test_cli.py.
#
#   bash tests/clients/run.sh [path/to/troved]     (default: target/debug/troved)
#
# Environment: CLI_VENV (default target/cli-venv; reused when it already holds the
# pinned versions), PYTHON (default python3, 3.10 or newer, with the venv module),
# TROVED_TEST_KEYSTONE (a venv python with keystone: runs tests/clients/test_cli_keystone.py).
# Ends with the test's summary line `N passed, M failed`; exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

OSC_VERSION=10.5.0
TROVECLIENT_VERSION=8.11.0

troved="${1:-target/debug/troved}"
venv="${CLI_VENV:-target/cli-venv}"
python="${PYTHON:-python3}"

if [ ! -x "$troved" ]; then
    echo "no troved binary at $troved (build it first: cargo build, or cargo test)" >&2
    exit 2
fi

pinned() {
    [ -x "$venv/bin/python" ] && [ -x "$venv/bin/openstack" ] && "$venv/bin/python" - <<EOF 2>/dev/null
import importlib.metadata as m
assert m.version("python-openstackclient") == "$OSC_VERSION"
assert m.version("python-troveclient") == "$TROVECLIENT_VERSION"
EOF
}

if ! pinned; then
    echo "== creating $venv with python-openstackclient $OSC_VERSION, python-troveclient $TROVECLIENT_VERSION"
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv" || {
            echo "cannot create a venv with $python (on Debian/Ubuntu: apt-get install python3-venv)" >&2
            exit 2
        }
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "python-openstackclient==$OSC_VERSION" "python-troveclient==$TROVECLIENT_VERSION"
    pinned || { echo "the venv at $venv does not hold the pinned clients" >&2; exit 2; }
fi

echo "== real-client test ($("$venv/bin/openstack" --version 2>&1), troved: $troved)"
rc=0
"$venv/bin/python" tests/clients/test_cli.py --troved "$troved" --openstack "$venv/bin/openstack" || rc=1

# With a real Keystone (TROVED_TEST_KEYSTONE: a venv's python, tests/keystone/install.sh):
# password authentication from a clouds.yaml, troved found in Keystone's catalog.
if [ -n "${TROVED_TEST_KEYSTONE:-}" ]; then
    echo "== real-client test with Keystone ($TROVED_TEST_KEYSTONE)"
    "$venv/bin/python" tests/clients/test_cli_keystone.py --troved "$troved" \
        --openstack "$venv/bin/openstack" --keystone-python "$TROVED_TEST_KEYSTONE" || rc=1
else
    echo "SKIPPED the Keystone CLI test: TROVED_TEST_KEYSTONE not set (tests/keystone/install.sh)"
fi
exit $rc

#!/usr/bin/env bash
# Property-based API tests: schemathesis against the OpenAPI document the server serves
# at /openapi.json (docs/api.md, "OpenAPI").
#
# Usage: tests/schemathesis/run.sh [path/to/troved]   (default: target/debug/troved)
# Builds nothing. Needs python3 with venv; installs schemathesis into
# $SCHEMATHESIS_VENV (default: target/schemathesis-venv) on first use.
# SCHEMATHESIS_SEED and SCHEMATHESIS_MAX_EXAMPLES override the fixed seed and the
# examples per operation; reports (JUnit) go to $SCHEMATHESIS_REPORTS
# (default: target/schemathesis-report). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

TROVED="${1:-target/debug/troved}"
SCHEMATHESIS_VERSION="4.32.5"
VENV="${SCHEMATHESIS_VENV:-target/schemathesis-venv}"
SEED="${SCHEMATHESIS_SEED:-20240601}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
CONFIG="tests/schemathesis/schemathesis.toml"

if [[ ! -x "$TROVED" ]]; then
    echo "run.sh: $TROVED not found or not executable (cargo build first)" >&2
    exit 2
fi

if [[ ! -x "$VENV/bin/schemathesis" ]] \
    || [[ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" != *"$SCHEMATHESIS_VERSION"* ]]; then
    echo "== installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

WORK="$(mktemp -d)"
PID=""
cleanup() {
    if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# A free loopback port; a race with another process is caught below (troved exits).
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"

"$TROVED" serve --provider sim --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --sim-latency-ms 0 \
    >"$WORK/troved.log" 2>&1 &
PID=$!

ready() {
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "$BASE/readyz" 2>/dev/null
}
for attempt in $(seq 1 200); do
    if ready; then
        break
    fi
    if ! kill -0 "$PID" 2>/dev/null || [[ $attempt -eq 200 ]]; then
        echo "run.sh: troved did not start:" >&2
        cat "$WORK/troved.log" >&2
        exit 1
    fi
    sleep 0.1
done

# Hypothesis keeps its caches in ./.hypothesis unless told otherwise.
export HYPOTHESIS_STORAGE_DIRECTORY="$WORK/hypothesis"

REPORTS="${SCHEMATHESIS_REPORTS:-target/schemathesis-report}"
mkdir -p "$REPORTS"

st() {
    "$VENV/bin/schemathesis" --config-file "$CONFIG" run "$BASE/openapi.json" \
        --seed "$SEED" \
        --max-examples "$MAX_EXAMPLES" \
        --workers 1 \
        --generation-database none \
        --no-color \
        "$@"
}

status=0
echo "== schemathesis as a member of p1 (every operation)"
st --header "X-Auth-Token: alice:p1" \
    --report junit --report-junit-path "$REPORTS/member.xml" || status=1

echo "== schemathesis as admin of p1 (reads: admin views and the mgmt endpoints)"
st --header "X-Auth-Token: admin:p1" --include-method GET \
    --report junit --report-junit-path "$REPORTS/admin.xml" || status=1

# A panic in a background task does not show in any answer.
if ! kill -0 "$PID" 2>/dev/null; then
    echo "run.sh: troved died during the run" >&2
    status=1
elif grep -q "panicked" "$WORK/troved.log"; then
    echo "run.sh: troved panicked during the run" >&2
    status=1
fi

if [[ $status -ne 0 ]]; then
    echo "== troved log (last 50 lines)"
    tail -n 50 "$WORK/troved.log"
fi
exit $status

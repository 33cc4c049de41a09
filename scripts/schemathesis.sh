#!/usr/bin/env bash
# API robustness: Schemathesis against the OpenAPI document of a running `cls serve`.
#
# Builds `cls` (debug), starts `cls emulator` and `cls serve --port 0` over a fresh data folder,
# makes an API key with `cls admin create-api-key`, seeds one project and one configuration
# through the API (so generated ids can hit real rows), then runs Schemathesis from PyPI (pinned,
# in a venv) against /api/openapi.json with the checks `not_a_server_error`,
# `status_code_conformance`, `content_type_conformance` and `response_schema_conformance`.
# Exits non-zero on any finding.
#
#   scripts/schemathesis.sh                   # CI: bounded examples, about two minutes
#   CLS_SCHEMATHESIS_EXAMPLES=200 scripts/schemathesis.sh
#
# Environment: CLS_SCHEMATHESIS_EXAMPLES (examples per operation, default 100),
# CLS_SCHEMATHESIS_VENV (where the venv lives, default target/schemathesis-venv),
# CLS_SCHEMATHESIS_REPORT (where the JUnit report goes, default target/schemathesis-report).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
EXAMPLES=${CLS_SCHEMATHESIS_EXAMPLES:-100}
VENV=${CLS_SCHEMATHESIS_VENV:-target/schemathesis-venv}
REPORT=${CLS_SCHEMATHESIS_REPORT:-target/schemathesis-report}

if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
VENV=$(cd "$VENV" && pwd)

cargo build --quiet -p cls
CLS=$PWD/target/debug/cls

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

"$CLS" emulator --port 0 --customers 20 --rate-limits off >"$WORK/emulator.out" 2>"$WORK/emulator.out.err" &
PIDS+=($!)
EMULATOR=$(first_line_after "$WORK/emulator.out" "Stripe API emulator listening on ")

DATA=$WORK/data
TOKEN=$(CLS_MASTER_KEY='' "$CLS" admin create-api-key --data-dir "$DATA" --name schemathesis | tail -n 1)

# The rate limit is raised so that Schemathesis exercises the routes, not the limiter
# (429 is in the document for every route, and the limiter has its own tests).
env -u CLS_MASTER_KEY -u CLS_STATE_URL "$CLS" serve --port 0 --data-dir "$DATA" \
    --stripe-api-base "$EMULATOR" --api-requests-per-minute 1000000 --grace-seconds 5 \
    >"$WORK/serve.out" 2>"$WORK/serve.out.err" &
PIDS+=($!)
BASE=$(first_line_after "$WORK/serve.out" "listening on ")

api() {
    curl -sS --fail-with-body -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" "$@"
}
api -X POST "$BASE/api/projects" \
    -d "{\"name\": \"warehouse\", \"database_url\": \"sqlite://$WORK/warehouse.db\"}" >/dev/null
api -X POST "$BASE/api/configurations" \
    -d '{"name": "stripe test", "project_id": 1, "stripe_api_key": "rk_test_cls_emulator", "data_types": ["customers"]}' >/dev/null
api -X POST "$BASE/api/configurations/1/schedules" -d '{"cadence": "daily", "mode": "incremental"}' >/dev/null
api -X POST "$BASE/api/configurations/1/sync" -d '{"mode": "full"}' >/dev/null

# Schemathesis runs from the temp folder (it keeps a `.schemathesis` cache where it runs).
REPORT=$(mkdir -p "$REPORT" && cd "$REPORT" && pwd)
schemathesis() {
    (cd "$WORK" && "$VENV/bin/schemathesis" run "$BASE/api/openapi.json" \
        --header "Authorization: Bearer $TOKEN" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --max-examples "$EXAMPLES" \
        --seed 1 \
        --workers 2 \
        --request-timeout 30 \
        --suppress-health-check too_slow,filter_too_much \
        --report junit --report-dir "$REPORT" \
        "$@")
}

# Revoking keys goes last and alone: generated ids soon hit the script's own key, and every
# request after that would only test the 401.
status=0
schemathesis --exclude-operation-id revoke_api_key || status=$?
schemathesis --include-operation-id revoke_api_key || status=$?

# Whatever Schemathesis found, a server that logged a panic is a finding too.
if grep -q "panicked" "$WORK/serve.out.err"; then
    echo "cls serve panicked during the run:" >&2
    grep -A5 "panicked" "$WORK/serve.out.err" >&2
    status=1
fi
exit "$status"

#!/usr/bin/env bash
# Load soak of `cls serve`: many configurations syncing on tight schedules against several
# emulators while a second process (`oha`) loads the REST API at a fixed rate. Not run by CI
# (it takes minutes and wants a quiet machine); anyone can run it:
#
#   cargo install oha --locked          # once
#   scripts/soak.sh                     # 5 minutes, PostgreSQL state, 20 configurations
#   CLS_SOAK_MINUTES=30 CLS_SOAK_STATE=sqlite scripts/soak.sh
#
# It samples the server's RSS, open file descriptors (/proc/PID/fd), threads and PostgreSQL
# connections (state and destination databases) every CLS_SOAK_SAMPLE_SECONDS, then prints
# the API's p50/p95/p99 latency and each resource's value after warm-up, at the end and at its
# peak. It fails (exit 1) when p99 is 100 ms or more, any request failed, the server did not
# stop cleanly, or a resource ended more than 10% (plus a small absolute slack for counts:
# 4 fds, 2 threads, 2 connections) above its value after warm-up.
#
# Environment (defaults): CLS_SOAK_MINUTES (5), CLS_SOAK_CONFIGURATIONS (20),
# CLS_SOAK_EMULATORS (3), CLS_SOAK_CRON (`*/10 * * * * *`, every 10 s), CLS_SOAK_RATE (API
# requests per second, 100), CLS_SOAK_STATE (postgres or sqlite), CLS_SOAK_WORKERS (4),
# CLS_SOAK_DATABASE_URL (postgres://postgres@127.0.0.1:5432/postgres: where the scratch state
# and destination databases are created and dropped), CLS_SOAK_PROFILE (release or debug),
# CLS_SOAK_SAMPLE_SECONDS (5).
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${CLS_SOAK_MINUTES:-5}
CONFIGS=${CLS_SOAK_CONFIGURATIONS:-20}
EMULATORS=${CLS_SOAK_EMULATORS:-3}
CRON=${CLS_SOAK_CRON:-*/10 * * * * *}
RATE=${CLS_SOAK_RATE:-100}
STATE=${CLS_SOAK_STATE:-postgres}
WORKERS=${CLS_SOAK_WORKERS:-4}
PG=${CLS_SOAK_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PROFILE=${CLS_SOAK_PROFILE:-release}
SAMPLE=${CLS_SOAK_SAMPLE_SECONDS:-5}

command -v oha >/dev/null || { echo "oha is not installed: cargo install oha --locked" >&2; exit 2; }
command -v psql >/dev/null || { echo "psql is needed (PostgreSQL client)" >&2; exit 2; }

if [ "$PROFILE" = release ]; then
    cargo build --quiet --release -p cls
else
    cargo build --quiet -p cls
fi
CLS=${CARGO_TARGET_DIR:-$PWD/target}/$PROFILE/cls

WORK=$(mktemp -d)
SUFFIX=$$
STATE_DB=cls_soak_state_$SUFFIX
DEST_DB=cls_soak_dest_$SUFFIX
PIDS=()
SERVE_PID=
cleanup() {
    [ -n "$SERVE_PID" ] && kill -TERM "$SERVE_PID" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $SERVE_PID "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    for db in "$STATE_DB" "$DEST_DB"; do
        psql -q "$PG" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# A database URL on the same server as $PG, naming database $1.
db_url() {
    python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$PG" "$1"
}

psql -q "$PG" -c "CREATE DATABASE $DEST_DB" >/dev/null
DEST_URL=$(db_url "$DEST_DB")
if [ "$STATE" = postgres ]; then
    psql -q "$PG" -c "CREATE DATABASE $STATE_DB" >/dev/null
    export CLS_STATE_URL=$(db_url "$STATE_DB")
else
    unset CLS_STATE_URL
fi
CLS_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
export CLS_MASTER_KEY
DATA=$WORK/data

EMULATOR_URLS=()
for i in $(seq 1 "$EMULATORS"); do
    "$CLS" emulator --port 0 --seed "$i" --customers 30 --latency-ms 20 \
        >"$WORK/emulator$i.out" 2>"$WORK/emulator$i.out.err" &
    PIDS+=($!)
    EMULATOR_URLS+=("$(first_line_after "$WORK/emulator$i.out" "Stripe API emulator listening on ")")
done

TOKEN=$("$CLS" admin create-api-key --data-dir "$DATA" --name soak | tail -n 1)
"$CLS" serve --port 0 --data-dir "$DATA" --workers "$WORKERS" --grace-seconds 20 \
    --api-requests-per-minute 100000000 >"$WORK/serve.out" 2>"$WORK/serve.out.err" &
SERVE_PID=$!
BASE=$(first_line_after "$WORK/serve.out" "listening on ")
API=$BASE/api

api() {
    curl -sS --fail-with-body -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" "$@"
}
id_of() { python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["id"])'; }

for i in $(seq 1 "$CONFIGS"); do
    emulator=${EMULATOR_URLS[$(((i - 1) % EMULATORS))]}
    project=$(api -X POST "$API/projects" \
        -d "{\"name\": \"soak $i\", \"database_url\": \"$DEST_URL\", \"schema\": \"soak_$i\"}" | id_of)
    configuration=$(api -X POST "$API/configurations" -d "{\"name\": \"soak $i\", \"project_id\": $project,
        \"stripe_api_key\": \"rk_test_cls_emulator\", \"stripe_api_base\": \"$emulator\",
        \"data_types\": [\"customers\", \"products\", \"prices\", \"invoices\", \"subscriptions\"]}" | id_of)
    api -X POST "$API/configurations/$configuration/schedules" \
        -d "{\"cadence\": {\"cron\": \"$CRON\"}, \"mode\": \"incremental\"}" >/dev/null
done
echo "cls serve (pid $SERVE_PID, $PROFILE, $STATE state) at $BASE: $CONFIGS configurations on" \
    "$EMULATORS emulators, schedules \`$CRON\`; API load $RATE req/s for $MINUTES min"

# The first scheduled run exists before the load starts (`/api/runs/1` is one of its routes).
for _ in $(seq 1 600); do
    api "$API/runs/1" >/dev/null 2>&1 && break
    sleep 0.1
done

# The second process: oha at a fixed rate over a mix of GET routes (ids that exist).
{
    echo "$API/projects"
    echo "$API/projects?page=2&limit=5"
    echo "$API/configurations"
    echo "$API/projects/1"
    echo "$API/configurations/1"
    echo "$API/configurations/2/runs"
    echo "$API/configurations/3/schedules"
    echo "$API/schedules/1"
    echo "$API/api-keys"
    echo "$API/runs/1"
} >"$WORK/urls.txt"
oha --no-tui --output-format json --latency-correction --wait-ongoing-requests-after-deadline \
    -z "${MINUTES}m" -q "$RATE" -c 8 \
    -H "Authorization: Bearer $TOKEN" \
    --urls-from-file "$WORK/urls.txt" >"$WORK/oha.json" 2>"$WORK/oha.err" &
OHA_PID=$!

# The sampler: one CSV line per sample while oha runs.
echo "seconds,rss_kib,fds,threads,pg_connections,runs" >"$WORK/samples.csv"
start=$(date +%s)
while kill -0 "$OHA_PID" 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVE_PID/status")
    threads=$(awk '/^Threads:/ {print $2}' "/proc/$SERVE_PID/status")
    fds=$(find "/proc/$SERVE_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
    conns=$(psql -tAq "$PG" -c "SELECT count(*) FROM pg_stat_activity WHERE datname IN ('$STATE_DB', '$DEST_DB')")
    runs=$(curl -s "$BASE/metrics" | awk '/^cls_sync_runs_total/ {n += $NF} END {print n + 0}')
    echo "$(($(date +%s) - start)),$rss,$fds,$threads,$conns,$runs" >>"$WORK/samples.csv"
    sleep "$SAMPLE"
done
oha_status=0
wait "$OHA_PID" || oha_status=$?

echo "runs by outcome:"
{ curl -s "$BASE/metrics" | grep '^cls_sync_runs_total' || echo none; } | sed 's/^/  /'
kill -TERM "$SERVE_PID"
serve_status=0
wait "$SERVE_PID" || serve_status=$?
SERVE_PID=

cp "$WORK/samples.csv" "$WORK/oha.json" "${CLS_SOAK_OUT:-target}/" 2>/dev/null || true
python3 - "$WORK/samples.csv" "$WORK/oha.json" "$oha_status" "$serve_status" "$WORK/serve.out.err" <<'EOF'
import csv, json, statistics, sys

samples_path, oha_path, oha_status, serve_status, log_path = sys.argv[1:]
rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(open(samples_path))]
failed = []

oha = json.load(open(oha_path))
pct = oha["latencyPercentiles"]
summary = oha["summary"]
codes = oha.get("statusCodeDistribution", {})
errors = oha.get("errorDistribution", {})
ms = lambda s: f"{s * 1000:.1f} ms"
total = sum(codes.values())
print(f"API: {total} requests, {summary['requestsPerSec']:.1f}/s, statuses {codes}, errors {errors or 'none'}")
print(f"API latency: p50 {ms(pct['p50'])}  p95 {ms(pct['p95'])}  p99 {ms(pct['p99'])}  max {ms(summary['slowest'])}")
if pct["p99"] >= 0.1:
    failed.append(f"p99 {ms(pct['p99'])} is not under 100 ms")
if errors or any(not c.startswith("2") for c in codes):
    failed.append("some API requests failed")
if int(oha_status) != 0:
    failed.append(f"oha exited with {oha_status}")
if int(serve_status) != 0:
    failed.append(f"cls serve exited with {serve_status} on SIGTERM")

# Warm-up: the first fifth of the soak (at least one minute when the soak allows).
end_t = rows[-1]["seconds"]
warm = min(max(60.0, end_t / 5), end_t / 2)
after = [r for r in rows if r["seconds"] >= warm]
runs = rows[-1]["runs"] - after[0]["runs"]
print(f"runs finished: {int(rows[-1]['runs'])} in all, {int(runs)} after warm-up "
      f"({runs / max(end_t - after[0]['seconds'], 1) * 60:.0f}/min)")
slack = {"rss_kib": 0, "fds": 4, "threads": 2, "pg_connections": 2}
print(f"resources (after warm-up at {after[0]['seconds']:.0f} s / end / peak; {len(rows)} samples):")
for name, extra in slack.items():
    base = statistics.median(r[name] for r in after[:3])
    end = statistics.median(r[name] for r in rows[-3:])
    peak = max(r[name] for r in rows)
    ok = end <= base * 1.10 + extra
    unit = " KiB" if name == "rss_kib" else ""
    print(f"  {name:15} {base:>9.0f}{unit} / {end:>9.0f}{unit} / {peak:>9.0f}{unit}  {'ok' if ok else 'GREW'}")
    if not ok:
        failed.append(f"{name} grew from {base:.0f} to {end:.0f}")

log = open(log_path, errors="replace").read()
if "panicked" in log:
    failed.append("cls serve panicked (see its log)")
if failed:
    print("FAILED: " + "; ".join(failed))
    sys.exit(1)
print("passed: p99 under 100 ms, no request failed, no resource grew")
EOF

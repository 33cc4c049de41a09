#!/usr/bin/env bash
# Runs every fuzz target for the given seconds (default 20) and prints, per target, the
# executions, executions per second, corpus size and whether it found a crash.
#
#   fuzz/run.sh [seconds-per-target] [target…]
#
# cargo-fuzz needs nightly-only compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# accept them (no other toolchain is needed). Targets are built without a sanitizer (`-s none`:
# the workspace forbids `unsafe`, so what fuzzing looks for is panics, failed assertions,
# arithmetic overflow and hangs) and with debug assertions and overflow checks on (`-a`).
# The corpus grows in fuzz/corpus/<target> (seeded from fuzz/seeds/<target>); a crashing
# input is saved in fuzz/artifacts/<target>/ and the script exits 1 after running the rest.
#
# CLS_FUZZ_DEV=1 builds unoptimised (`--dev`): about 40% less compiling from a cold cache, for
# CI, at a tenth of the executions per second or less.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-20}"
shift || true
export RUSTC_BOOTSTRAP=1
profile=()
if [ "${CLS_FUZZ_DEV:-0}" = 1 ]; then
    profile=(--dev)
fi

if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build "${profile[@]}" -s none -a

failed=0
summary=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "seeds/$target"
    log="$(mktemp)"
    status=ok
    # -timeout: one input taking longer is a hang, reported like a crash.
    if ! cargo fuzz run "${profile[@]}" -s none -a "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        status=CRASH
        failed=1
        tail -n 40 "$log"
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    corpus=$(find "corpus/$target" -type f | wc -l)
    summary+=("$(printf '%-18s %6ss %12s execs %8s/s %7s inputs  %s' "$target" "$seconds" "$execs" "$rate" "$corpus" "$status")")
    rm -f "$log"
done

printf '%s\n' "${summary[@]}"
exit "$failed"

#!/usr/bin/env bash
# run-all.sh — every benchmark, one after the other, printing everything
# (`make bench`). Benchmarks print figures; none asserts anything, and a
# benchmark that fails to run is reported and the next one still runs.
#
#   tests/bench/run-all.sh [BUILD_DIR]      (default <repo>/build)
#
# Needs the local stack running (`make bench` runs `make deps` and the
# benchmarks that need the stack check it themselves) and Chromium. The
# puppeteer peers (tests/bench/peer) are installed with `npm ci` on first
# use. Knobs of each script pass through the environment (N, SPINS, COUNT …;
# see each script's header); PRODUCER_ARGS="N BULK" (default "20000 1000")
# goes to bench-producer.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:-${PARALLEL_BINARY_DIR:-$ROOT/build}}" && pwd)
BENCH=$ROOT/tests/bench
export PARALLEL_BINARY_DIR=$BUILD
failed=()

section() {
        echo
        echo "=== $1 — $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
}

# run NAME CMD…: runs one benchmark, notes a failure, carries on.
run() {
        local name=$1 rc=0; shift
        section "$name"
        "$@" || rc=$?
        [[ $rc -eq 0 ]] || { echo "($name: exit $rc)"; failed+=("$name"); }
}

echo "Parallel benchmarks: $(nproc) cores, $(uname -r), build $BUILD"
uptime

if [[ ! -d $BENCH/peer/node_modules ]]; then
        section "npm ci in tests/bench/peer"
        (cd "$BENCH/peer" && npm ci --no-audit --no-fund) ||
                echo "(npm ci failed: cdp_roundtrip and spin will fail)"
fi

run cdp_roundtrip "$BENCH/cdp_roundtrip.sh"
run spin "$BENCH/spin.sh" "$BUILD"
if [[ -x $BUILD/tests/bench-producer ]]; then
        # shellcheck disable=SC2086 # PRODUCER_ARGS is "N BULK"
        # shellcheck disable=SC2016 # $1 and $@ belong to the inner bash
        run producer bash -c 'cd "$1" && shift && ./tests/bench-producer "$@"' \
                _ "$BUILD" ${PRODUCER_ARGS:-20000 1000}
else
        section producer
        echo "(no $BUILD/tests/bench-producer: skipped)"
fi
run pipeline "$BENCH/pipeline.sh" "$BUILD"
run latency "$BENCH/latency.sh" "$BUILD"
run workers "$BENCH/workers.sh" "$BUILD"

echo
if [[ ${#failed[@]} -gt 0 ]]; then
        echo "run-all: did not complete: ${failed[*]}"
        exit 1
fi
echo "run-all: all benchmarks ran"

#!/usr/bin/env bash
# Runs every libFuzzer harness for a bounded time and prints, per harness,
# the executions and the coverage reached.
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS [HARNESS...]
#
# Seeds come from tests/fuzz/corpus/<target>/ (read only); what a run finds
# goes to BUILD_DIR/fuzz-corpus/<target>/, which later runs start from too.
# A crash, leak, sanitizer report or timeout fails the run (exit 1) and
# leaves the input as BUILD_DIR/fuzz-artifacts/<target>-crash-…; reproduce
# with BUILD_DIR/tests/fuzz/fuzz_<target> FILE.
set -uo pipefail
build=${1:?usage: run.sh BUILD_DIR SECONDS [HARNESS...]}
secs=${2:?usage: run.sh BUILD_DIR SECONDS [HARNESS...]}
shift 2
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "$build" && pwd)
if [ $# -gt 0 ]; then
        targets=("$@")
else
        targets=()
        for f in "$root"/tests/fuzz/fuzz_*.c; do
                n=$(basename "$f" .c)
                targets+=("${n#fuzz_}")
        done
fi
mkdir -p "$build/fuzz-artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
printf '%-8s %10s %8s %8s %6s  %s\n' harness execs exec/s cov ft result
for t in "${targets[@]}"; do
        bin="$build/tests/fuzz/fuzz_$t"
        seeds="$root/tests/fuzz/corpus/$t"
        work="$build/fuzz-corpus/$t"
        log="$build/fuzz-artifacts/$t.log"
        mkdir -p "$work" "$seeds"
        if [ ! -x "$bin" ]; then
                echo "fuzz: $bin missing (make fuzz-build)" >&2
                failed=1
                continue
        fi
        nice "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
                -max_len=65536 -print_final_stats=1 \
                -artifact_prefix="$build/fuzz-artifacts/$t-" \
                "$work" "$seeds" >"$log" 2>&1
        rc=$?
        execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" |
                grep -o '[0-9]*$')
        eps=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" |
              grep -o '[0-9]*$')
        last=$(grep -E '^#[0-9]+' "$log" | tail -1)
        cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
        ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
        if [ $rc -eq 0 ]; then res=ok; else res="FAILED (see $log)"; failed=1; fi
        printf '%-8s %10s %8s %8s %6s  %s\n' "$t" "${execs:-?}" "${eps:-?}" \
                "${cov:-?}" "${ft:-?}" "$res"
        if [ $rc -ne 0 ]; then
                grep -E 'ERROR|SUMMARY|Test unit written' "$log" | head -5
        fi
done
exit $failed

#!/usr/bin/env bash
# latency.sh — Mongo insert → spin start with the system idle: one producer,
# one node (WORKERS workers), nothing queued, signals inserted one at a time.
#
#   tests/bench/latency.sh [BUILD_DIR]
#       env: COUNT=200 noop signals spaced SPACING=0.05 s;
#            BROWSER=100 `bench` recipe signals (real browser spins on the
#            fixture page) spaced BROWSER_SPACING=0.2 s (0 skips them);
#            WORKERS=2
#
# Each signal is inserted by its own `parallel-ctl signal insert` (which
# stamps created_at just before its insert), so the real gap between two
# inserts is SPACING plus that command's run time (printed). Figures come
# from each SpinResult's millisecond timestamps, all from this machine's
# clock:
#   insert → start   started_at − created_at (started_at: the spin's first
#                    step starts; for noop, the moment the worker runs it)
#   insert → Kafka   queued_at − created_at (the signal message's Kafka
#                    timestamp, set when parallel-producer produced it)
#   Kafka → start    started_at − queued_at (fetch, schedule, claim, tab)
#   claim → start    started_at − claimed_at
# A few warm-up signals go first (outside the figures) so the node has its
# partitions and its browser. Prints numbers; asserts nothing.
BENCH_NAME=latency
. "$(dirname "$0")/common.sh" "$@"

COUNT=${COUNT:-200}
SPACING=${SPACING:-0.05}
BROWSER=${BROWSER:-100}
BROWSER_SPACING=${BROWSER_SPACING:-0.2}
WORKERS=${WORKERS:-2}

new_tag
mapfile -t C < <(cfg "$TAG")
"$CTL" "${C[@]}" topics create --partitions 4 >/dev/null
start_fixture
spawn "$WORK/producer.log" "$BUILD/parallel-producer" "${C[@]}" \
        -X producer.http.listen=127.0.0.1:0 -X log.level=info
for _ in $(seq 300); do
        grep -qs 'event=pipeline.started' "$WORK/producer.log" && break
        sleep 0.1
done
spawn "$WORK/node.log" "$BUILD/parallel-consumer" "${C[@]}" \
        -X node.id=bench-latency -X "consumer.group=$TAG" \
        -X http.listen=127.0.0.1:0 \
        -X "workers.min=$WORKERS" -X "workers.max=$WORKERS"

# measure LABEL N SPACING INSERT-ARGS…: N signals one at a time.
measure() {
        local label=$1 n=$2 gap=$3 i t0 t1; shift 3
        rm -f "$WORK/ready"
        "$RES" "${C[@]}" wait --count "$n" --timeout 300 --ready "$WORK/ready" \
                >"$WORK/res" 2>"$WORK/res.err" &
        local rpid=$!
        BENCH_PIDS+=("$rpid")
        wait_file "$WORK/ready" 30
        t0=$(date +%s%N)
        for ((i = 0; i < n; i++)); do
                "$CTL" "${C[@]}" signal insert "$@" >/dev/null 2>>"$WORK/insert.err"
                sleep "$gap"
        done
        t1=$(date +%s%N)
        wait "$rpid" || true
        local keep=() p
        for p in "${BENCH_PIDS[@]}"; do [[ $p == "$rpid" ]] || keep+=("$p"); done
        BENCH_PIDS=("${keep[@]}")
        local line; line=$(grep '^results' "$WORK/res" || true)
        [[ -n $label ]] || return 0
        if [[ -z $line ]]; then
                echo "latency: no result line for $label:" >&2
                cat "$WORK/res.err" >&2
                return
        fi
        local f; f() { field "$line" "$1"; }
        printf '%-16s %6s %6s %9s %14s %14s %14s %14s %12s   load %s\n' \
                "$label" "$(f n)" "$(f "done")" \
                "$(awk -v ns=$((t1 - t0)) -v n="$n" 'BEGIN { printf "%.0f", ns / n / 1e6 }')" \
                "$(f ins_start_p50) / $(f ins_start_p99)" \
                "$(f ins_kafka_p50) / $(f ins_kafka_p99)" \
                "$(f kafka_start_p50) / $(f kafka_start_p99)" \
                "$(f claim_ms_p50) / $(f claim_ms_p99)" \
                "$(f spin_ms_p50) / $(f spin_ms_p99)" "$(load)"
}

echo "# latency, system idle: 1 producer, 1 node x $WORKERS workers, signals inserted one at a time; $(nproc) cores, load $(load)"
measure "" 5 0.2 --priority 2 --recipe noop
if [[ $BROWSER != 0 ]]; then
        measure "" 3 0.3 --priority 2 --recipe bench --param "base=$BASE" \
                --param q=warm
fi
echo "# ms, p50 / p99; gap = mean time from one insert to the next"
printf '%-16s %6s %6s %9s %14s %14s %14s %14s %12s\n' recipe signals "done" \
        "gap ms" "insert→start" "insert→Kafka" "Kafka→start" "claim→start" \
        "spin"
measure noop "$COUNT" "$SPACING" --priority 2 --recipe noop
if [[ $BROWSER != 0 ]]; then
        measure "bench (browser)" "$BROWSER" "$BROWSER_SPACING" --priority 2 \
                --recipe bench --param "base=$BASE" --param q=lat
fi

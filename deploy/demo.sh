#!/usr/bin/env bash
# The demo: the whole system on this machine. Starts the local stack (if not
# running), a fixture web page, one producer and two consumer nodes (each
# launching its own Chromium), inserts a few thousand signals at mixed
# priorities, shows live progress, prints a per-priority summary read from
# the results topic, and stops everything it started.
#
#   deploy/demo.sh [BUILD_DIR]      (make demo)
#
# Knobs (environment): DEMO_NOOP (per priority, default 600), DEMO_BROWSER
# (per priority, default 40), DEMO_WORKERS (per node, default 2),
# DEMO_TIMEOUT (seconds to wait for completion, default 300),
# DEMO_SCREENSHOT (a .png path: the cluster page of `parallel-ctl status
# --http`, taken in headless Chromium when half the signals are final).
# `parallel-ctl status` is captured at that moment too and printed at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
stack="$root/deploy/dev/stack"
ctl="$build/parallel-ctl"
noop=${DEMO_NOOP:-600}
browser=${DEMO_BROWSER:-40}
workers=${DEMO_WORKERS:-2}
deadline=${DEMO_TIMEOUT:-300}
run=$(mktemp -d /tmp/parallel-demo.XXXXXX)
pids=()
stack_started=0

cfg=()
cleanup() {
        local rc=$? p left
        # Stop the processes first (TERM, then KILL after a grace), and only
        # then delete their topics: a node whose topics vanish under it can
        # hang in librdkafka's destroy.
        for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
        for _ in $(seq 60); do
                left=0
                for p in "${pids[@]}"; do
                        kill -0 "$p" 2>/dev/null && left=1
                done
                [ "$left" = 0 ] && break
                sleep 1
        done
        for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
        for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
        if [ ${#cfg[@]} -gt 0 ]; then
                "$ctl" "${cfg[@]}" topics delete --yes >/dev/null 2>&1 || true
        fi
        if [ "$stack_started" = 1 ]; then "$stack" down >/dev/null || true; fi
        if [ $rc -ne 0 ]; then
                echo "demo: failed (exit $rc); logs kept in $run" >&2
        else
                rm -rf "$run"
        fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$stack" status >/dev/null 2>&1 || stack_started=1
"$stack" up

# A private namespace so the demo's counts are its own.
tag="demo$(date +%s)"
cfg=(-X "topic.prefix=$tag" -X "mongo.collection=signals_$tag" -X "consumer.group=$tag"
     -X "recipes.dir=$root/tests/fixtures/recipes" -X log.level=warn)

"$ctl" "${cfg[@]}" topics create --partitions 4 >/dev/null
"$build/tests/fixture_serve" "$root/tests/fixtures/pages" \
        "$run/port" >"$run/fixture.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -s "$run/port" ] && break; sleep 0.1; done
base="http://127.0.0.1:$(cat "$run/port")"

"$build/parallel-producer" "${cfg[@]}" -X producer.http.listen=127.0.0.1:0 \
        >"$run/producer.log" 2>&1 &
pids+=($!)
# roundrobin: each node holds partitions of every priority, so the table
# below shows priority across the cluster, not per node (the default
# cooperative-sticky assignment can hand one node all of p1 and p2).
for n in a b; do
        "$build/parallel-consumer" "${cfg[@]}" -X "node.id=node-$n" \
                -X consumer.assignment=roundrobin \
                -X http.listen=127.0.0.1:0 -X "workers.min=$workers" \
                -X "workers.max=$workers" >"$run/consumer-$n.log" 2>&1 &
        pids+=($!)
done

shot=${DEMO_SCREENSHOT:-}
if [ -n "$shot" ]; then
        page_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        "$ctl" "${cfg[@]}" status --http "127.0.0.1:$page_port" \
                >"$run/status-http.log" 2>&1 &
        pids+=($!)
fi
captured=0

start_ms=$(($(date +%s%N) / 1000000))
total=0
for p in 1 2 3 4; do
        "$ctl" "${cfg[@]}" signal insert --priority $p --recipe noop \
                --count "$noop" >/dev/null
        "$ctl" "${cfg[@]}" signal insert --priority $p --recipe bench \
                --param "base=$base" --param "q=p$p" --count "$browser" \
                >/dev/null
        total=$((total + noop + browser))
done
echo "demo: inserted $total signals ($noop noop + $browser browser spins per priority 1..4)"

t0=$(date +%s)
while :; do
        status=$("$ctl" "${cfg[@]}" signal status 2>/dev/null || true)
        count() { awk -v k="$1" '$1 == k { print $2 }' <<<"$status"; }
        done_n=$(count done); failed=$(count failed); dead=$(count dead)
        expired=$(count expired); rejected=$(count rejected)
        claimed=$(count claimed); pending=$(count pending)
        final=$(( ${done_n:-0} + ${failed:-0} + ${dead:-0} + ${expired:-0} + ${rejected:-0} ))
        el=$(( $(date +%s) - t0 ))
        printf '\rdemo: %4ds  done %5d  failed %3d  dead %3d  running %3d  pending %5d  / %d ' \
                "$el" "${done_n:-0}" "${failed:-0}" "${dead:-0}" "${claimed:-0}" \
                "${pending:-0}" "$total"
        # Half way: the cluster as parallel-ctl status sees it, at work.
        if [ "$captured" = 0 ] && [ $((final * 2)) -ge "$total" ]; then
                captured=1
                "$ctl" "${cfg[@]}" status >"$run/status.txt" 2>&1 || true
                if [ -n "$shot" ]; then
                        chromium --headless --no-sandbox --disable-gpu \
                                --user-data-dir="$run/shot-profile" \
                                --window-size=1280,1500 \
                                --virtual-time-budget=6000 \
                                --screenshot="$shot" \
                                "http://127.0.0.1:$page_port/" \
                                >"$run/shot.log" 2>&1 || true
                fi
        fi
        [ "$final" -ge "$total" ] && break
        if [ "$el" -ge "$deadline" ]; then
                echo; echo "demo: not finished after ${deadline}s" >&2
                exit 1
        fi
        sleep 1
done
echo
echo
"$ctl" "${cfg[@]}" report --since-ms "$start_ms"
echo
if [ -s "$run/status.txt" ]; then
        echo "the cluster half way through (parallel-ctl status):"
        echo
        cat "$run/status.txt"
        echo
fi
[ -z "$shot" ] || echo "demo: the cluster page half way through: $shot"
echo "demo: every signal reached a final state; stopping what the demo started"

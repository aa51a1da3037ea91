#!/usr/bin/env bash
# workers.sh — real browser spins through the whole system: one node with
# workers.min = workers.max = 1, 2, 4, 8 running the five-step `bench`
# recipe (tests/fixtures/recipes/bench.json: navigate, waitForElement,
# change, click, extract) on the fixture page.
#
#   tests/bench/workers.sh [BUILD_DIR]
#       env: SPINS=200 signals per level, LEVELS="1 2 4 8"
#
# Per level: SPINS signals are inserted and moved into Kafka by
# parallel-producer while no node runs; then one node starts (same consumer
# group every level, so it resumes after the previous level's commits and
# sees only the new signals) and runs them all; then it is stopped (SIGTERM).
# Reported, from the results (bench-results) and /proc:
#   spins/s      (n − 1) / (last − first finished_at): steady state, node
#                and Chromium start-up excluded;
#   spin p50/p99 finished_at − started_at per spin (ms): tab acquire is
#                before started_at, so this is the five steps plus release;
#                steps = sum of the steps' own duration_us (µs precision);
#   node MB      VmHWM (peak RSS) of the parallel-consumer process alone,
#                read just before it is stopped: Chromium EXCLUDED;
#   chrome MB    peak over the run (sampled every 0.5 s) of the PSS summed
#                over every descendant of the node (browser, renderers, GPU
#                and utility processes); PSS shares common pages between
#                processes instead of counting them once per renderer.
# Chromium runs with chrome.isolation=context (one context per worker in
# one browser, tab reused). Prints numbers; asserts nothing.
BENCH_NAME=workers
. "$(dirname "$0")/common.sh" "$@"

SPINS=${SPINS:-200}
LEVELS=${LEVELS:-"1 2 4 8"}

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

# sample ROOT OUT: peak PSS (kB) summed over ROOT's descendants, until ROOT
# exits or OUT.stop exists; written to OUT.
sample() {
        python3 - "$1" "$2" <<'EOF'
import os, sys, time
root, out = int(sys.argv[1]), sys.argv[2]
def descendants():
    kids = {}
    for p in os.listdir('/proc'):
        if p.isdigit():
            try:
                with open(f'/proc/{p}/stat') as f:
                    s = f.read()
                kids.setdefault(int(s[s.rindex(')') + 2:].split()[1]), []).append(int(p))
            except (OSError, ValueError):
                pass
    tree, todo = [], list(kids.get(root, []))
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(kids.get(p, []))
    return tree
def pss(p):
    try:
        with open(f'/proc/{p}/smaps_rollup') as f:
            for line in f:
                if line.startswith('Pss:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
peak = 0
while os.path.exists(f'/proc/{root}') and not os.path.exists(out + '.stop'):
    peak = max(peak, sum(pss(p) for p in descendants()))
    time.sleep(0.5)
with open(out, 'w') as f:
    f.write(f'{peak}\n')
EOF
}

echo "# real spins: bench.json (5 steps) on the fixture page, $SPINS spins per level, 1 node, chrome.isolation=context; $(nproc) cores, load $(load)"
printf '%-8s %6s %6s %9s %16s %18s %9s %10s\n' workers spins "done" spins/s \
        "spin p50/p99 ms" "steps p50/p99 ms" "node MB" "chrome MB"
base=0
for w in $LEVELS; do
        "$CTL" "${C[@]}" signal insert --priority 2 --recipe bench \
                --param "base=$BASE" --param "q=w$w" --count "$SPINS" >/dev/null
        base=$((base + SPINS))
        for _ in $(seq 300); do
                [[ $("$RES" "${C[@]}" count signals.p2) -ge $base ]] && break
                sleep 0.5
        done
        rm -f "$WORK/ready" "$WORK/mem" "$WORK/mem.stop"
        "$RES" "${C[@]}" wait --count "$SPINS" --timeout 600 \
                --ready "$WORK/ready" >"$WORK/res" 2>"$WORK/res.err" &
        rpid=$!
        BENCH_PIDS+=("$rpid")
        wait_file "$WORK/ready" 30
        spawn "$WORK/node-$w.log" "$BUILD/parallel-consumer" "${C[@]}" \
                -X node.id=bench-workers -X "consumer.group=$TAG" \
                -X http.listen=127.0.0.1:0 -X chrome.isolation=context \
                -X "workers.min=$w" -X "workers.max=$w"
        node=$SPAWNED
        sample "$node" "$WORK/mem" &
        spid=$!
        wait "$rpid" || true
        hwm=$(awk '/^VmHWM:/ { print int($2 / 1024) }' "/proc/$node/status" 2>/dev/null || echo 0)
        touch "$WORK/mem.stop"
        wait "$spid" || true
        keep=()
        for p in "${BENCH_PIDS[@]}"; do [[ $p == "$rpid" ]] || keep+=("$p"); done
        BENCH_PIDS=("${keep[@]}")
        forget "$node"
        line=$(grep '^results' "$WORK/res" || true)
        if [[ -z $line ]]; then
                echo "workers: no result line at $w workers:" >&2
                cat "$WORK/res.err" >&2
                continue
        fi
        f() { field "$line" "$1"; }
        printf '%-8s %6s %6s %9s %16s %18s %9s %10s   load %s\n' "$w" "$(f n)" \
                "$(f "done")" "$(f rate)" "$(f spin_ms_p50) / $(f spin_ms_p99)" \
                "$(awk -v a="$(f steps_us_p50)" -v b="$(f steps_us_p99)" \
                        'BEGIN { printf "%.1f / %.1f", a / 1000, b / 1000 }')" \
                "$hwm" "$(($(cat "$WORK/mem" 2>/dev/null || echo 0) / 1024))" "$(load)"
done

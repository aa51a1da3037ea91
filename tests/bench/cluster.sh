#!/usr/bin/env bash
# tests/bench/cluster.sh — figures from the namespace cluster
# (deploy/cluster/cluster): prints numbers, asserts nothing.
#
#   tests/bench/cluster.sh [BUILD_DIR] [faults] [scaling]   (make bench-cluster)
#
#   faults   runs tests/cluster/run.sh (every scenario) and prints its
#            figures: recovery per fault, duplicates, rebalance pauses
#            (p50/p99 of the gaps in spin starts around each join/leave)
#   scaling  for 1, 2, 3 nodes: a backlog of BENCH_NOOP noop and
#            BENCH_BROWSER browser signals drained by that many nodes
#            (median of BENCH_RUNS runs), spins/s; and the CPU-seconds per
#            1,000 noop signals of each node, broker, the stand-in and the
#            active producer (from /proc/<pid>/stat), which is what decides
#            scaling on real VMs
# Both by default. Needs root.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build
parts=()
for a in "$@"; do
        case $a in
        faults | scaling) parts+=("$a") ;;
        *) build=$(cd "$a" && pwd) ;;
        esac
done
[ ${#parts[@]} -gt 0 ] || parts=(faults scaling)
NOOP=${BENCH_NOOP:-1500}
BROWSER=${BENCH_BROWSER:-60}
RUNS=${BENCH_RUNS:-3}
C=$root/deploy/cluster/cluster
W=$(mktemp -d /tmp/parallel-bench-cluster.XXXXXX)

pct() { # P < numbers: the P-th percentile (nearest rank)
        sort -n | awk -v p="$1" '{ a[NR] = $1 } END {
                if (NR == 0) { print "-"; exit }
                i = int((p / 100) * NR + 0.999999); if (i < 1) i = 1
                print a[i] }'
}
median() { pct 50; }

faults() {
        echo "== faults (tests/cluster/run.sh: one run of every scenario)"
        "$root/tests/cluster/run.sh" "$build" | tee "$W/faults.log" |
                grep -E '^(figure|ledger|FAIL|==)' || true
        echo
        echo "fault                  recovery                         duplicates  late results"
        awk '/^figure:/ {
                delete f
                for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
                s = f["scenario"]; r = "-"
                if (s == "broker_kill") r = "leaders moved in " f["leader_failover_ms"] " ms; start gap " f["max_start_gap_ms"] " ms"
                if (s == "node_partition") r = "stranded claims done in " f["recovery_ms"] " ms"
                if (s == "producer_partition") r = "standby active in " f["takeover_ms"] " ms"
                if (s == "netem_50ms_1pct") r = f["spins_per_s"] " spins/s during the run"
                if (s == "rolling_restart") r = "start gaps " f["gaps_ms"] " ms"
                if (s == "scale_1_3_1") r = "start gaps " f["gaps_ms"] " ms"
                printf "%-22s %-32s %10s  %s\n", s, r, f["duplicates"], f["late_results"] }' \
                "$W/faults.log"
        grep -h '^figure: scenario=\(rolling_restart\|scale_1_3_1\)' "$W/faults.log" |
                sed 's/.*gaps_ms=\([^ ]*\).*/\1/' | tr ',' '\n' | grep -E '^[0-9]+$' \
                >"$W/gaps" || true
        echo "rebalance pause (largest gap in spin starts within 8 s of a join/leave, $(wc -l <"$W/gaps") events):" \
                "p50 $(median <"$W/gaps") ms, p99 $(pct 99 <"$W/gaps") ms"
}

cpu_ticks() { # HOST: utime+stime of its program (clock ticks)
        local pid
        pid=$("$C" pid "$1")
        [ -n "$pid" ] || { echo 0; return; }
        awk '{ print $14 + $15 }' "/proc/$pid/stat"
}

ledger_starts() { # TAG N → spins/s over first..last start
        "$C" exec ctl "$build/tests/cluster_ledger" \
                --mongo mongodb://10.77.0.20:27017 --run "$1" --expect "$2" \
                --wait 900 >/dev/null || true
        "$C" ctl -X log.level=error decode --topic results --from-beginning \
                --to-end --timeout-ms 30000 >"$W/results.jsonl" 2>/dev/null || true
        "$C" exec ctl "$build/tests/cluster_ledger" \
                --mongo mongodb://10.77.0.20:27017 --run "$1" --expect "$2" \
                --results "$W/results.jsonl" --starts "$W/starts" >&2 || true
        sort -n "$W/starts" | awk 'NR == 1 { a = $1 } { b = $1; n++ }
                END { if (b > a) printf "%.1f\n", n * 1000 / (b - a); else print 0 }'
}

# One drain: stop every node, insert the backlog, wait until the producer
# has published it, start N nodes, wait for the ledger. Prints spins/s.
drain() { # N KIND COUNT
        local n=$1 kind=$2 count=$3 tag h
        tag=bench$kind$n$RANDOM
        for h in c1 c2 c3; do "$C" stop "$h" >/dev/null 2>&1; done
        if [ "$kind" = noop ]; then
                "$C" ctl -X log.level=warn signal insert --priority 2 \
                        --recipe noop --param "run=$tag" --count "$count" >/dev/null
        else
                "$C" ctl -X log.level=warn signal insert --priority 3 \
                        --recipe bench --param "run=$tag" \
                        --param base=http://10.77.0.30:8080 --param q=x \
                        --count "$count" >/dev/null
        fi
        sleep 5
        for ((i = 1; i <= n; i++)); do CLUSTER_NOWAIT=1 "$C" start "c$i" >/dev/null; done
        local t0=(); for h in k1 k2 k3 mongo p1 p2 c1 c2 c3; do t0+=("$(cpu_ticks "$h")"); done
        ledger_starts "$tag" "$count" >"$W/rate"
        local i=0 hz d
        hz=$(getconf CLK_TCK)
        for h in k1 k2 k3 mongo p1 p2 c1 c2 c3; do
                d=$(($(cpu_ticks "$h") - ${t0[$i]}))
                [ "$kind" = noop ] && [ "$d" -gt 0 ] &&
                        echo "$n $h $(awk -v d="$d" -v hz="$hz" -v c="$count" \
                                'BEGIN { printf "%.2f", d / hz * 1000 / c }')" >>"$W/cpu"
                i=$((i + 1))
        done
        cat "$W/rate"
}

scaling() {
        echo "== scaling: backlog drained by 1, 2, 3 nodes (${CLUSTER_WORKERS:-2} workers each), median of $RUNS"
        export CLUSTER_NAME=${CLUSTER_NAME:-pclb} CLUSTER_DIR=${CLUSTER_DIR:-$build/cluster-bench}
        export CLUSTER_BUILD=$build
        trap '"$C" down >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
        "$C" up --nodes 0
        : >"$W/cpu"
        printf '%-6s %-22s %-22s\n' nodes "noop spins/s" "browser spins/s"
        for n in 1 2 3; do
                local a=() b=() r
                for ((r = 0; r < RUNS; r++)); do
                        a+=("$(drain "$n" noop "$NOOP")")
                        b+=("$(drain "$n" browser "$BROWSER")")
                done
                printf '%-6s %-22s %-22s\n' "$n" \
                        "$(printf '%s\n' "${a[@]}" | median) (${a[*]})" \
                        "$(printf '%s\n' "${b[@]}" | median) (${b[*]})"
        done
        echo
        echo "CPU-seconds per 1,000 noop signals (median over runs), by process and node count:"
        printf '%-6s' nodes
        for h in k1 k2 k3 mongo p1 p2 c1 c2 c3; do printf '%8s' "$h"; done
        echo
        for n in 1 2 3; do
                printf '%-6s' "$n"
                for h in k1 k2 k3 mongo p1 p2 c1 c2 c3; do
                        printf '%8s' "$(awk -v n="$n" -v h="$h" '$1 == n && $2 == h { print $3 }' \
                                "$W/cpu" | median)"
                done
                echo
        done
        "$C" down >/dev/null 2>&1 || true
}

for p in "${parts[@]}"; do "$p"; done
rm -rf "$W"

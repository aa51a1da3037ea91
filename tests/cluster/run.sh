#!/usr/bin/env bash
# tests/cluster/run.sh — fault scenarios on the namespace cluster
# (deploy/cluster/cluster), each checked by a ledger: every signal inserted
# ends in exactly one terminal state on its document, written by the claim
# holder, with its outcome on the results topic (and the DLQ for dead and
# failed ones). Read from MongoDB and the topics by tests/tools/cluster_ledger,
# never from logs.
#
#   tests/cluster/run.sh [BUILD_DIR] [--short] [SCENARIO...]
#
# Scenarios (all by default, in this order; `make test-cluster`):
#   broker     SIGKILL the leader of signals.p2 partition 0 mid-run, restart it
#   partition  cut a node off (its switch port down) for longer than claim.lease
#              while it runs spins, then heal: its signals finish elsewhere,
#              nothing it writes afterwards overrides the other outcome
#   producer   cut the active producer off: the standby takes over within
#              the lease TTL; the old one delivers nothing after losing it
#   netem      50 ms latency and 1% loss on every link for a whole run
#   rolling    SIGTERM each node in turn under load and start it again:
#              zero spins run twice (asserted)
#   static     the same with static membership (consumer.static_membership):
#              no partition moves to another node, zero spins run twice
#   scale      1 node while 5,000 signals flow, scale out to 3, back to 1
# --short runs `broker` and `partition` with fewer signals (make test).
#
# Prints "figure: scenario=… k=v" lines (recovery times, gaps, duplicates)
# for tests/bench/cluster.sh; exits 1 if any ledger or assertion failed.
# Needs root (network namespaces). The cluster is its own (CLUSTER_NAME
# pclt, run dir BUILD_DIR/cluster-run), so an operator's cluster is safe.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build
short=0
scen=()
for a in "$@"; do
        case $a in
        --short) short=1 ;;
        broker | partition | producer | netem | rolling | static | scale) scen+=("$a") ;;
        *) [ -d "$a" ] && build=$(cd "$a" && pwd) || {
                echo "usage: $0 [BUILD_DIR] [--short] [SCENARIO...]" >&2
                exit 2
        } ;;
        esac
done
if [ ${#scen[@]} -eq 0 ]; then
        if [ $short = 1 ]; then scen=(broker partition)
        else scen=(broker partition producer netem rolling static scale); fi
fi

export CLUSTER_NAME=${CLUSTER_NAME:-pclt}
export CLUSTER_DIR=${CLUSTER_DIR:-$build/cluster-run}
export CLUSTER_BUILD=$build
LEASE_S=10
# Short leases and session timeouts so a partition outlasts them in seconds;
# a generous drain so rolling restarts never cut a spin short.
export CLUSTER_CONSUMER_X="claim.lease=${LEASE_S}s kafka.session.timeout.ms=10000
kafka.heartbeat.interval.ms=1000 shutdown.grace=30s metrics.interval=2s"
export CLUSTER_PRODUCER_X="producer.lease.ttl=10s"
C=$root/deploy/cluster/cluster
W=$CLUSTER_DIR.work
rm -rf "$W"
mkdir -p "$W"
fails=0
bg=()

cleanup() {
        local p
        for p in "${bg[@]}"; do kill "$p" 2>/dev/null || true; done
        "$C" down || true
}
trap cleanup EXIT
set -E # the ERR trap in functions and command substitutions too
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND (exit $?)" >&2' ERR

say() { printf '== %s %s\n' "$(date -u +%T)" "$*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
figure() { echo "figure: $*"; }
fail() {
        echo "FAIL: $*"
        fails=$((fails + 1))
}

insert() { # TAG N PRIORITY [insert args...]
        local tag=$1 n=$2 p=$3
        shift 3
        "$C" ctl -X log.level=warn signal insert --priority "$p" \
                --param "run=$tag" --count "$n" "$@" >/dev/null
}
noop() { insert "$1" "$2" "${3:-2}" --recipe noop; }
browser() {
        insert "$1" "$2" "${3:-3}" --recipe bench \
                --param base=http://10.77.0.30:8080 --param q=x
}

# Inserts BATCHES batches of N noop signals, PAUSE seconds apart, in the
# background (a steady flow for faults to land in).
feed() { # TAG BATCHES N PAUSE
        (for ((i = 0; i < $2; i++)); do
                noop "$1" "$3"
                sleep "$4"
        done) &
        bg+=($!)
}
wait_feed() {
        local p
        for p in "${bg[@]}"; do wait "$p" || fail "inserter $p failed"; done
        bg=()
}

metric() { # HOST NAME: a metric's value, read inside the host's namespace
        local port=9280 ip
        case $1 in p?) port=9281 ;; esac
        ip=$("$C" exec "$1" ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
        # awk reads to the end: exiting at the match would cut curl's
        # output short (exit 23 under pipefail once /metrics passes 64 KB)
        "$C" exec "$1" curl -s -m 3 "http://$ip:$port/metrics" 2>/dev/null |
                awk -v k="$2" '$1 == k && !f { print $2; f = 1 }'
}
done_count() { # HOST: done spins of a node
        metric "$1" 'parallel_spins_total{status="done"}'
}

# Reads the topics and checks the run's documents; sets LEDGER (its line).
# Files: $W/TAG.starts (started_at node), $W/TAG.winners.
ledger() { # TAG EXPECT [WAIT_S]
        local tag=$1 out rc=0
        "$C" exec ctl "$build/tests/cluster_ledger" \
                --mongo mongodb://10.77.0.20:27017 --run "$tag" \
                --expect "$2" --wait "${3:-300}" >/dev/null 2>&1 || true
        sleep 2 # results of a healed node may still be in flight
        # --to-end: everything written so far, however slow the first
        # fetch from three brokers (an idle timeout of 2 s missed the DLQ)
        "$C" ctl -X log.level=error decode --topic results --from-beginning \
                --to-end --timeout-ms 30000 >"$W/results.jsonl" 2>/dev/null || true
        "$C" ctl -X log.level=error decode --topic dlq --from-beginning \
                --to-end --timeout-ms 30000 >"$W/dlq.jsonl" 2>/dev/null || true
        out=$("$C" exec ctl "$build/tests/cluster_ledger" \
                --mongo mongodb://10.77.0.20:27017 --run "$tag" \
                --expect "$2" --results "$W/results.jsonl" \
                --dlq "$W/dlq.jsonl" --starts "$W/$tag.starts" \
                --winners "$W/$tag.winners" 2>&1) || rc=$?
        echo "$out"
        LEDGER=$(tail -n1 <<<"$out")
        [ $rc -eq 0 ] || fail "ledger of $tag"
}
lget() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$LEDGER"; }

# The longest pause in spin starts (cluster-wide) beginning within
# [T-2 s, T+WINDOW]: prints "gap_ms resumed_after_ms" (resumed = first start
# after the gap, minus T).
gap_around() { # TAG T_MS [WINDOW_MS]
        sort -n "$W/$1.starts" | awk -v t="$2" -v w="${3:-60000}" '
                NR > 1 && prev >= t - 2000 && prev <= t + w {
                        g = $1 - prev
                        if (g > best) { best = g; res = $1 - t }
                }
                { prev = $1 }
                END { printf "%d %d\n", best, res }'
}

# Spins started per second over the run (first to last start).
rate() { # TAG
        sort -n "$W/$1.starts" | awk 'NR == 1 { a = $1 } { b = $1; n++ }
                END { if (b > a) printf "%.1f\n", n * 1000 / (b - a); else print 0 }'
}

wait_isr() { # all partitions of every topic back to 3 in-sync replicas
        local t0=$SECONDS
        while [ $((SECONDS - t0)) -lt 120 ]; do
                if ! "$C" exec ctl kcat -b 10.77.0.11:9092,10.77.0.12:9092,10.77.0.13:9092 \
                        -m 10 -L 2>/dev/null | grep 'isrs:' | grep -vq 'isrs: [0-9],[0-9],[0-9]$'; then
                        return 0
                fi
                sleep 1
        done
        fail "in-sync replicas not back to 3 after 120s"
}

# ------------------------------------------------------------ scenarios

s_broker() {
        local tag=broker$RANDOM n=${1:-1200} k t gap
        say "broker: $n noop signals, SIGKILL the leader of signals.p2/0 mid-run"
        feed "$tag" $((n / 150)) 150 1
        sleep 4
        k=$("$C" leader parallel.signals.p2 0)
        t=$(now_ms)
        "$C" kill "$k" KILL
        # Recovery at the Kafka level: until no signals partition is led by
        # (or waiting for) the dead broker.
        local fo=-1 i
        for ((i = 0; i < 150; i++)); do
                if ! "$C" exec ctl kcat -b 10.77.0.11:9092,10.77.0.12:9092,10.77.0.13:9092 \
                        -m 5 -L -t parallel.signals.p2 2>/dev/null |
                        grep -Eq "leader (${k#k}|-1),"; then
                        fo=$(($(now_ms) - t))
                        break
                fi
                sleep 0.2
        done
        say "broker: killed $k; leaders moved after $fo ms; restarting it in 15 s"
        sleep 15
        "$C" start "$k"
        wait_feed
        ledger "$tag" "$n"
        wait_isr
        read -r gap res <<<"$(gap_around "$tag" "$t")"
        figure "scenario=broker_kill host=$k leader_failover_ms=$fo max_start_gap_ms=$gap duplicates=$(lget duplicates) late_results=$(lget late_results) signals=$n"
}

s_partition() {
        local tag=part$RANDOM n=${1:-300} b=${2:-12} t i busy rec
        say "partition: $b dwell spins (20 s each) + $n noop; cut c1 off for $((LEASE_S * 3)) s while it runs them"
        # Long spins that need no network: c1 keeps running them while cut
        # off, then tries to publish and write their outcomes after healing,
        # when other nodes have taken the signals over.
        insert "$tag" "$b" 4 --recipe dwell --param ms=20000
        feed "$tag" $((n / 50)) 50 1
        for ((i = 0; i < 120; i++)); do
                busy=$(metric c1 parallel_workers_busy)
                [ "${busy:-0}" != 0 ] && break
                sleep 0.5
        done
        sleep 2
        t=$(now_ms)
        "$C" partition c1
        say "partition: c1 cut off (busy workers: ${busy:-?})"
        sleep $((LEASE_S * 3))
        "$C" heal c1
        say "partition: c1 healed"
        wait_feed
        sleep 5
        ledger "$tag" $((n + b))
        # Claims stranded on c1 end as attempt >= 2 finished elsewhere.
        rec=$(awk -v t="$t" '$3 >= 2 && $4 != "c1" && $5 > t { k++; if ($5 - t > m) m = $5 - t }
                END { printf "%d %d", m, k }' "$W/$tag.winners")
        figure "scenario=node_partition stranded_done_elsewhere=${rec#* } recovery_ms=${rec% *} duplicates=$(lget duplicates) late_results=$(lget late_results) fence_violations=$(lget fence_violations) overridden=$(lget overridden) signals=$((n + b))"
}

s_producer() {
        local tag=prod$RANDOM n=${1:-600} act sb t ta=0 d1="" d2 a2 i
        for i in p1 p2; do
                [ "$(metric $i parallel_producer_active)" = 1 ] && act=$i
        done
        [ -n "${act:-}" ] || { fail "producer: no active producer"; return; }
        [ "$act" = p1 ] && sb=p2 || sb=p1
        say "producer: $n signals; cut the active producer $act off"
        feed "$tag" $((n / 100)) 100 1
        sleep 2
        t=$(now_ms)
        "$C" partition "$act"
        # Until both: the old one stepped down (its delivered count then is
        # what it may never exceed) and the standby took over.
        local td=0
        for ((i = 0; i < 300; i++)); do
                if [ -z "$d1" ] && [ "$(metric "$act" parallel_producer_active)" = 0 ]; then
                        td=$(($(now_ms) - t))
                        d1=$(metric "$act" parallel_producer_delivered_total)
                        say "producer: $act stepped down after $td ms (delivered $d1)"
                fi
                if [ "$ta" = 0 ] && [ "$(metric "$sb" parallel_producer_active)" = 1 ]; then
                        ta=$(($(now_ms) - t))
                fi
                [ -n "$d1" ] && [ "$ta" != 0 ] && break
                sleep 0.2
        done
        say "producer: $sb active after $ta ms"
        # The lease lapses at most TTL after the partition (it was renewed
        # within the last TTL/3); the standby notices on its next attempt
        # (every TTL/3), and our probe of its /metrics lags a little.
        [ "$ta" -gt 0 ] && [ "$ta" -le 13500 ] ||
                fail "producer: standby took ${ta} ms (lease TTL 10 s)"

        sleep 5
        "$C" heal "$act"
        wait_feed
        sleep 10
        d2=$(metric "$act" parallel_producer_delivered_total)
        a2=$(metric "$act" parallel_producer_active)
        [ -n "$d1" ] && [ "$d1" = "$d2" ] ||
                fail "producer: $act delivered ${d1:-?} → ${d2:-?} after losing the lease"
        [ "$a2" = 0 ] || fail "producer: $act active again ($a2) while $sb holds the lease"
        ledger "$tag" "$n"
        figure "scenario=producer_partition stepdown_ms=$td takeover_ms=$ta old_delivered_after_loss=$((${d2:-0} - ${d1:-0})) duplicates=$(lget duplicates) signals=$n"
}

s_netem() {
        local tag=netem$RANDOM n=${1:-400} b=${2:-20} t0 t1
        say "netem: 50 ms latency and 1% loss on every link; $n noop + $b browser"
        "$C" netem 50ms 1%
        # Evidence the links are slow: a TCP connect to the stand-in costs
        # one round trip (two crossings of the switch).
        local c0 rtt
        c0=$(now_ms)
        "$C" exec ctl bash -c ': </dev/tcp/10.77.0.20/27017'
        rtt=$(($(now_ms) - c0))
        t0=$(now_ms)
        browser "$tag" "$b"
        noop "$tag" "$n"
        ledger "$tag" $((n + b)) 400
        t1=$(now_ms)
        "$C" clear
        c0=$(now_ms)
        "$C" exec ctl bash -c ': </dev/tcp/10.77.0.20/27017'
        c0=$(($(now_ms) - c0))
        figure "scenario=netem_50ms_1pct connect_ms=$rtt connect_clear_ms=$c0 run_ms=$((t1 - t0)) spins_per_s=$(rate "$tag") duplicates=$(lget duplicates) signals=$((n + b))"
}

s_rolling() {
        local tag=roll$RANDOM n=${1:-900} b=${2:-30} h t gaps=""
        say "rolling: SIGTERM and restart c1, c2, c3 in turn under load"
        browser "$tag" "$b"
        feed "$tag" $((n / 100)) 100 2
        sleep 3
        local events=()
        for h in c1 c2 c3; do
                events+=("$(now_ms)")
                "$C" stop "$h"
                events+=("$(now_ms)")
                "$C" start "$h"
                sleep 4
        done
        wait_feed
        ledger "$tag" $((n + b))
        [ "$(lget duplicates)" = 0 ] || fail "rolling: $(lget duplicates) spins ran twice"
        for t in "${events[@]}"; do
                gaps="$gaps $(gap_around "$tag" "$t" 8000 | cut -d' ' -f1)"
        done
        figure "scenario=rolling_restart duplicates=$(lget duplicates) gaps_ms=$(tr ' ' , <<<"${gaps# }") signals=$((n + b))"
}

# Static membership (KIP-345): every node's node.id becomes its
# group.instance.id, so a node restarted within the session timeout gets its
# own partitions back and nobody else's assignment changes. The other nodes
# must log no assignment while one restarts, and no spin may run twice.
s_static() {
        local tag=stat$RANDOM n=${1:-900} h o before after moved=0
        local props="$CLUSTER_DIR/consumer.properties"
        say "static: static membership on, restart c1, c2, c3 in turn under load"
        sed -i 's/^consumer.static_membership=.*/consumer.static_membership=true/' "$props"
        for h in c1 c2 c3; do "$C" stop "$h"; "$C" start "$h"; done
        sleep 12 # the group settles with its static members
        feed "$tag" $((n / 100)) 100 2
        sleep 3
        for h in c1 c2 c3; do
                before=""
                for o in c1 c2 c3; do
                        [ "$o" = "$h" ] && continue
                        before="$before $(grep -c 'event=assigned' "$CLUSTER_DIR/logs/$o.log")"
                done
                "$C" stop "$h"
                "$C" start "$h"
                sleep 4
                after=""
                for o in c1 c2 c3; do
                        [ "$o" = "$h" ] && continue
                        after="$after $(grep -c 'event=assigned' "$CLUSTER_DIR/logs/$o.log")"
                done
                [ "$before" = "$after" ] || moved=$((moved + 1))
        done
        wait_feed
        ledger "$tag" "$n"
        sed -i 's/^consumer.static_membership=.*/consumer.static_membership=false/' "$props"
        for h in c1 c2 c3; do "$C" stop "$h"; "$C" start "$h"; done
        [ "$(lget duplicates)" = 0 ] || fail "static: $(lget duplicates) spins ran twice"
        [ "$moved" = 0 ] || fail "static: $moved restart(s) moved partitions to other nodes"
        figure "scenario=static_rolling_restart duplicates=$(lget duplicates) restarts_that_moved_partitions=$moved signals=$n"
}

s_scale() {
        local tag=scale$RANDOM n=${1:-5000} t gaps="" ev=()
        say "scale: 1 node, $n signals flowing, out to 3 nodes, back to 1"
        "$C" stop c3
        "$C" stop c2
        feed "$tag" $((n / 250)) 250 0.5
        sleep 10
        ev+=("$(now_ms)"); "$C" start c2; sleep 8
        ev+=("$(now_ms)"); "$C" start c3; sleep 12
        # Leave the tail to one node, not the bulk: scale in once 90% ran
        # (earlier scenarios are all finished, so open = this run's).
        local open i
        for ((i = 0; i < 600; i++)); do
                # A status call that fails (the stand-in busy) is asked again.
                open=$("$C" ctl -X log.level=error signal status 2>/dev/null |
                        awk '$1 == "pending" || $1 == "claimed" { o += $2 } END { print o + 0 }') ||
                        { sleep 1; continue; }
                [ "$open" -le $((n / 10)) ] && ! kill -0 "${bg[0]}" 2>/dev/null && break
                sleep 1
        done
        ev+=("$(now_ms)"); "$C" stop c3; sleep 8
        ev+=("$(now_ms)"); "$C" stop c2
        wait_feed
        ledger "$tag" "$n" 600
        for t in "${ev[@]}"; do
                gaps="$gaps $(gap_around "$tag" "$t" 8000 | cut -d' ' -f1)"
        done
        "$C" start c2
        "$C" start c3
        figure "scenario=scale_1_3_1 duplicates=$(lget duplicates) gaps_ms=$(tr ' ' , <<<"${gaps# }") spins_per_s=$(rate "$tag") signals=$n"
}

# ------------------------------------------------------------ main

t_all=$SECONDS
say "cluster up ($CLUSTER_NAME, run dir $CLUSTER_DIR)"
"$C" up
for s in "${scen[@]}"; do
        if [ $short = 1 ]; then
                case $s in
                broker) s_broker 300 ;;
                partition) s_partition 100 8 ;;
                *) "s_$s" ;;
                esac
        else
                "s_$s"
        fi
done
say "done in $((SECONDS - t_all)) s: ${#scen[@]} scenario(s), $fails failure(s)"
[ $fails -eq 0 ]

#!/usr/bin/env bash
# pipeline.sh — the pipeline ceiling: how many signals/s one and two
# parallel-consumer nodes get through with the built-in `noop` recipe (no
# browser), with claims on and off, against kcat reading the same topics.
#
#   tests/bench/pipeline.sh [BUILD_DIR]
#       env: N=20000 signals per round, PARTS=4 partitions per topic,
#            WORKERS=4 workers per node, TIMEOUT=600 s per run,
#            CLAIMS="true false" (which claim.enabled settings to run),
#            RUNS=3 (runs of each row; the medians are printed at the end),
#            NODE_OPTS="-X key=value …" (more options for every node),
#            NODE_CPU=C (each node in a CPU cgroup of its own capped at C
#            cores, as on a VM of C cores: one and two nodes then get the
#            same CPU per node, so "two ÷ one" measures what the shared
#            parts — broker, group, topics — let a second node add, not
#            how two nodes share this machine's cores),
#            WARMUP=0 (no uncounted claims-on run before the counted
#            ones; by default one warms the broker and the store up),
#            STORE_CPU=C (the private MongoDB stand-in in a CPU cgroup
#            capped at C cores, for its own measurements and the nodes'
#            runs alike: with NODE_CPU, the store then has the same CPU
#            whether bench-claims or the nodes drive it, as on a machine
#            of its own, and "÷ store" says whether the nodes keep it
#            busy rather than how they share two cores with it),
#            TIMELINE=1 (after each run, the results finished per 100 ms,
#            by node and by priority),
#            PROFILE=DIR (record each node with `perf record -g` into
#            DIR/<run>-<node>.data; the figures then carry perf's cost)
#
# Two rounds, each in its own namespace (topic.prefix / mongo.collection):
#   1. parallel-producer runs alone while N noop signals (N/4 per priority)
#      are inserted, until all N are in <prefix>.signals.p1..p4; it is then
#      stopped, so nothing but the nodes touches the stack while they run.
#   2. kcat reference: `kcat -C -b 127.0.0.1:9092 -t <topic> -o beginning
#      -e -q` on each of the four topics, one after the other; rate = N / the
#      summed wall times (best of two per topic). Its time is mostly fixed cost: -e exits only after
#      an empty fetch at the end of each partition (librdkafka's
#      fetch.wait.max.ms, 500 ms). So the same read with `-c <messages in
#      the topic>` instead of -e (exits on the last message) is timed too;
#      that is the ceiling reference that means something. Both include
#      kcat's process start (a few ms).
#   3. Runs, each with a fresh consumer.group so it reads the topics from the
#      beginning, RUNS times each: claims off, 1 node and 2 nodes, all on
#      one round's signals; claims on, 1 node and 2 nodes, each on a fresh
#      round (a claimed signal would only be skipped). The medians per row
#      and two nodes ÷ one are printed at the end.
#   4. The store's own limit: bench-claims claims and finishes N fresh
#      documents against the same MongoDB from WORKERS threads (a node's
#      pool), two ways: with the operations a node makes with claims on
#      (par_claim_acquire_batch + par_claim_finish_batch, batches of the
#      nodes' claim.batch: an updateMany, a find and a bulk of updates),
#      and one signal at a time (par_claim_acquire + par_claim_finish, two
#      findAndModify). First with WORKERS and 2×WORKERS threads, then again
#      just before each claims-on run from as many threads as its nodes
#      have workers (WORKERS for one node, 2×WORKERS for two: the same
#      pool size); each claims-on run is divided by the figures taken just
#      before it (÷store: the same operations; ÷single: one at a time).
#      MongoDB's CPU per signal is printed for each.
#      Each run's nodes start on empty topics of their own and get the
#      round's signals (bench-results copy, same partitions, keys and
#      headers) once every node holds its share of the partitions.
# Rate = (n − 1) / (last − first finished_at) over the run's N results, read
# by bench-results from <prefix>.results. wall = from the nodes' start to
# the last result: start-up, joining the group and the copy included.
# Prints numbers; asserts nothing.
BENCH_NAME=pipeline
. "$(dirname "$0")/common.sh" "$@"

N=$(( ${N:-20000} / 4 * 4 )) # N/4 per priority
PARTS=${PARTS:-4}
WORKERS=${WORKERS:-4}
TIMEOUT=${TIMEOUT:-600}
CLAIMS=${CLAIMS:-"true false"}
RUNS=${RUNS:-3}
KCAT=(kcat -C -b "${PARALLEL_KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}")

# best2 KCAT-ARGS…: runs kcat twice; prints the shorter wall time in ns.
best2() {
        local a b t1
        t1=$(date +%s%N); "${KCAT[@]}" "$@" >/dev/null; a=$(($(date +%s%N) - t1))
        t1=$(date +%s%N); "${KCAT[@]}" "$@" >/dev/null; b=$(($(date +%s%N) - t1))
        echo $((a < b ? a : b))
}

# round: new namespace, N signals moved into Kafka, kcat timed; sets TAG,
# KCAT_RATE, KCAT_NET.
round() {
        new_tag
        mapfile -t C < <(cfg "$TAG")
        "$CTL" "${C[@]}" topics create --partitions "$PARTS" >/dev/null
        spawn "$WORK/producer-$TAG.log" "$BUILD/parallel-producer" "${C[@]}" \
                -X producer.http.listen=127.0.0.1:0 -X log.level=info
        local prod=$SPAWNED per=$((N / 4)) t0 have=0 i
        # Insert only once it follows the change stream: a signal inserted
        # during its start-up backfill scan may be published twice.
        for ((i = 0; i < 300; i++)); do
                grep -qs 'event=pipeline.started' "$WORK/producer-$TAG.log" && break
                sleep 0.1
        done
        t0=$(now_ms)
        for p in 1 2 3 4; do
                "$CTL" "${C[@]}" signal insert --priority $p --recipe noop \
                        --count $per >/dev/null
        done
        for ((i = 0; i < TIMEOUT; i++)); do
                have=$("$RES" "${C[@]}" count signals.p1 signals.p2 signals.p3 signals.p4)
                [[ $have -ge $N ]] && break
                sleep 1
        done
        local took=$(( ($(now_ms) - t0) / 1000 ))
        sleep 1
        forget "$prod"
        have=$("$RES" "${C[@]}" count signals.p1 signals.p2 signals.p3 signals.p4)
        ROUND_MSGS=$have
        echo "# round $TAG: $have messages in Kafka for $N signals, ${took} s after the first insert (parallel-ctl inserts, parallel-producer moves)"
        [[ $have -ge $N ]] || { echo "pipeline: producer did not move all signals" >&2; exit 1; }

        # Two references: the exact command (-e: exit at the end of every
        # partition, which costs one empty fetch, fetch.wait.max.ms = 500 ms
        # by default, per topic), and -c COUNT instead of -e (exit after the
        # topic's last message: no end-of-partition wait).
        # Each read runs twice and the faster counts (kcat is cheap; one
        # slow start-up would otherwise dominate the -c figure).
        local total=0 net=0 cnt
        for p in 1 2 3 4; do
                cnt=$("$RES" "${C[@]}" count "signals.p$p")
                total=$((total + $(best2 -t "$TAG.signals.p$p" -o beginning -e -q)))
                net=$((net + $(best2 -t "$TAG.signals.p$p" -o beginning -c "$cnt" -q)))
        done
        KCAT_RATE=$(awk -v n="$have" -v ns="$total" 'BEGIN { printf "%.0f", n / (ns / 1e9) }')
        KCAT_NET=$(awk -v n="$have" -v ns="$net" 'BEGIN { printf "%.0f", n / (ns / 1e9) }')
        row "kcat -C -e, 4 topics one by one" "$have" "$KCAT_RATE" \
                "$(awk -v ns="$total" 'BEGIN { printf "%.3f", ns / 1e9 }')" - - - -
        row "kcat -C -c COUNT, 4 topics" "$have" "$KCAT_NET" \
                "$(awk -v ns="$net" 'BEGIN { printf "%.3f", ns / 1e9 }')" - - - -
}

# cpu_ticks PID…: the CPU time (user + system, clock ticks) of PID…, summed.
cpu_ticks() {
        local p t=0 f
        for p in "$@"; do
                f=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
                set -- $f
                t=$((t + ${12} + ${13}))
        done
        echo "$t"
}

KAFKA_PID=$(cat "${PARALLEL_STACK_DIR:-$ROOT/deploy/dev/run}/kafka.pid" 2>/dev/null || true)
# The MongoDB stand-in's pid (private or shared), for its CPU per signal.
MONGO_PID=$(cat "$([[ -n $MONGO_PRIVATE ]] && echo "$WORK/stack" || echo "${PARALLEL_STACK_DIR:-$ROOT/deploy/dev/run}")/mongo.pid" 2>/dev/null || true)
if [[ -n ${STORE_CPU:-} ]]; then
        [[ -n $MONGO_PRIVATE && -n $MONGO_PID ]] ||
                { echo "pipeline: STORE_CPU needs the private store (BENCH_MONGO=private)" >&2; exit 2; }
        cpu_limited "$STORE_CPU"
        echo "$MONGO_PID" >"${BENCH_CGROUPS[-1]}/cgroup.procs"
fi

# timeline FILE: bench-results' `finished_at node priority` lines summed
# per 100 ms from the first result: per node, and per priority.
timeline() {
        sort -n "$1" | awk '
                NR == 1 { t0 = $1 }
                { b = int(($1 - t0) / 100); if (b > nb) nb = b
                  if (!($2 in ni)) { ni[$2] = ++nn; names[nn] = $2 }
                  byn[b, ni[$2]]++; byp[b, $3]++ }
                END {
                        for (b = 0; b <= nb; b++) {
                                line = sprintf("# timeline %5.1f s:", b / 10)
                                for (k = 1; k <= nn; k++) line = line sprintf(" node%d %5d", k, byn[b, k])
                                line = line "  p4..p1"
                                for (q = 4; q >= 1; q--) line = line sprintf(" %5d", byp[b, q])
                                print line
                        }
                }'
}

# us_per TICKS: TICKS of CPU as µs per signal of the round.
us_per() {
        awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$N" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }'
}

# settled LOG…: true once the nodes logging to LOG… hold every partition
# of the four signal topics between them, each at least one (the
# "partitions" of each node's /status; its port from its `listening` line).
settled() {
        local want=$((4 * PARTS)) total=0 f port held
        for f in "$@"; do
                port=$(sed -n 's/.*event=listening .*port=\([0-9]*\).*/\1/p' "$f" 2>/dev/null | head -1)
                [[ -n $port ]] || return 1
                held=$(curl -s --max-time 2 "http://127.0.0.1:$port/status" |
                        sed -n 's/.*"partitions":{"held":\([0-9]*\).*/\1/p')
                [[ ${held:-0} -gt 0 ]] || return 1
                total=$((total + held))
        done
        [[ $total -eq $want ]]
}

# run NODES CLAIMS: one measured run on the current round's signals. The
# nodes start on an empty namespace of their own (same partitions, same
# documents), and the round's signals are copied into it only once every
# node holds its share of the partitions: the rate is that of the nodes at
# work, not of the group forming (a node joining a busy group pays a
# rebalance, which stack_consumer_move_test covers).
run() {
        local nodes=$1 claims=$2 group pids=() logs=() line i from=$TAG
        group="g$(date +%s%N)"
        new_tag
        local rtag=$TAG
        TAG=$from
        mapfile -t C < <(cfg "$from")
        C+=(-X "topic.prefix=$rtag")
        "$CTL" "${C[@]}" topics create --partitions "$PARTS" >/dev/null
        # New topics answer watermark queries once their leaders are up.
        for ((i = 0; i < 100; i++)); do
                "$RES" "${C[@]}" count results signals.p1 signals.p2 signals.p3 \
                        signals.p4 >/dev/null 2>&1 && break
                sleep 0.1
        done
        rm -f "$WORK/ready"
        local tl=()
        [[ -z ${TIMELINE:-} ]] || tl=(--timeline "$WORK/timeline")
        "$RES" "${C[@]}" wait --count "$N" --timeout "$TIMEOUT" \
                --ready "$WORK/ready" "${tl[@]}" >"$WORK/res" 2>"$WORK/res.err" &
        local rpid=$!
        BENCH_PIDS+=("$rpid")
        wait_file "$WORK/ready" 30
        local wrap=()
        for ((i = 1; i <= nodes; i++)); do
                wrap=()
                if [[ -n ${NODE_CPU:-} ]]; then
                        cpu_limited "$NODE_CPU"
                        wrap=("${CPU_WRAP[@]}")
                fi
                [[ -z ${PROFILE:-} ]] || wrap+=(perf record -q -F 2999 -g \
                        -o "$PROFILE/$nodes-$claims-$i.data" --)
                logs+=("$WORK/node-$rtag-$i.log")
                spawn "${logs[-1]}" "${wrap[@]}" "$BUILD/parallel-consumer" \
                        "${C[@]}" -X "consumer.group=$group" -X "node.id=bench-$i" \
                        -X "claim.enabled=$claims" -X http.listen=127.0.0.1:0 \
                        -X "workers.min=$WORKERS" -X "workers.max=$WORKERS" \
                        -X log.level=info ${NODE_OPTS:-}
                pids+=("$SPAWNED")
        done
        for ((i = 0; i < 600; i++)); do settled "${logs[@]}" && break; sleep 0.1; done
        settled "${logs[@]}" || echo "# (the group did not settle in 60 s; measuring anyway)"
        local c0 k0 r0 m0; c0=$(cpu_ticks "${pids[@]}"); k0=$(cpu_ticks $KAFKA_PID); r0=$(cpu_ticks "$rpid"); m0=$(cpu_ticks $MONGO_PID)
        line=$("$RES" "${C[@]}" copy "$from" signals.p1 signals.p2 signals.p3 signals.p4) ||
                { echo "pipeline: copy failed" >&2; return; }
        echo "# $line (the round's signals into the run's topics, once $nodes node(s) held every partition)"
        # The reader's CPU is read just before it exits (its last result).
        local r1=$r0
        while kill -0 "$rpid" 2>/dev/null && [[ ! -s $WORK/res ]]; do
                r1=$(cpu_ticks "$rpid"); sleep 0.05
        done
        wait "$rpid" || true
        local c1 k1 m1; c1=$(cpu_ticks "${pids[@]}"); k1=$(cpu_ticks $KAFKA_PID); m1=$(cpu_ticks $MONGO_PID)
        echo "# CPU from the copy to the last result: nodes $(us_per $((c1 - c0))) µs/signal, Kafka broker $(us_per $((k1 - k0))) µs/signal (it also serves the copy), bench-results reading the results $(us_per $((r1 - r0))) µs/signal, MongoDB $(us_per $((m1 - m0))) µs/signal"
        [[ -z ${TIMELINE:-} || ! -s $WORK/timeline ]] || timeline "$WORK/timeline"
        local keep=() p
        for p in "${BENCH_PIDS[@]}"; do [[ $p == "$rpid" ]] || keep+=("$p"); done
        BENCH_PIDS=("${keep[@]}")
        for p in "${pids[@]}"; do forget "$p"; done
        line=$(grep '^results' "$WORK/res" || true)
        if [[ -z $line ]]; then
                echo "pipeline: no result line:" >&2; cat "$WORK/res.err" >&2
                return
        fi
        local rate; rate=$(field "$line" rate)
        RATES[$nodes-$claims]+="$rate "
        if [[ $claims == true ]]; then
                RATIOS[$nodes]+="$(awk -v a="$rate" -v b="$STORE_RATE" 'BEGIN { printf "%.3f", b ? a / b : 0 }') "
                RATIOS1[$nodes]+="$(awk -v a="$rate" -v b="$STORE_SINGLE" 'BEGIN { printf "%.3f", b ? a / b : 0 }') "
        fi
        row "$nodes node(s) x $WORKERS workers, claims $claims" \
                "$(field "$line" n)" "$rate" \
                "$(awk -v ms="$(field "$line" wall_ms)" 'BEGIN { printf "%.2f", ms / 1000 }')" \
                "$(field "$line" wall_rate)" \
                "$(awk -v a="$rate" -v b="$KCAT_RATE" 'BEGIN { printf "%.3g", a / b }')" \
                "$(awk -v a="$rate" -v b="$KCAT_NET" 'BEGIN { printf "%.3g", b ? a / b : 0 }')" \
                "$([[ $claims != true ]] && echo - || awk -v a="$rate" -v b="$STORE_RATE" 'BEGIN { printf "%.3g", b ? a / b : 0 }')"
        local d s; d=$(field "$line" dups); s=$(field "$line" skipped)
        # Claims off, a signal the producer published twice runs twice: those
        # are the round's, not the nodes'.
        local extra=$((ROUND_MSGS - N))
        [[ $d == 0 && $s == 0 ]] ||
                echo "  (also $d duplicate final results and $s skipped deliveries; the round's topics hold $extra messages beyond one per signal, so $((d - extra < 0 ? 0 : d - extra)) duplicates are the nodes' own)"
}

row() {
        printf '%-36s %8s %10s %8s %9s %8s %8s %8s   load %s\n' "$@" "$(load)"
}

# The claim batch the nodes use (claim.batch, after NODE_OPTS).
read -ra NODE_X <<<"${NODE_OPTS:-}"
CLAIM_BATCH=$("$BUILD/parallel-consumer" "${NODE_X[@]}" -X dump 2>/dev/null | sed -n 's/^claim\.batch=//p')
CLAIM_BATCH=${CLAIM_BATCH:-1}

# store_one THREADS BATCH: one bench-claims run on N fresh documents: a
# row, and the stand-in's CPU per signal; sets STORE_R to its cycles/s.
store_one() {
        local t=$1 b=$2 uri=mongodb://127.0.0.1:27017 m0 m1 line r what
        [[ -z $MONGO_PRIVATE ]] || uri=mongodb://127.0.0.1:$MONGO_PRIVATE
        m0=$(cpu_ticks $MONGO_PID)
        line=$("$BUILD/tests/bench-claims" "$uri" parallel_bench "$N" "$t" "$b")
        m1=$(cpu_ticks $MONGO_PID)
        r=$(sed -n 's/.*threads: \([0-9]*\) claim cycles.*/\1/p' <<<"$line")
        what="claim cycles"
        [[ $b -le 1 ]] || what="batches of $b"
        row "store: $what, $t threads" "$N" "$r" - - - - -
        echo "# MongoDB CPU during bench-claims ($what, $t threads, its inserts included): $(us_per $((m1 - m0))) µs/signal"
        STORE_R=$r
}

# store [THREADS…]: the store's own limit from WORKERS threads (a node's
# pool; and 2×WORKERS, what two nodes use, unless THREADS are given), two
# ways: with the operations a node makes (acquire_batch + finish_batch of
# claim.batch; the ÷store column), and one signal at a time (acquire +
# finish, each a findAndModify). Sets STORE_RATE and STORE_SINGLE (the
# figures of the first THREADS; the same when claim.batch is 1).
store() {
        local threads=("$@") t
        [[ ${#threads[@]} -gt 0 ]] || threads=("$WORKERS" $((2 * WORKERS)))
        for t in "${threads[@]}"; do
                store_one "$t" "$CLAIM_BATCH"
                [[ $t != "${threads[0]}" ]] || STORE_RATE=$STORE_R STORE_SINGLE=$STORE_R
                if [[ $CLAIM_BATCH -gt 1 ]]; then
                        store_one "$t" 1
                        [[ $t != "${threads[0]}" ]] || STORE_SINGLE=$STORE_R
                fi
        done
}

# median "X Y Z …": the middle value (the lower middle of an even count).
median() {
        tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}

echo "# pipeline ceiling: noop recipe, $N signals per round (N/4 per priority), $PARTS partitions per topic, $RUNS run(s) of each, $(nproc) cores, load $(load)${NODE_CPU:+, each node capped at $NODE_CPU core(s)}${STORE_CPU:+, the store capped at $STORE_CPU core(s)}"
printf '%-36s %8s %10s %8s %9s %8s %8s %8s\n' reader signals "signals/s" "wall s" "wall /s" "÷kcat-e" "÷kcat-c" "÷store"
STORE_RATE=0 STORE_SINGLE=0
declare -A RATES=() RATIOS=() RATIOS1=()
[[ $CLAIMS != *true* ]] || store
if [[ $CLAIMS == *false* ]]; then
        # Claims off changes no document: one round serves every run.
        round
        for ((k = 0; k < RUNS; k++)); do run 1 false; run 2 false; done
fi
if [[ $CLAIMS == *true* ]]; then
        # A claimed signal would only be skipped: fresh signals per run.
        # The store is measured again just before each run (its
        # collection grows with every round), from as many threads as the
        # run's nodes have workers (the same pool size), and each run is
        # divided by that.
        if [[ ${WARMUP:-1} == 1 ]]; then
                # The broker restarts with the stack and the private store
                # starts fresh: both compile (JIT) what a claims-on run
                # makes them do during the first one. A long-running
                # deployment has done that long before.
                echo "# warm-up, not counted: one claims-on run of one node"
                round; store "$WORKERS"; run 1 true
                unset 'RATES[1-true]' 'RATIOS[1]' 'RATIOS1[1]'
        fi
        for ((k = 0; k < RUNS; k++)); do
                round; store "$WORKERS"; run 1 true
                round; store $((2 * WORKERS)); run 2 true
        done
fi
echo "# medians of $RUNS run(s), signals/s (claims on: ÷ the store running the nodes' operations, claim.batch=$CLAIM_BATCH, and ÷ the store one signal at a time, each measured just before the run):"
for key in 1-false 2-false 1-true 2-true; do
        [[ -n ${RATES[$key]:-} ]] || continue
        m=$(median "${RATES[$key]}")
        extra=""
        [[ $key != *true ]] || extra=" (÷ store, the same operations: median $(median "${RATIOS[${key%%-*}]}") [${RATIOS[${key%%-*}]}]; ÷ store, one at a time: median $(median "${RATIOS1[${key%%-*}]}") [${RATIOS1[${key%%-*}]}])"
        echo "#   ${key%%-*} node(s), claims ${key#*-}: $m$extra   [runs: ${RATES[$key]}]"
done
if [[ -n ${RATES[1-false]:-} && -n ${RATES[2-false]:-} ]]; then
        echo "#   two nodes ÷ one, claims off: $(awk -v a="$(median "${RATES[2-false]}")" -v b="$(median "${RATES[1-false]}")" 'BEGIN { printf "%.2f", a / b }')"
fi

# common.sh — shared by pipeline.sh, latency.sh and workers.sh (sourced,
# not run). Gives each benchmark a private namespace (topic.prefix and
# mongo.collection "bench_<name>_<time>"), starts processes it remembers by
# pid, and on exit stops exactly those processes and deletes the topics of
# every namespace it made.
#
# MongoDB: by default (BENCH_MONGO=private) a private, empty MongoDB
# stand-in is started for the benchmark (`deploy/dev/stack up mongo` with
# its own PARALLEL_STACK_DIR under the temp dir and a free port) and stopped
# at exit. The shared stand-in on 27017 is slowed by everything else that
# runs against it (its never-trimmed oplog is rescanned on every getMore;
# other engineers' tests), which would be measured instead of Parallel.
# BENCH_MONGO=shared uses the shared one (mongo.uri default); its
# collections then stay behind (named signals_bench_*). Kafka is always the
# shared broker on 127.0.0.1:9092.
#
#   BENCH_NAME=pipeline; . "$(dirname "$0")/common.sh" "$@"
#
# After sourcing: ROOT, BUILD, CTL, RES (bench-results), WORK (temp dir,
# removed on success unless KEEP=1), and the functions below.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(cd "${1:-${PARALLEL_BINARY_DIR:-$ROOT/build}}" && pwd)
CTL=$BUILD/parallel-ctl
RES=$BUILD/tests/bench-results
for f in "$CTL" "$BUILD/parallel-producer" "$BUILD/parallel-consumer" "$RES"; do
        [[ -x $f ]] || { echo "$BENCH_NAME: $f not built (cmake --build $BUILD)" >&2; exit 2; }
done
BENCH_MONGO=${BENCH_MONGO:-private}
if [[ $BENCH_MONGO == private ]]; then
        "$ROOT/deploy/dev/stack" status kafka >/dev/null 2>&1 ||
                { echo "$BENCH_NAME: Kafka is not running (deploy/dev/stack up)" >&2; exit 2; }
else
        "$ROOT/deploy/dev/stack" status >/dev/null 2>&1 ||
                { echo "$BENCH_NAME: the stack is not running (deploy/dev/stack up)" >&2; exit 2; }
fi

WORK=$(mktemp -d "/tmp/parallel-bench-$BENCH_NAME.XXXXXX")
BENCH_PIDS=()
BENCH_CGROUPS=()
BENCH_TAGS=()
MONGO_OPT=()
MONGO_PRIVATE=

# stop_pid PID: SIGTERM, wait up to 40 s (a node finishes in-flight spins
# and closes its Chromium), then SIGKILL.
stop_pid() {
        local p=$1
        kill -TERM "$p" 2>/dev/null || return 0
        for _ in $(seq 400); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
}

bench_cleanup() {
        local rc=$?
        for p in "${BENCH_PIDS[@]}"; do stop_pid "$p"; done
        for t in "${BENCH_TAGS[@]}"; do
                "$CTL" -X log.level=error -X "topic.prefix=$t" \
                        topics delete --yes >/dev/null 2>&1 || true
        done
        if [[ -n $MONGO_PRIVATE ]]; then
                PARALLEL_STACK_DIR=$WORK/stack MONGO_PORT=$MONGO_PRIVATE \
                        "$ROOT/deploy/dev/stack" down mongo >/dev/null 2>&1 || true
        fi
        # Last: a cgroup is removable only once what ran in it is gone.
        for g in "${BENCH_CGROUPS[@]}"; do rmdir "$g" 2>/dev/null || true; done
        if [[ $rc -ne 0 || -n ${KEEP:-} ]]; then
                echo "$BENCH_NAME: exit $rc; logs kept in $WORK" >&2
        else
                rm -rf "$WORK"
        fi
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
trap '' PIPE # cleanup must run to the end even if our reader went away

if [[ $BENCH_MONGO == private ]]; then
        MONGO_PRIVATE=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        PARALLEL_STACK_DIR=$WORK/stack MONGO_PORT=$MONGO_PRIVATE \
                "$ROOT/deploy/dev/stack" up mongo >"$WORK/stack.log" 2>&1 ||
                { cat "$WORK/stack.log" >&2; exit 1; }
        MONGO_OPT=(-X "mongo.uri=mongodb://127.0.0.1:$MONGO_PRIVATE")
fi

# new_tag: sets TAG to a fresh namespace name and remembers it for cleanup
# (it sets a variable because a $(…) subshell could not remember it).
new_tag() {
        TAG="bench_${BENCH_NAME}_$(date +%s%N | cut -c1-13)"
        BENCH_TAGS+=("$TAG")
}

# cfg TAG: prints the -X options of namespace TAG, one per line.
cfg() {
        printf '%s\n' "${MONGO_OPT[@]}" -X "topic.prefix=$1" -X "mongo.collection=signals_$1" \
                -X "recipes.dir=$ROOT/tests/fixtures/recipes" -X log.level=warn
}

# spawn LOG CMD…: runs CMD in the background with output to LOG; sets
# SPAWNED to its pid and remembers it for cleanup.
spawn() {
        local log=$1; shift
        "$@" >"$log" 2>&1 &
        SPAWNED=$!
        BENCH_PIDS+=("$SPAWNED")
}

# cpu_limited CORES: sets CPU_WRAP to a command prefix that runs a command
# in a CPU cgroup of its own capped at CORES cores (CFS quota per 100 ms
# period), as a VM of that many cores would cap it; the cgroup is removed at
# exit. cgroup v2 (cpu.max) or v1 (the cpu controller); exits when neither
# is writable (root is needed).
cpu_limited() {
        local cores=$1 quota dir
        quota=$(awk -v c="$cores" 'BEGIN { printf "%d", c * 100000 }')
        [[ $quota -ge 1000 ]] || { echo "$BENCH_NAME: bad CPU limit '$cores' (cores, e.g. 0.5)" >&2; exit 2; }
        if [[ -f /sys/fs/cgroup/cgroup.controllers ]] &&
           grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
                dir=/sys/fs/cgroup/parallel-bench-$$-${#BENCH_CGROUPS[@]}
                mkdir "$dir" && echo "$quota 100000" >"$dir/cpu.max"
        elif [[ -d /sys/fs/cgroup/cpu ]]; then
                dir=/sys/fs/cgroup/cpu/parallel-bench-$$-${#BENCH_CGROUPS[@]}
                mkdir "$dir" && echo 100000 >"$dir/cpu.cfs_period_us" &&
                        echo "$quota" >"$dir/cpu.cfs_quota_us"
        else
                false
        fi || { echo "$BENCH_NAME: cannot make a CPU cgroup (cgroup v2 with the cpu controller, or v1's cpu, writable as root)" >&2; exit 2; }
        BENCH_CGROUPS+=("$dir")
        # The shell moves itself into the cgroup, then becomes the command
        # (same pid, so spawn/forget still address it).
        CPU_WRAP=(sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$dir")
}

# forget PID: stops PID and drops it from the cleanup list.
forget() {
        local keep=() p
        stop_pid "$1"
        for p in "${BENCH_PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
        BENCH_PIDS=("${keep[@]}")
}

# wait_file FILE SECONDS: waits until FILE exists.
wait_file() {
        local i
        for ((i = 0; i < $2 * 10; i++)); do
                [[ -e $1 ]] && return 0
                sleep 0.1
        done
        echo "$BENCH_NAME: $1 did not appear within $2 s" >&2
        return 1
}

# start_fixture: serves tests/fixtures/pages; sets BASE (used by callers).
# shellcheck disable=SC2034
start_fixture() {
        spawn "$WORK/fixture.log" "$BUILD/tests/fixture_serve" \
                "$ROOT/tests/fixtures/pages" "$WORK/fixture.port"
        local i
        for ((i = 0; i < 100; i++)); do
                [[ -s $WORK/fixture.port ]] && break
                sleep 0.1
        done
        BASE="http://127.0.0.1:$(cat "$WORK/fixture.port")"
}

# field LINE KEY: the value of KEY=value in a `results …` line.
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

load() { cut -d' ' -f1-3 /proc/loadavg; }

now_ms() { echo $(($(date +%s%N) / 1000000)); }

#!/usr/bin/env bash
# spin.sh — spins/s, latency and memory: parallel-ctl spin vs puppeteer-cluster.
#
#   tests/bench/spin.sh [BUILD_DIR]  (env: SPINS=200 CONC="1 2 4 8" PLAIN=1)
#
# Both sides run tests/fixtures/recipes/bench.json's five steps (navigate,
# waitForElement, change, click, extract) against the same page served by
# bench-fixture_serve, on the same /usr/bin/chromium, alternately (parallel,
# then cluster, per concurrency level) so drifting machine load hits both.
# Browser launch and one warm-up spin per worker are outside the clock on
# both sides; latency is per spin, end to end in the worker (tab/page
# acquire + the five steps + release), queueing excluded.
#
# The ratio table compares with the cluster's locator variant, the closest to
# a Recorder replay; PLAIN=1 adds a "cluster-plain" row per level
# (page.type/page.click, see spin_cluster.js).
#
# Memory, sampled every 250 ms while a run lasts, peak reported:
#   self_rss_mb   RSS of the controller process alone (parallel-ctl, or
#                 node): Chrome EXCLUDED.
#   tree_pss_mb   PSS summed over the controller and every descendant
#                 (Chromium browser, renderers, GPU/utility processes): Chrome
#                 INCLUDED. PSS splits shared pages between processes, so the
#                 sum does not count shared libraries once per renderer.
#
# Parallel runs with chrome.isolation=context (one context per worker, tab
# reused between spins) and, for parity with puppeteer's default launch
# flags, the three background-throttling switches puppeteer adds.
# A benchmark prints numbers; it asserts nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-${PARALLEL_BINARY_DIR:-$ROOT/build}}
SPINS=${SPINS:-200}
CONC=${CONC:-"1 2 4 8"}
CTL=$BUILD/parallel-ctl
SERVE=$BUILD/tests/fixture_serve
PEER=$ROOT/tests/bench/peer
for f in "$CTL" "$SERVE"; do
  [[ -x $f ]] || { echo "spin.sh: $f not built (cmake --build $BUILD)" >&2; exit 2; }
done
if [[ ! -d $PEER/node_modules/puppeteer-cluster ]]; then
  (cd "$PEER" && npm install --legacy-peer-deps --no-audit --no-fund >&2)
fi

WORK=$(mktemp -d /tmp/parallel-bench-spin.XXXXXX)
export HOME=$WORK/home XDG_CONFIG_HOME=$WORK/home/.config
mkdir -p "$HOME"
SERVER_PID= RUN_PID=
cleanup() {
  # Stop a run in progress (both sides close their browsers on SIGTERM),
  # then the page server.
  if [[ -n $RUN_PID ]] && kill -TERM "$RUN_PID" 2>/dev/null; then
    for _ in $(seq 100); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$RUN_PID" 2>/dev/null || true
  fi
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$SERVE" "$ROOT/tests/fixtures/pages" "$WORK/port" >"$WORK/serve.log" &
SERVER_PID=$!
for _ in $(seq 50); do [[ -s $WORK/port ]] && break; sleep 0.1; done
BASE=http://127.0.0.1:$(cat "$WORK/port")

# sample ROOT_PID OUT: peak controller RSS and peak tree PSS, in kB.
sample() {
  python3 - "$1" "$2" <<'EOF'
import os, sys, time
root, out = int(sys.argv[1]), sys.argv[2]
def kids():
    m = {}
    for p in os.listdir('/proc'):
        if p.isdigit():
            try:
                with open(f'/proc/{p}/stat') as f:
                    s = f.read()
                ppid = int(s[s.rindex(')') + 2:].split()[1])
                m.setdefault(ppid, []).append(int(p))
            except (OSError, ValueError):
                pass
    tree, todo = [], [root]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(m.get(p, []))
    return tree
def field(path, name):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
self_peak = tree_peak = 0
while True:
    try:
        with open(f'/proc/{root}/status') as f:
            if 'zombie' in f.read():
                break
    except OSError:
        break
    self_peak = max(self_peak, field(f'/proc/{root}/status', 'VmRSS:'))
    tree_peak = max(tree_peak, sum(field(f'/proc/{p}/smaps_rollup', 'Pss:') for p in kids()))
    time.sleep(0.25)
with open(out, 'w') as f:
    f.write(f'{self_peak} {tree_peak}\n')
EOF
}

# run NAME CMD…: runs CMD with the sampler, prints one result row.
run() {
  local name=$1; shift
  "$@" >/dev/null 2>"$WORK/err" &
  local pid=$!
  RUN_PID=$pid
  sample "$pid" "$WORK/mem" &
  local spid=$!
  local rc=0
  wait "$pid" || rc=$?
  wait "$spid" || true
  RUN_PID=
  local line; line=$(grep '^summary' "$WORK/err" | tail -1 || true)
  if [[ -z $line ]]; then
    echo "$name: no summary (exit $rc):" >&2; tail -5 "$WORK/err" >&2
    return
  fi
  local v; v() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
  read -r self tree <"$WORK/mem"
  printf '%-18s %4s %6s %6s %9s %9s %9s %12s %12s\n' "$name" "$(v concurrency)" \
    "$(v count)" "$(v ok)" "$(v spins_per_s)" "$(v p50_ms)" "$(v p99_ms)" \
    "$((self / 1024))" "$((tree / 1024))"
  echo "$name $(v concurrency) $(v spins_per_s) $(v p50_ms) $(v p99_ms) $((self / 1024)) $((tree / 1024))" >>"$WORK/rows"
}

echo "# spin benchmark: $SPINS spins per run, bench.json (5 steps), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-18s %4s %6s %6s %9s %9s %9s %12s %12s\n' impl conc spins ok spins/s p50_ms p99_ms self_rss_mb tree_pss_mb
for c in $CONC; do
  run parallel "$CTL" -X log.level=warn -X chrome.isolation=context \
    -X "chrome.extra_args=--disable-background-timer-throttling --disable-backgrounding-occluded-windows --disable-renderer-backgrounding" \
    spin --recipe "$ROOT/tests/fixtures/recipes/bench.json" \
    --param "base=$BASE" --param q=42 --repeat "$SPINS" --concurrency "$c"
  run puppeteer-cluster node "$PEER/spin_cluster.js" "$BASE" "$SPINS" "$c"
  if [[ -n ${PLAIN:-} ]]; then
    run cluster-plain env STYLE=plain node "$PEER/spin_cluster.js" "$BASE" "$SPINS" "$c"
  fi
done

echo
echo "# ratio parallel / puppeteer-cluster"
printf '%-4s %10s %10s %10s %14s %14s\n' conc spins/s p50 p99 self_rss tree_pss
awk '
  $1 == "parallel" { p[$2] = $0 }
  $1 == "puppeteer-cluster" { q[$2] = $0 }
  END {
    for (c in p) if (c in q) {
      split(p[c], a); split(q[c], b)
      printf "%-4s %10.2f %10.2f %10.2f %14.2f %14.2f\n", c,
        a[3] / b[3], a[4] / b[4], a[5] / b[5],
        (b[6] ? a[6] / b[6] : 0), (b[7] ? a[7] / b[7] : 0)
    }
  }' "$WORK/rows" | sort -n

#!/usr/bin/env bash
# spin.sh — spins/s and latency, like for like: parallel-ctl spin vs
# puppeteer-cluster, clean state against clean state, shared state against
# shared state.
#
#   tests/bench/spin.sh [BUILD_DIR]
#   env: SPINS=40 CONC="1 2 4 8" RUNS=3 PAGES="bench bench_wait" PLAIN=1
#        CTL_B=/path/to/another/parallel-ctl PEER_TUNED=1
#        CTL_X="chrome.browsers=2" CTL_B_X="chrome.browsers=1"
#        CHROME=/usr/bin/chromium-headless-shell
#
# Four implementations, the same steps on the same page served by
# fixture_serve, on the same Chromium (CHROME, /usr/bin/chromium by default):
#   parallel-spin      chrome.state_scope=spin: every spin in a browser
#                      context no earlier spin used (prepared in the
#                      background, disposed of after)
#   cluster-context    puppeteer-cluster CONCURRENCY_CONTEXT: a fresh
#                      incognito context and page per job
#   parallel-resource  chrome.state_scope=resource, one resource per worker
#                      (--resource 'w{worker}'): each worker keeps its
#                      context and tab, state carries over (tab reuse)
#   cluster-page       puppeteer-cluster CONCURRENCY_PAGE: a new page per
#                      job in one shared context, state carries over
# Pages: bench (tests/fixtures/recipes/bench.json: navigate, waitForElement,
# change, click, extract; nothing on the page makes anyone wait) and
# bench_wait (bench_wait.json: the field appears 100 ms after load and the
# answer 150 ms after the click). Concurrency levels CONC, each
# implementation RUNS times, interleaved (p-spin, c-context, p-resource,
# c-page, then again) so drifting machine load hits all four; the table
# shows the median of the runs. Browser launch and one warm-up spin per
# worker are outside the clock on both sides (parallel-ctl also waits for
# its stock of prepared contexts: a warm node). Latency is per spin, end
# to end in the worker (context/page acquire + steps + release).
#
# PLAIN=1 adds cluster-plain (CONCURRENCY_CONTEXT with page.type/click
# instead of locators, see spin_cluster.js). CTL_B adds parallel-spin-b:
# the same spin-scope run with another build of parallel-ctl, interleaved
# with the others (an A/B of two builds in one run); CTL_X and CTL_B_X
# are extra config settings (key=value, space separated) for the
# parallel-spin and parallel-spin-b rows, so CTL_B=$BUILD/parallel-ctl
# with two CTL_X/CTL_B_X is an A/B of two settings. PEER_TUNED=1 adds
# cluster-context-tuned: CONCURRENCY_CONTEXT with the Chromium features
# Parallel turns off also turned off (see lib/browser/chrome.c), so the
# peer's Chromium does the same work per context. For parallel rows the
# table also shows the median acquire time (the part of a spin's latency
# spent waiting for or making its context) and the acquires the stock of
# prepared contexts served / missed. CHROME runs both sides on another
# Chromium binary (default /usr/bin/chromium); a chromium-headless-shell
# (Debian's package of the old headless mode, no browser windows) runs
# puppeteer with headless: 'shell'. A benchmark prints numbers; it asserts
# nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-${PARALLEL_BINARY_DIR:-$ROOT/build}}
SPINS=${SPINS:-40}
CONC=${CONC:-"1 2 4 8"}
RUNS=${RUNS:-3}
PAGES=${PAGES:-"bench bench_wait"}
CTL=$BUILD/parallel-ctl
SERVE=$BUILD/tests/fixture_serve
PEER=$ROOT/tests/bench/peer
for f in "$CTL" "$SERVE"; do
  [[ -x $f ]] || { echo "spin.sh: $f not built (cmake --build $BUILD)" >&2; exit 2; }
done
if [[ ! -d $PEER/node_modules/puppeteer-cluster ]]; then
  (cd "$PEER" && npm ci --no-audit --no-fund >&2)
fi

. "$ROOT/tests/bench/pages.sh"
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
  pages_stop
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pages_start

# run NAME PAGE CMD…: runs CMD, appends "NAME PAGE conc spins/s p50 p99 ok
# count acquire_p50 ready missed" (the last three "-" for the peer).
run() {
  local name=$1 page=$2; shift 2
  "$@" >/dev/null 2>"$WORK/err" &
  RUN_PID=$!
  local rc=0
  wait "$RUN_PID" || rc=$?
  RUN_PID=
  local line; line=$(grep '^summary' "$WORK/err" | tail -1 || true)
  if [[ -z $line ]]; then
    echo "$name $page: no summary (exit $rc):" >&2; tail -5 "$WORK/err" >&2
    return
  fi
  local v; v() { local x; x=$(sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"); echo "${x:--}"; }
  echo "$name $page $(v concurrency) $(v spins_per_s) $(v p50_ms) $(v p99_ms) $(v ok) $(v count) $(v acquire_p50_ms) $(v ready) $(v missed)" | tee -a "$WORK/rows" >&2
}

CHROME=${CHROME:-/usr/bin/chromium}
export CHROME
FLAGS=(-X log.level=warn -X chrome.isolation=context -X "chrome.path=$CHROME"
  -X "chrome.extra_args=--disable-background-timer-throttling --disable-backgrounding-occluded-windows --disable-renderer-backgrounding")

# -X KEY=VALUE for each of the space-separated settings in $1.
xargs_of() { local kv; for kv in $1; do printf '%s\n' -X "$kv"; done; }
mapfile -t XA < <(xargs_of "${CTL_X:-}")
mapfile -t XB < <(xargs_of "${CTL_B_X:-}")

echo "# spin benchmark: $SPINS spins per run, median of $RUNS runs, $CHROME, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
if [[ -n ${CTL_X:-}${CTL_B_X:-} ]]; then
  echo "# parallel-spin: ${CTL_X:-defaults}; parallel-spin-b: ${CTL_B_X:-defaults}"
fi
for page in $PAGES; do
  for c in $CONC; do
    for ((r = 1; r <= RUNS; r++)); do
      run parallel-spin "$page" "$CTL" "${FLAGS[@]}" ${XA[@]+"${XA[@]}"} -X chrome.state_scope=spin \
        spin --recipe "$ROOT/tests/fixtures/recipes/$page.json" \
        --param "base=$BASE" --param q=42 --repeat "$SPINS" --concurrency "$c"
      if [[ -n ${CTL_B:-} ]]; then
        run parallel-spin-b "$page" "$CTL_B" "${FLAGS[@]}" ${XB[@]+"${XB[@]}"} -X chrome.state_scope=spin \
          spin --recipe "$ROOT/tests/fixtures/recipes/$page.json" \
          --param "base=$BASE" --param q=42 --repeat "$SPINS" --concurrency "$c"
      fi
      run cluster-context "$page" env MODEL=context PAGE="$page" \
        node "$PEER/spin_cluster.js" "$BASE" "$SPINS" "$c"
      if [[ -n ${PEER_TUNED:-} ]]; then
        run cluster-context-tuned "$page" env MODEL=context PAGE="$page" TUNED=1 \
          node "$PEER/spin_cluster.js" "$BASE" "$SPINS" "$c"
      fi
      run parallel-resource "$page" "$CTL" "${FLAGS[@]}" -X chrome.state_scope=resource \
        spin --recipe "$ROOT/tests/fixtures/recipes/$page.json" --resource 'w{worker}' \
        --param "base=$BASE" --param q=42 --repeat "$SPINS" --concurrency "$c"
      run cluster-page "$page" env MODEL=page PAGE="$page" \
        node "$PEER/spin_cluster.js" "$BASE" "$SPINS" "$c"
      if [[ -n ${PLAIN:-} ]]; then
        run cluster-plain "$page" env STYLE=plain MODEL=context PAGE="$page" \
          node "$PEER/spin_cluster.js" "$BASE" "$SPINS" "$c"
      fi
    done
  done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$WORK/rows" <<'EOF_PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 8:
        continue
    key = (f[0], f[1], int(f[2]))
    num = lambda x: float(x) if x not in ('-', '') else float('nan')
    extra = [num(x) for x in f[8:11]] + [float('nan')] * (3 - len(f[8:11]))
    rows.setdefault(key, []).append(
        (float(f[3]), float(f[4]), float(f[5]), int(f[6]), int(f[7]), *extra))
def med(key, i):
    v = [r[i] for r in rows.get(key, [])]
    return statistics.median(v) if v else float('nan')
impls = ['parallel-spin', 'parallel-spin-b', 'cluster-context', 'cluster-context-tuned',
         'parallel-resource', 'cluster-page', 'cluster-plain']
pages = sorted({k[1] for k in rows}, key=lambda p: (p != 'bench', p))
concs = sorted({k[2] for k in rows})
print('\n# medians (spins/s, p50 ms, p99 ms, acquire p50 ms; ok/count and ready/missed summed over runs)')
print(f"{'page':<11} {'impl':<21} {'conc':>4} {'spins/s':>8} {'p50_ms':>8} {'p99_ms':>8} {'ok/count':>9} {'acq_p50':>8} {'ready/missed':>12}")
for p in pages:
    for i in impls:
        for c in concs:
            k = (i, p, c)
            if k not in rows:
                continue
            ok = sum(r[3] for r in rows[k]); n = sum(r[4] for r in rows[k])
            acq = med(k, 5)
            rd = sum(r[6] for r in rows[k]); ms = sum(r[7] for r in rows[k])
            st = f"{int(rd)}/{int(ms)}" if rd == rd and ms == ms else '-'
            aq = f"{acq:.1f}" if acq == acq else '-'
            print(f"{p:<11} {i:<21} {c:>4} {med(k,0):>8.2f} {med(k,1):>8.1f} {med(k,2):>8.1f} {ok:>4}/{n:<4} {aq:>8} {st:>12}")
print('\n# ratios of medians')
print(f"{'page':<11} {'conc':>4} {'clean: spin/ctx':>16} {'shared: res/page':>17} {'p50 spin-res ms':>16} {'p50 spin/res':>13}"
      + (f" {'spin/ctx-tuned':>15}" if any(k[0] == 'cluster-context-tuned' for k in rows) else '')
      + (f" {'spin-b/ctx':>11} {'b/a spins/s':>12}" if any(k[0] == 'parallel-spin-b' for k in rows) else ''))
for p in pages:
    for c in concs:
        a = med(('parallel-spin', p, c), 0) / med(('cluster-context', p, c), 0)
        b = med(('parallel-resource', p, c), 0) / med(('cluster-page', p, c), 0)
        d = med(('parallel-spin', p, c), 1) - med(('parallel-resource', p, c), 1)
        q = med(('parallel-spin', p, c), 1) / med(('parallel-resource', p, c), 1)
        line = f"{p:<11} {c:>4} {a:>16.2f} {b:>17.2f} {d:>16.1f} {q:>13.2f}"
        if any(k[0] == 'cluster-context-tuned' for k in rows):
            line += f" {med(('parallel-spin', p, c), 0) / med(('cluster-context-tuned', p, c), 0):>15.2f}"
        if any(k[0] == 'parallel-spin-b' for k in rows):
            sb = med(('parallel-spin-b', p, c), 0)
            line += f" {sb / med(('cluster-context', p, c), 0):>11.2f} {sb / med(('parallel-spin', p, c), 0):>12.2f}"
        print(line)
EOF_PY

#!/usr/bin/env bash
# context_ab.sh — the clean-context probe (tests/bench/peer/context_cost.js)
# for several variants, interleaved, so drifting machine load hits them all.
#
#   tests/bench/context_ab.sh [BUILD_DIR] LABEL VARIANT [LABEL VARIANT …]
#   env: ROUNDS=3 N=8 SETTLE=700 (and any of the probe's, for every variant)
#
# A VARIANT is "[ENV=V …|]CHROMIUM ARGS": extra Chromium switches for the
# probe's ARGS, optionally preceded by probe settings and a '|', e.g.
#   tests/bench/context_ab.sh build base "" lite "--js-flags=--lite-mode" \
#       nofocus "FOCUS=0|" direct "CHROME=/usr/lib/chromium/chromium|"
# Each round runs every variant once, in order; each run prints the probe's
# table (CPU ms per phase and process class). Serves tests/fixtures/pages
# with the build's fixture_serve. Run it under the bench lock
# (flock -o /tmp/parallel-bench.lock …). It prints numbers, asserts nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${PARALLEL_BINARY_DIR:-$ROOT/build}
if [[ $# -gt 0 && $(($# % 2)) -eq 1 ]]; then
  BUILD=$1
  shift
fi
[[ $# -ge 2 ]] || { echo "usage: $0 [BUILD_DIR] LABEL VARIANT [LABEL VARIANT …]" >&2; exit 2; }
SERVE=$BUILD/tests/fixture_serve
PEER=$ROOT/tests/bench/peer
[[ -x $SERVE ]] || { echo "context_ab.sh: $SERVE not built" >&2; exit 2; }
if [[ ! -d $PEER/node_modules/ws ]]; then
  (cd "$PEER" && npm ci --no-audit --no-fund >&2)
fi

. "$ROOT/tests/bench/pages.sh"
WORK=$(mktemp -d /tmp/parallel-bench-ctx.XXXXXX)
SERVER_PID=
cleanup() {
  pages_stop
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
pages_start

echo "# context_ab: $(nproc) cores, uptime: $(uptime)"
args=("$@")
for ((r = 1; r <= ${ROUNDS:-3}; r++)); do
  for ((i = 0; i < ${#args[@]}; i += 2)); do
    label=${args[i]} v=${args[i + 1]} envs=()
    if [[ $v == *'|'* ]]; then
      read -r -a envs <<<"${v%%|*}"
      v=${v#*|}
    fi
    echo "## round $r $label $(date -u +%T)"
    env N="${N:-8}" SETTLE="${SETTLE:-700}" ${envs[@]+"${envs[@]}"} ARGS="$v" \
      timeout 600 node "$PEER/context_cost.js" "$BASE" || echo "## $label failed ($?)"
  done
done
echo "# uptime after: $(uptime)"

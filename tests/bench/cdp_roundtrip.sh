#!/usr/bin/env bash
# cdp_roundtrip.sh — Parallel's CDP round trip vs puppeteer's, same Chromium.
#
#   tests/bench/cdp_roundtrip.sh [N]        (default N=10000)
#
# Starts one headless Chromium (temp profile and HOME, its own process
# group), runs bench-cdp_roundtrip (C, connect mode) and
# peer/cdp_roundtrip.js (puppeteer-core) against it one after the other,
# prints their lines and the ratio of medians, and stops the browser.
# Needs a build (PARALLEL_BINARY_DIR, default <repo>/build) and
# `npm ci` once in tests/bench/peer.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${PARALLEL_BINARY_DIR:-$repo/build}/tests/bench-cdp_roundtrip
chrome=${PARALLEL_TEST_CHROME:-/usr/bin/chromium}
n=${1:-10000}

[ -x "$bin" ] || { echo "no $bin: build first (cmake --build …)" >&2; exit 1; }
[ -d "$here/peer/node_modules/puppeteer-core" ] ||
        { echo "run 'npm ci' in $here/peer first" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/parallel-bench-XXXXXX")
pgid=
cleanup() {
        if [ -n "$pgid" ]; then
                kill -TERM -- "-$pgid" 2>/dev/null || true
                for _ in 1 2 3 4 5 6 7 8 9 10; do
                        kill -0 -- "-$pgid" 2>/dev/null || break
                        sleep 0.2
                done
                kill -KILL -- "-$pgid" 2>/dev/null || true
                wait "$pgid" 2>/dev/null || true
        fi
        rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

mkdir -p "$tmp/home" "$tmp/profile"
# Not a process group leader (no job control), so setsid execs in place and
# $! is Chromium's pid and its process group id.
HOME=$tmp/home XDG_CONFIG_HOME=$tmp/home/.config setsid "$chrome" \
        --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update \
        --disable-sync --remote-debugging-address=127.0.0.1 \
        --remote-debugging-port=0 --user-data-dir="$tmp/profile" \
        about:blank >"$tmp/chrome.log" 2>&1 &
pgid=$!

# DevToolsActivePort holds "port\n/devtools/browser/<id>" once ready.
for _ in $(seq 1 400); do
        [ -n "$(sed -n 2p "$tmp/profile/DevToolsActivePort" 2>/dev/null)" ] && break
        kill -0 "$pgid" 2>/dev/null || { cat "$tmp/chrome.log" >&2; exit 1; }
        sleep 0.05
done
port=$(head -1 "$tmp/profile/DevToolsActivePort")
wspath=$(sed -n 2p "$tmp/profile/DevToolsActivePort")
ws="ws://127.0.0.1:$port$wspath"
echo "chromium pid=$pgid port=$port ($("$chrome" --version 2>/dev/null | head -1))"

c_line=$("$bin" -n "$n" -e "http://127.0.0.1:$port" 2>/dev/null)
echo "$c_line"
p_lines=$(cd "$here/peer" && node cdp_roundtrip.js "$ws" "$n")
echo "$p_lines"

median() { sed -n 's/.*median_us=\([0-9.]*\).*/\1/p'; }
c=$(echo "$c_line" | median)
send=$(echo "$p_lines" | grep 'op=CDPSession.send' | median)
eval_=$(echo "$p_lines" | grep 'op=page.evaluate' | median)
awk -v c="$c" -v s="$send" -v e="$eval_" 'BEGIN {
        printf "ratio median puppeteer CDPSession.send / parallel = %.2fx\n", s / c
        printf "ratio median puppeteer page.evaluate / parallel = %.2fx\n", e / c
}'

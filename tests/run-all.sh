#!/usr/bin/env bash
# Runs every test: unit tests in the normal and the sanitizer build, then the
# integration tests against the real stack. Starts the stack if it is not
# running and stops it at the end only if this script started it.
set -euo pipefail
build=${1:-build}
asan=${2:-build-asan}
root=$(cd "$(dirname "$0")/.." && pwd)
stack="$root/deploy/dev/stack"
started=0

cleanup() {
        if [ "$started" = 1 ]; then
                "$stack" down || true
        fi
}
trap cleanup EXIT

echo "== format"
make -s -C "$root" format-check

echo "== unit tests"
(cd "$build" && ctest -L unit --output-on-failure -j2)
echo "== unit tests under address,undefined sanitizers"
(cd "$asan" && ctest -L unit --output-on-failure -j2)

if [ -n "${FUZZ_BUILD:-}" ]; then
        echo "== fuzzing, ${FUZZ_TEST_SECONDS:-10} s per harness"
        "$root/tests/fuzz/run.sh" "$FUZZ_BUILD" "${FUZZ_TEST_SECONDS:-10}"
fi

if ! "$stack" status >/dev/null 2>&1; then
        started=1
fi
"$stack" up
echo "== integration tests (real Kafka, MongoDB stand-in, Chromium)"
(cd "$build" && ctest -L integration --output-on-failure)

# The short cluster scenario: three brokers, the producer pair and three
# nodes on network namespaces; one broker SIGKILL, one node partition,
# ledgers checked (3-5 min). The full set is `make test-cluster`.
echo "== cluster: broker kill and node partition on network namespaces"
if [ "$(id -u)" = 0 ]; then
        "$root/tests/cluster/run.sh" "$build" --short
else
        echo "skipped: network namespaces need root (CI runs as root)"
fi

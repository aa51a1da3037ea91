#!/usr/bin/env bash
# The monitoring files in deploy/monitoring, checked offline with Debian's
# promtool (no Prometheus server needed; stack_prometheus_test runs them
# against a live one):
#   1. the rule file parses (`promtool check rules`);
#   2. its unit tests pass (`promtool test rules`: a firing and a quiet case
#      per alert);
#   3. every dashboard panel query parses as PromQL (each becomes a recording
#      rule in a scratch rule file that promtool checks, Grafana's
#      $__rate_interval replaced by 1m);
#   4. every parallel_* metric the rules and the dashboard use is documented
#      in docs/OPERATIONS.md, so the files, the docs and the code agree on names.
set -euo pipefail
src=${PARALLEL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
mon=$src/deploy/monitoring
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

command -v promtool >/dev/null || fail "promtool not installed (Debian package prometheus; deploy/dev/stack install)"

promtool check rules "$mon/parallel-rules.yml"
promtool check config "$mon/prometheus.yml"
(cd "$mon" && promtool test rules parallel-rules.test.yml)

dash=$mon/parallel-dashboard.json
jq -e '.panels | length > 0' "$dash" >/dev/null || fail "$dash: no panels"
n=$(jq '[.panels[] | select(.type != "row") | .targets[]] | length' "$dash")
[ "$n" -gt 0 ] || fail "$dash: no queries"
{
        echo "groups:"
        echo "  - name: dashboard"
        echo "    rules:"
        jq -r '[.panels[] | select(.type != "row") | .targets[].expr] | to_entries[] |
                "      - record: panel_query_\(.key)\n        expr: \(.value | gsub("\\$__rate_interval"; "1m") | @json)"' "$dash"
} >"$tmp/dash-rules.yml"
promtool check rules "$tmp/dash-rules.yml" >/dev/null ||
        { promtool check rules "$tmp/dash-rules.yml"; fail "a dashboard query does not parse"; }
echo "dashboard: $n queries parse"


# Metric names used (not recording-rule names like priority:parallel_x:sum;
# histogram suffixes stripped to the documented name).
used=$( (cat "$mon/parallel-rules.yml"
        jq -r '.panels[].targets[]?.expr' "$dash") |
        grep -oE '(^|[^:a-z0-9_])parallel_[a-z0-9_]+' | sed -E 's/^[^p]//' |
        sed -E 's/_(bucket|sum|count)$//' | sort -u)
missing=0
for m in $used; do
        grep -q "\`$m[\`{]" "$src/docs/OPERATIONS.md" || { echo "undocumented metric: $m" >&2; missing=1; }
done
[ $missing = 0 ] || fail "metrics used by deploy/monitoring are missing from docs/OPERATIONS.md"
echo "metrics used by rules and dashboard: $(echo "$used" | wc -l), all documented"

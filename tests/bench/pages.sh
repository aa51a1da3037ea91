# pages.sh — sourced by the benchmarks that run without the local stack
# (spin.sh, context_ab.sh): tests/fixtures/pages served by the build's
# fixture_serve. The caller sets ROOT, SERVE and WORK.

# pages_start: serves the pages in the background; sets SERVER_PID and
# BASE (http://127.0.0.1:<port>).
pages_start() {
  "$SERVE" "$ROOT/tests/fixtures/pages" "$WORK/port" >"$WORK/serve.log" &
  SERVER_PID=$!
  for _ in $(seq 50); do [[ -s $WORK/port ]] && break; sleep 0.1; done
  BASE=http://127.0.0.1:$(cat "$WORK/port")
}

# pages_stop: stops the server, if one was started (for cleanup traps).
pages_stop() {
  if [[ -n ${SERVER_PID:-} ]] && kill "$SERVER_PID" 2>/dev/null; then
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}

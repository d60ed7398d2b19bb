# lib.sh - helpers for the `imcap serve` suites (sourced from tests/suites/serve_*.sh).
# start_server LOG ARGS...: starts build/imcap serve --port 0 ARGS in the background with
# its stderr in LOG; sets SERVER_PID and SERVER_PORT (0 if it did not start in 60 s).
start_server() {
  local log=$1; shift
  IMCAP_QUIET=1 ${IMCAP_BIN:-build/imcap} serve --port 0 "$@" >/dev/null 2>"$log" &
  SERVER_PID=$!
  SERVER_PORT=0
  for _ in $(seq 1 600); do
    SERVER_PORT=$(sed -nE 's|.*listening on http://127\.0\.0\.1:([0-9]+)/.*|\1|p' "$log" | head -n 1)
    [ -n "$SERVER_PORT" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  SERVER_PORT=0
  return 1
}

# stop_server PID: SIGTERM, then its exit status (137 if it had to be killed after 30 s).
stop_server() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid"; return $?; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 137
}

# Sums "N passed, N failed[, N skipped]" lines on stdin into P F S.
sum_counts() {
  awk '/^[0-9]+ passed, [0-9]+ failed/ { p += $1; f += $3; if ($5 != "") s += $5 } END { print p+0, f+0, s+0 }'
}

#!/usr/bin/env bash
# bench-serve.sh - `imcap serve` under load on loopback (Debian wrk, a Lua body posting one photo):
# requests/s and p50 / p99 latency at concurrency 1, 2, 8, 32, next to `imcap caption` captioning
# the same photo in one process (the server's overhead), then resident memory before and after
# 10,000 requests (flat: no leak). Ours and the baseline run interleaved in the same run.
#   scripts/bench-serve.sh [--photo P] [--duration S] [--requests N] [--threads T] [--model M]
# Defaults: data/images/cat_720p.jpg (1280x720 JPEG), 10 s per concurrency, 10000 requests,
# 2 workers (this machine has 2 cores), the default model and its decoding (beam 3).
set -euo pipefail
cd "$(dirname "$0")/.."
PHOTO=data/images/cat_720p.jpg DUR=10 NREQ=10000 THREADS=2 MODEL="" SPID=""
while [ $# -gt 0 ]; do
  case "$1" in
    --photo) PHOTO=$2; shift 2 ;;
    --duration) DUR=$2; shift 2 ;;
    --requests) NREQ=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    *) echo "bench-serve.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if ! command -v wrk >/dev/null; then
  echo "bench-serve.sh: installing Debian's wrk" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
make -s -j2 build/imcap
WORK=$(mktemp -d /tmp/imcap-bench-serve.XXXXXX)
trap 'kill $SPID 2>/dev/null || true; rm -rf "$WORK"' EXIT
MARGS=()
[ -n "$MODEL" ] && MARGS=(--model "$MODEL")

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores," \
     "$(grep -o -w -E 'avx512f|avx512bw|avx512vl|avx512_vnni|avx512_bf16|avx2|fma' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "photo: $PHOTO ($(stat -c %s "$PHOTO") bytes); workers: $THREADS; load before: $(cut -d' ' -f1-3 /proc/loadavg)"

cat > "$WORK/post.lua" <<EOF
local f = assert(io.open("$PHOTO", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "image/jpeg"
function response(status, headers, body)
  if status ~= 200 then io.stderr:write("status " .. status .. "\n") end
end
EOF

# The baseline: `imcap caption` on K copies of the photo in one process (model loaded once).
cli() {
  local k=$1 t=$2 list="$WORK/list.txt"
  : > "$list"
  for _ in $(seq 1 "$k"); do echo "$PHOTO" >> "$list"; done
  local t0 t1
  t0=$(date +%s.%N)
  IMCAP_QUIET=1 ./build/imcap caption "${MARGS[@]}" --threads "$t" - < "$list" > /dev/null
  t1=$(date +%s.%N)
  awk -v k="$k" -v a="$t0" -v b="$t1" -v t="$t" \
    'BEGIN { printf "imcap caption, one process, %d photos, %d threads: %.1f photos/s (%.1f ms each per thread)\n", k, t, k / (b - a), 1e3 * (b - a) * t / k }'
}

IMCAP_QUIET=1 ./build/imcap serve --port 0 --threads "$THREADS" --queue 1024 "${MARGS[@]}" 2> "$WORK/serve.log" &
SPID=$!
for _ in $(seq 1 300); do
  PORT=$(sed -nE 's|.*listening on http://127\.0\.0\.1:([0-9]+)/.*|\1|p' "$WORK/serve.log" | head -n 1)
  [ -n "$PORT" ] && break
  sleep 0.1
done
URL="http://127.0.0.1:$PORT/v1/caption"
rss() { awk '/VmRSS|VmHWM/ { printf "%s %s kB  ", $1, $2 }' "/proc/$SPID/status"; echo; }

cli 100 1
cli 100 "$THREADS"
echo
echo "| concurrency | requests/s | p50 ms | p99 ms | non-200 |"
echo "|---|---|---|---|---|"
for c in 1 2 8 32; do
  t=$(( c < 2 ? c : 2 ))
  out=$(wrk -t "$t" -c "$c" -d "${DUR}s" --timeout 30s --latency -s "$WORK/post.lua" "$URL" 2>"$WORK/wrk.err")
  rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
  p50=$(echo "$out" | awk '$1 == "50%" { print $2 }')
  p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
  bad=$(grep -c '^status' "$WORK/wrk.err" || true)
  ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.1f", v / 1000; else if (v ~ /ms$/) printf "%.1f", v + 0; else if (v ~ /m$/) printf "%.0f", v * 60000; else printf "%.0f", v * 1000 }'; }
  echo "| $c | $rps | $(ms "$p50") | $(ms "$p99") | $bad |"
  [ "$c" = 8 ] && RPS8=$rps
done
echo
cli 100 "$THREADS"
echo
echo "resident memory after the runs above: $(rss)"
# wrk runs for a duration: chunks sized by the rate at concurrency 8 until NREQ requests are done.
total=0 bad=0 t0=$(date +%s.%N)
while [ "$total" -lt "$NREQ" ]; do
  d=$(awk -v n=$((NREQ - total)) -v r="$RPS8" 'BEGIN { d = int(n / r) + 1; print (d < 1 ? 1 : d) }')
  wrk -t 2 -c 8 -d "${d}s" --timeout 30s -s "$WORK/post.lua" "$URL" > "$WORK/wrk-long.txt" 2> "$WORK/wrk.err"
  total=$((total + $(awk '/requests in/ { print $1 }' "$WORK/wrk-long.txt")))
  bad=$((bad + $(grep -c '^status' "$WORK/wrk.err" || true)))
done
t1=$(date +%s.%N)
echo "$total more requests (concurrency 8) in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }') s, $bad not 200"
echo "resident memory after them:          $(rss)"
kill -TERM "$SPID"
wait "$SPID" && echo "server exit status 0 after SIGTERM"
echo "log lines: $(grep -c ' POST /v1/caption 200 ' "$WORK/serve.log") requests answered 200; load after: $(cut -d' ' -f1-3 /proc/loadavg)"

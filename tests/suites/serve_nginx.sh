#!/usr/bin/env bash
# Scale-out: Debian's nginx on loopback in front of two `imcap serve` instances (round robin);
# 40 caption requests through nginx must all be answered (200, the same caption as asked of an
# instance directly) and spread over both instances (each instance's log counts its requests).
set -u
cd "$(dirname "$0")/../.."
. tests/serve/lib.sh
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$NGINX" ]; then
  echo "serve_nginx: skipped: needs nginx (run ./setup.sh --deps-only)"
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi
dir=$(mktemp -d /tmp/imcap-nginx.XXXXXX)
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
ko() { fail=$((fail + 1)); echo "FAIL $1"; }
start_server "$dir/a.log" --threads 1 && A_PID=$SERVER_PID A_PORT=$SERVER_PORT
start_server "$dir/b.log" --threads 1 && B_PID=$SERVER_PID B_PORT=$SERVER_PORT
if [ -z "${A_PORT:-}" ] || [ -z "${B_PORT:-}" ] || [ "$A_PORT" = 0 ] || [ "$B_PORT" = 0 ]; then
  cat "$dir"/*.log; echo "0 passed, 1 failed"; exit 1
fi
# A free port for nginx, from the kernel.
N_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$N_PORT|g" -e "s|@A@|$A_PORT|g" -e "s|@B@|$B_PORT|g" \
    docs/nginx-imcap.conf > "$dir/nginx.conf"
"$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
N_PID=$!
up=0
for _ in $(seq 1 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $N_PORT), 1).close()" 2>/dev/null && { up=1; break; }
  sleep 0.1
done
if [ "$up" = 1 ]; then ok "nginx listens on 127.0.0.1:$N_PORT in front of :$A_PORT and :$B_PORT"; else ko "nginx did not start"; cat "$dir/error.log"; fi
python3 - "$N_PORT" "$A_PORT" <<'PY' && ok "40 requests through nginx (4 at a time): all 200, captions as from an instance directly" || ko "requests through nginx"
import http.client, json, sys, threading
n_port, a_port = int(sys.argv[1]), int(sys.argv[2])
body = open("data/images/pets.jpg", "rb").read()
def post(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v1/caption", body, {"Content-Type": "image/jpeg"})
    r = c.getresponse(); d = r.read(); c.close()
    return r.status, json.loads(d).get("caption")
want = post(a_port)
res, lock = [], threading.Lock()
def worker():
    for _ in range(10):
        got = post(n_port)
        with lock: res.append(got)
th = [threading.Thread(target=worker) for _ in range(4)]
[t.start() for t in th]; [t.join() for t in th]
bad = [r for r in res if r != want]
print(f"through nginx: {len(res)} answers, {len(bad)} unlike {want}")
sys.exit(1 if bad or len(res) != 40 or want[0] != 200 else 0)
PY
a=$(grep -c 'POST /v1/caption 200' "$dir/a.log"); b=$(grep -c 'POST /v1/caption 200' "$dir/b.log")
echo "instance A answered $a caption requests, instance B $b (A also got the direct one)"
if [ "$a" -ge 10 ] && [ "$b" -ge 10 ] && [ $((a + b)) -eq 41 ]; then ok "requests spread over both instances ($a / $b)"; else ko "requests not spread: $a / $b"; fi
code=$(python3 -c "
import http.client
c = http.client.HTTPConnection('127.0.0.1', $N_PORT, timeout=30)
c.request('GET', '/health'); print(c.getresponse().status)")
[ "$code" = 200 ] && ok "GET /health through nginx: 200" || ko "GET /health through nginx: $code"
kill -TERM "$N_PID" 2>/dev/null; wait "$N_PID" 2>/dev/null
stop_server "$A_PID"; sa=$?
stop_server "$B_PID"; sb=$?
[ "$sa" = 0 ] && [ "$sb" = 0 ] && ok "both instances exit 0 on SIGTERM" || ko "instance exit statuses $sa $sb"
[ "$fail" = 0 ] && rm -rf "$dir"
echo "$pass passed, $fail failed"

#!/usr/bin/env bash
# API tests of `imcap serve` (tests/serve/api_test.py: every endpoint and error status, multipart,
# truncated and stalled uploads, body over the limit, 100 concurrent requests, full queue, SIGTERM
# with requests in flight) against the optimised build and, when it is built, the ASan+UBSan one.
set -u
cd "$(dirname "$0")/../.."
. tests/serve/lib.sh
P=0 F=0
for bin in build/imcap build-asan/imcap; do
  [ -x "$bin" ] || continue
  echo "-- serve API tests: $bin"
  out=$(mktemp)
  python3 tests/serve/api_test.py "$bin" 2>&1 | tee "$out"
  read -r p f _ < <(sum_counts < "$out")
  grep -qE '^[0-9]+ passed, [0-9]+ failed' "$out" || f=$((f + 1))
  rm -f "$out"
  P=$((P + p)) F=$((F + f))
done
[ "$P" -gt 0 ] || F=$((F + 1))
echo "$P passed, $F failed"

#!/usr/bin/env bash
# Runs the test suite in the optimised build and in the ASan+UBSan build and
# prints one combined "N passed, N failed, N skipped" line last.
set -u
cd "$(dirname "$0")/.."
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
total_p=0 total_f=0 total_s=0 rc=0
for b in build build-asan; do
  echo "== tests: $b"
  if [ "$b" = build-asan ]; then export IMCAP_SANITIZED=1; fi
  out=$(mktemp)
  ./$b/imcap_tests "$@" 2>&1 | tee "$out"
  st=${PIPESTATUS[0]}
  last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
  rm -f "$out"
  if [ -z "$last" ]; then echo "$b: test runner printed no summary (exit $st)"; total_f=$((total_f+1)); rc=1; continue; fi
  p=$(echo "$last" | sed -E 's/^([0-9]+) passed.*/\1/')
  f=$(echo "$last" | sed -E 's/.* ([0-9]+) failed.*/\1/')
  s=$(echo "$last" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p'); s=${s:-0}
  total_p=$((total_p+p)); total_f=$((total_f+f)); total_s=$((total_s+s))
  [ "$st" -eq 0 ] || rc=1
done
# Further suites (server, browser, MPI, Python, fuzz smoke...): tests/suites/NAME.sh, each run from
# the repo root and closing with its own "N passed, N failed[, N skipped]" line. A suite that prints
# no such line counts as one failure. IMCAP_SUITES="a b" runs only those ("none": no suite).
for s in tests/suites/*.sh; do
  [ -e "$s" ] || continue
  name=$(basename "$s" .sh)
  if [ -n "${IMCAP_SUITES:-}" ] && ! [[ " $IMCAP_SUITES " == *" $name "* ]]; then continue; fi
  echo "== suite: $name"
  out=$(mktemp)
  bash "$s" 2>&1 | tee "$out"
  st=${PIPESTATUS[0]}
  last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
  rm -f "$out"
  if [ -z "$last" ]; then echo "suite $name printed no summary (exit $st)"; total_f=$((total_f+1)); rc=1; continue; fi
  p=$(echo "$last" | sed -E 's/^([0-9]+) passed.*/\1/')
  f=$(echo "$last" | sed -E 's/.* ([0-9]+) failed.*/\1/')
  sk=$(echo "$last" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p'); sk=${sk:-0}
  total_p=$((total_p+p)); total_f=$((total_f+f)); total_s=$((total_s+sk))
  [ "$st" -eq 0 ] || rc=1
done
[ "$total_f" -eq 0 ] || rc=1
echo "$total_p passed, $total_f failed, $total_s skipped"
exit $rc

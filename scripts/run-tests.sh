#!/usr/bin/env bash
# Runs the test suite in the optimised build and in the ASan+UBSan build, then
# the further suites of tests/suites/, and prints one combined
# "N passed, N failed, N skipped" line last.
set -u
cd "$(dirname "$0")/.."
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
total_p=0 total_f=0 total_s=0 rc=0

# run_counted LABEL CMD...: runs CMD, shows its output, adds its closing
# "N passed, N failed[, N skipped]" line to the totals (no such line: one failure).
run_counted() {
  local label=$1; shift
  local out st last p f s
  out=$(mktemp)
  "$@" 2>&1 | tee "$out"
  st=${PIPESTATUS[0]}
  last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
  rm -f "$out"
  if [ -z "$last" ]; then echo "$label printed no summary (exit $st)"; total_f=$((total_f+1)); rc=1; return; fi
  p=$(echo "$last" | sed -E 's/^([0-9]+) passed.*/\1/')
  f=$(echo "$last" | sed -E 's/.* ([0-9]+) failed.*/\1/')
  s=$(echo "$last" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p'); s=${s:-0}
  total_p=$((total_p+p)); total_f=$((total_f+f)); total_s=$((total_s+s))
  [ "$st" -eq 0 ] || rc=1
}

for b in build build-asan; do
  echo "== tests: $b"
  if [ "$b" = build-asan ]; then export IMCAP_SANITIZED=1; fi
  run_counted "$b: test runner" "./$b/imcap_tests" "$@"
done
unset IMCAP_SANITIZED
# Further suites (server, browser, MPI, Python, fuzz smoke...): tests/suites/NAME.sh, each run from
# the repo root and closing with its own "N passed, N failed[, N skipped]" line. A suite that prints
# no such line counts as one failure. IMCAP_SUITES="a b" runs only those ("none": no suite).
for s in tests/suites/*.sh; do
  [ -e "$s" ] || continue
  name=$(basename "$s" .sh)
  if [ -n "${IMCAP_SUITES:-}" ] && ! [[ " $IMCAP_SUITES " == *" $name "* ]]; then continue; fi
  echo "== suite: $name"
  run_counted "suite $name" bash "$s"
done
[ "$total_f" -eq 0 ] || rc=1
echo "$total_p passed, $total_f failed, $total_s skipped"
exit $rc

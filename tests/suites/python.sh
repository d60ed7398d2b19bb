#!/usr/bin/env bash
# Suite "python": the binding's pytest tests (tests/python) with Debian's python3-pytest, on the
# checkout's build/libimcap.so.0; pytest's result becomes the "N passed, N failed, N skipped" line.
set -u
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
if ! $PY -c 'import pytest, numpy' 2>/dev/null; then
  echo "python: Debian python3-pytest / python3-numpy missing (./setup.sh --deps-only installs them)"
  echo "0 passed, 1 failed, 0 skipped"; exit 1
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
OPENBLAS_NUM_THREADS=1 $PY -m pytest -p no:cacheprovider -rfEs tests/python 2>&1 | tee "$out"
st=${PIPESTATUS[0]}
last=$(grep -E '^=+ .* in [0-9.]+s' "$out" | tail -n 1)
num() { echo "$last" | grep -oE "[0-9]+ $1" | grep -oE '^[0-9]+' || echo 0; }
p=$(num passed) f=$(num failed) e=$(num error) s=$(num skipped)
f=$((f + e))
if [ "$st" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # pytest failed without counting a test
echo "$p passed, $f failed, $s skipped"
[ "$f" -eq 0 ]

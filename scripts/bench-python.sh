#!/usr/bin/env bash
# bench-python.sh - the Python binding's cost over the C library (scripts/bench_python.py):
# describe() vs the bare C call on the same photos, interleaved, and 1 vs 2 Python threads.
#   scripts/bench-python.sh [N photos, default 50]
set -euo pipefail
cd "$(dirname "$0")/.."
make -s -j2 build/libimcap.so >/dev/null
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; load: $(uptime | sed 's/.*load/load/')"
OPENBLAS_NUM_THREADS=1 /usr/bin/python3 scripts/bench_python.py "${1:-50}"

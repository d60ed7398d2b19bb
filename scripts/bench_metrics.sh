#!/usr/bin/env bash
# bench_metrics.sh - scoring the 1000-image COCO oracle: imcap (C) vs the
# Python peer scripts/coco_metrics_peer.py on the same tokenized captions, in
# the same run; prints both times and the ratio.
# usage: scripts/bench_metrics.sh [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-20}
dir=data/coco-fakecap
make -s bench >/dev/null
c_out=$(nice ./build/bench_metrics "$dir" "$reps")
echo "$c_out"
py_reps=$(( reps < 5 ? reps : 5 ))
py_out=$(nice /usr/bin/python3 scripts/coco_metrics_peer.py bench "$dir" "$py_reps")
echo "$py_out"
c=$(echo "$c_out" | awk '/^c_score_seconds/ {print $2}')
p=$(echo "$py_out" | awk '/^python_peer_seconds/ {print $2}')
awk -v c="$c" -v p="$p" 'BEGIN { printf "python/c ratio %.1f\n", p / c }'

#!/usr/bin/env bash
# bench-text.sh - the caption text pipeline on Flickr8k: imcap (C,
# bench/bench_text.c) vs the recipe in Python (scripts/text_peer.py) on the
# same work in the same run; prints both and the ratio per stage.
# usage: scripts/bench-text.sh [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-5}
make -s bench >/dev/null
c_out=$(nice ./build/bench_text data/flickr8k "$reps")
py_out=$(OPENBLAS_NUM_THREADS=1 nice /usr/bin/python3 scripts/text_peer.py data/flickr8k "$(( reps < 3 ? reps : 3 ))")
echo "$c_out"
echo "$py_out"
for s in load_restrict vocab encode_all 1000_batches; do
  c=$(echo "$c_out" | awk -v k="c_${s}_seconds" '$1 == k {print $2}')
  p=$(echo "$py_out" | awk -v k="python_${s}_seconds" '$1 == k {print $2}')
  awk -v s="$s" -v c="$c" -v p="$p" 'BEGIN { printf "%-14s C %.4f s  Python %.4f s  python/c %.1f\n", s, c, p, p / c }'
done

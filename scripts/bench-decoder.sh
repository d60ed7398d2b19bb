#!/usr/bin/env bash
# Decoder training throughput, C vs PyTorch CPU, in the same run:
# default-size model (D 2048, 120, 300, embedding 100, 120), batch 64,
# T1 = 20 tokens, |V| = 2500 and 9000, BATCHES timed batches after 2 warm-up.
# C: OpenBLAS with its default threads (2 on this machine).
# PyTorch: OPENBLAS_NUM_THREADS=1, torch.set_num_threads(2).
# The machine is shared, so each side runs ROUNDS times, alternating, and the
# best throughput of each is kept (peak memory of that run).
# usage: scripts/bench-decoder.sh [BATCHES [ROUNDS]]   (default 20 3)
set -eu
cd "$(dirname "$0")/.."
n=${1:-20}
rounds=${2:-3}
field() { echo "$1" | sed -E "s/.* $2 ([0-9.]+).*/\1/"; }
make -s bench >/dev/null
printf '%-6s %-8s %12s %12s %7s %10s %10s\n' vocab batches c_tok/s torch_tok/s ratio c_rss_mb torch_rss_mb
for v in 2500 9000; do
  ct=0 cm=0 tt=0 tm=0
  for _ in $(seq "$rounds"); do
    c=$(./build/bench_decoder --vocab "$v" --batches "$n" 2>/dev/null)
    t=$(OPENBLAS_NUM_THREADS=1 /usr/bin/python3 scripts/bench_decoder_torch.py --vocab "$v" --batches "$n" 2>/dev/null)
    x=$(field "$c" tokens/s); if [ "$x" -gt "$ct" ]; then ct=$x cm=$(field "$c" peak_rss_mb); fi
    x=$(field "$t" tokens/s); if [ "$x" -gt "$tt" ]; then tt=$x tm=$(field "$t" peak_rss_mb); fi
  done
  printf '%-6s %-8s %12s %12s %7.2f %10s %10s\n' "$v" "$n" "$ct" "$tt" "$(echo "$ct / $tt" | bc -l)" "$cm" "$tm"
done

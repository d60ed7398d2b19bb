#!/usr/bin/env bash
# Attention decoder: training throughput C vs PyTorch CPU in the same run, and
# generation time per photo (greedy, beam 3).
# Model: the quality run's sizes (grid 7x7x1280 as MobileNet-EdgeTPU's, LSTM
# 256, embedding 128, deep output 256, attention 128, |V| 2500), batch 64,
# T1 = 20, BATCHES timed batches after 1 warm-up, regulariser on.
# C: OpenBLAS single-threaded (OPENBLAS_NUM_THREADS=1). PyTorch:
# OPENBLAS_NUM_THREADS=1 with torch.set_num_threads(2) (the reference
# setting) and torch.set_num_threads(1). The sides alternate ROUNDS times; the
# best of each is kept. tok/cpu_s (tokens per second of process CPU time) is
# the figure other jobs on a shared machine disturb least.
# usage: scripts/bench-attention.sh [BATCHES [ROUNDS [BATCH]]]   (default 3 2 64)
set -eu
cd "$(dirname "$0")/.."
n=${1:-3}
rounds=${2:-2}
b=${3:-64}
. scripts/bench-rates.sh   # field, keep_best
make -s bench >/dev/null
export OPENBLAS_NUM_THREADS=1
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
ct=0 cc=0 cm=0 tt=0 tc=0 tm=0 ut=0 uc=0 um=0 gen=""
for r in $(seq "$rounds"); do
  g=""; [ "$r" = 1 ] && g="--gen 20"
  c=$(./build/bench_attention --batches "$n" --batch "$b" $g 2>/dev/null)
  [ -n "$g" ] && gen=$(echo "$c" | grep "c gen")
  c=$(echo "$c" | grep -v "c gen")
  t=$(/usr/bin/python3 scripts/bench_attention_torch.py --batches "$n" --batch "$b" 2>/dev/null)
  u=$(/usr/bin/python3 scripts/bench_attention_torch.py --batches "$n" --batch "$b" --threads 1 2>/dev/null)
  keep_best c "$c"
  keep_best t "$t"
  keep_best u "$u"
done
printf '%-20s %9s %7s %11s %7s %8s\n' run tok/s vs_c tok/cpu_s vs_c peak_MB
printf '%-20s %9s %7s %11s %7s %8s\n' "C (imcap)" "$ct" 1.00 "$cc" 1.00 "$cm"
printf '%-20s %9s %7.2f %11s %7.2f %8s\n' "PyTorch 2 threads" "$tt" "$(echo "$ct / $tt" | bc -l)" "$tc" \
  "$(echo "$cc / $tc" | bc -l)" "$tm"
printf '%-20s %9s %7.2f %11s %7.2f %8s\n' "PyTorch 1 thread" "$ut" "$(echo "$ct / $ut" | bc -l)" "$uc" \
  "$(echo "$cc / $uc" | bc -l)" "$um"
echo "generation (random model, 20 words, C): $gen"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "vs_c = C's rate / this run's rate (how many times faster C is)"

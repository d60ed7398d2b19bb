#!/usr/bin/env bash
# Decoder training throughput, C vs PyTorch CPU, in the same run:
# default-size model (D 2048, 120, 300, embedding 100, 120), batch 64,
# T1 = 20 tokens, |V| = 2500 and 9000, BATCHES timed batches after 2 warm-up.
# C: its worker pool (IMCAP_THREADS, default: all cores = 2 here), OpenBLAS
# single-threaded inside each thread.
# PyTorch: OPENBLAS_NUM_THREADS=1, torch.set_num_threads(2) (the reference
# setting), and for information also torch.set_num_threads(1).
# The machine is shared, so each side runs ROUNDS times, alternating, and the
# best throughput of each is kept (peak memory of that run). Besides the
# wall-clock rate (tok/s) it prints tokens per second of process CPU time
# (tok/cpus), which other jobs on the machine disturb much less.
# usage: scripts/bench-decoder.sh [BATCHES [ROUNDS]]   (default 20 3)
set -eu
cd "$(dirname "$0")/.."
n=${1:-20}
rounds=${2:-3}
. scripts/bench-rates.sh   # field, keep_best
make -s bench >/dev/null
bash scripts/peers-install.sh   # python3-torch when missing
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-22s %9s %7s %11s %7s %8s\n' vocab run tok/s vs_c tok/cpu_s vs_c peak_MB
for v in 2500 9000; do
  ct=0 cc=0 cm=0 tt=0 tc=0 tm=0 ut=0 uc=0 um=0
  for _ in $(seq "$rounds"); do
    c=$(./build/bench_decoder --vocab "$v" --batches "$n" 2>/dev/null)
    t=$(OPENBLAS_NUM_THREADS=1 /usr/bin/python3 scripts/bench_decoder_torch.py --vocab "$v" --batches "$n" 2>/dev/null)
    u=$(OPENBLAS_NUM_THREADS=1 /usr/bin/python3 scripts/bench_decoder_torch.py --vocab "$v" --batches "$n" \
        --threads 1 2>/dev/null)
    keep_best c "$c"
    keep_best t "$t"
    keep_best u "$u"
  done
  printf '%-6s %-22s %9s %7s %11s %7s %8s\n' "$v" "C (imcap)" "$ct" 1.00 "$cc" 1.00 "$cm"
  printf '%-6s %-22s %9s %7.2f %11s %7.2f %8s\n' "$v" "PyTorch 2 threads" "$tt" "$(echo "$ct / $tt" | bc -l)" \
    "$tc" "$(echo "$cc / $tc" | bc -l)" "$tm"
  printf '%-6s %-22s %9s %7.2f %11s %7.2f %8s\n' "$v" "PyTorch 1 thread" "$ut" "$(echo "$ct / $ut" | bc -l)" \
    "$uc" "$(echo "$cc / $uc" | bc -l)" "$um"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "vs_c = C's rate / this run's rate (how many times faster C is)"

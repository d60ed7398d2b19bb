#!/usr/bin/env bash
# bench-mpi.sh - data-parallel training and sharded extraction, 1 vs 2 ranks (1 thread each), same
# work in the same run, interleaved: time per step, the gradient exchange's share and bytes per step
# (from `imcap train`'s closing line), extraction images/s. Prints one markdown table.
#   IMCAP_EMB     embeddings of train+dev (default /work/artifacts/edgetpu_embedding.emb, else
#                 extracted here for the first IMCAP_TRAIN_IMAGES train images)
#   IMCAP_REPS    repetitions (2), IMCAP_BATCHES training batches per run (60),
#   IMCAP_EXTRACT images extracted per run (160)
set -euo pipefail
cd "$(dirname "$0")/.."
B=build/imcap
REPS=${IMCAP_REPS:-2} BATCHES=${IMCAP_BATCHES:-60} NX=${IMCAP_EXTRACT:-160}
ENC=models/encoders/mobilenet_edgetpu_224_1.0_uint8.gguf
CAPS=data/flickr8k/captions.csv
T=$(mktemp -d /tmp/imcap-bench-mpi.XXXXXX)
trap 'rm -rf "$T"' EXIT
MPI=(mpirun --oversubscribe --allow-run-as-root --bind-to none)
export OPENBLAS_NUM_THREADS=1
EMB=${IMCAP_EMB:-/work/artifacts/edgetpu_embedding.emb}
if [ ! -f "$EMB" ]; then
  head -n "${IMCAP_TRAIN_IMAGES:-1000}" data/flickr8k/train.txt > "$T/list.txt"
  EMB=$T/emb.emb
  IMCAP_THREADS=2 $B extract --encoder "$ENC" --images data/flickr8k/images --list "$T/list.txt" --out "$EMB"
  TRAIN=$T/list.txt
else
  TRAIN=data/flickr8k/train.txt
fi
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
     "avx512f: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no); load at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# tokens/s of the epoch line; exchange seconds, train seconds, bytes from the closing line
train_once() { # label np chunks sizes...
  local label=$1 np=$2 chunks=$3; shift 3
  local cmd=($B train --embeddings "$EMB" --captions "$CAPS" --train-split "$TRAIN" --epochs 1 --batches "$BATCHES"
             --batch 64 --val-batches 0 --checkpoint "$T/c.gguf" --chunks "$chunks" "$@")
  # CPU seconds (user + system, the ranks included): the load-insensitive measure of the work
  local TIMEFORMAT="%U %S" cpu
  if [ "$np" -gt 1 ]; then cpu=$( { time IMCAP_THREADS=1 "${MPI[@]}" -np "$np" "${cmd[@]}" > "$T/out" 2>&1; } 2>&1 )
  else cpu=$( { time IMCAP_THREADS=1 "${cmd[@]}" > "$T/out" 2>&1; } 2>&1 ); fi
  cpu=$(echo "$cpu" | tail -n1 | awk '{print $1 + $2}')
  local tps ex tr by
  tps=$(grep -o '[0-9]* tokens/s, checkpoint' "$T/out" | tail -n1 | cut -d' ' -f1)
  ex=$(sed -nE 's/.*gradient exchange ([0-9.]+) s of ([0-9.]+) s.* ([0-9]+) bytes sent.*slowest rank ([0-9.]+) s.*/\1 \2 \3 \4/p' "$T/out")
  echo "$label $tps ${ex:-0 0 0 0} $cpu" >> "$T/train.txt"
}
sizes_recipe=(--img-hidden 120 --hidden 300 --embed 100 --out-hidden 120)
sizes_large=(--img-hidden 256 --hidden 512 --embed 256 --out-hidden 256)
for r in $(seq "$REPS"); do
  for sz in recipe large; do
    eval "s=(\"\${sizes_$sz[@]}\")"
    train_once "$sz/1proc/chunks1" 1 1 "${s[@]}"
    train_once "$sz/1proc/chunks2" 1 2 "${s[@]}"
    train_once "$sz/2ranks/chunks2" 2 2 "${s[@]}"
  done
  # extraction: the first NX dev images, 1 rank (1 thread), 2 ranks (1 thread each), 1 rank 2 threads
  head -n "$NX" data/flickr8k/dev.txt > "$T/x.txt"
  for cfg in "1 1" "2 1" "1 2"; do
    set -- $cfg
    rm -f "$T/x.emb"*
    t0=$(date +%s.%N)
    if [ "$1" -gt 1 ]; then IMCAP_THREADS=$2 "${MPI[@]}" -np "$1" $B extract --encoder "$ENC" \
        --images data/flickr8k/images --list "$T/x.txt" --out "$T/x.emb" --threads 1 > /dev/null 2>&1
    else IMCAP_THREADS=$2 $B extract --encoder "$ENC" --images data/flickr8k/images --list "$T/x.txt" \
        --out "$T/x.emb" --threads 1 > /dev/null 2>&1; fi
    t1=$(date +%s.%N)
    echo "$1 $2 $(python3 -c "print($NX / ($t1 - $t0))")" >> "$T/extract.txt"
  done
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 - "$T" "$BATCHES" "$NX" <<'PY'
import sys, statistics as st
T, batches, nx = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [l.split() for l in open(T + "/train.txt")]
print(f"| training run ({batches} batches of 64, 1 thread a rank) | tokens/s (median) | vs 1 process | CPU s (all ranks) | vs 1 process | exchange share | waiting for the slowest rank | exchange ms per step | bytes sent per step per rank |")
print("|---|---|---|---|---|---|---|---|---|")
for sz in ("recipe", "large"):
    base = st.median(float(r[1]) for r in rows if r[0] == f"{sz}/1proc/chunks1")
    cbase = st.median(float(r[6]) for r in rows if r[0] == f"{sz}/1proc/chunks1")
    for l in ("1proc/chunks1", "1proc/chunks2", "2ranks/chunks2"):
        rr = [r for r in rows if r[0] == f"{sz}/{l}"]
        tps = st.median(float(r[1]) for r in rr)
        share = st.median(float(r[2]) / float(r[3]) * 100 if float(r[3]) > 0 else 0 for r in rr)
        wait = st.median(float(r[5]) / float(r[3]) * 100 if float(r[3]) > 0 else 0 for r in rr)
        ms = st.median(float(r[2]) / int(batches) * 1000 for r in rr)
        by = int(rr[-1][4])
        cpu = st.median(float(r[6]) for r in rr)
        print(f"| {sz} {l} | {tps:.0f} | {tps / base:.2f}x | {cpu:.1f} | {cpu / cbase:.2f}x | {f'{share:.1f}%' if by else '-'} | "
              f"{f'{wait:.1f}%' if by else '-'} | {f'{ms:.2f}' if by else '-'} | {by if by else '-'} |")
print()
print(f"| extraction ({nx} images, MobileNet-EdgeTPU) | images/s (median) |")
print("|---|---|")
x = [l.split() for l in open(T + "/extract.txt")]
for cfg in (("1", "1"), ("2", "1"), ("1", "2")):
    v = st.median(float(r[2]) for r in x if (r[0], r[1]) == cfg)
    print(f"| {cfg[0]} rank(s), {cfg[1]} thread(s) each | {v:.1f} |")
PY

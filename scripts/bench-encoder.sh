#!/usr/bin/env bash
# bench-encoder.sh - images/s of the C encoder next to PyTorch CPU and ONNX Runtime CPU running
# the same network with the same weights, at batch 1 and 8, in one run.
#   scripts/bench-encoder.sh [--seconds S] [--rounds R] [ENCODER.gguf ...]
# Without files: the converted encoders in models/encoders/ if present, else synthetic
# MobileNetV2 and InceptionV3 (random weights, same architecture) made by bench_encoder.
# Peers read OUR encoder file: scripts/encoder_peer.py builds the PyTorch module from it and
# exports ONNX for scripts/encoder_ort.js. Each peer's output is first checked against ours.
# "C direct" is our code with Winograd switched off (IMCAP_WINOGRAD=0: every convolution a GEMM).
# GFLOP/image and %peak count the direct convolution's FLOPs: Winograd F(4x4,3x3) does fewer
# multiplications for the same output, so an effective rate can pass the machine's peak.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=5
ROUNDS=2
files=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_PER=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) files+=("$1"); shift ;;
  esac
done
WORK=${IMCAP_BENCH_DIR:-/tmp/imcap-bench-encoder}
mkdir -p "$WORK"
make -s -j2 bench >/dev/null
if [ ! -d peers/node_modules/onnxruntime-node ]; then
  echo "installing onnxruntime-node into peers/node_modules" >&2
  (cd peers && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund >/dev/null)
fi
if [ ${#files[@]} -eq 0 ]; then
  for f in models/encoders/*.gguf; do [ -e "$f" ] && files+=("$f"); done
fi
if [ ${#files[@]} -eq 0 ]; then
  for a in mobilenet_v2 inception_v3; do
    ./build/bench_encoder --synth $a --save "$WORK/$a.gguf" >/dev/null
    files+=("$WORK/$a.gguf")
  done
fi
ips() { sed -nE 's/^batch [0-9]+: ([0-9.]+) images.*/\1/p'; }
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }'; }
export OPENBLAS_NUM_THREADS=1   # PyTorch peer: torch.set_num_threads(2) inside
PY=/usr/bin/python3
measured=$(./build/bench_encoder --peak | sed -E 's/peak: ([0-9.]+).*/\1/')
mhz=$(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2 | xargs)
# Nominal single-precision peak: cores x clock x 2 FMA pipes x 8 lanes x 2 flops.
peak=$(awk -v c="$(nproc)" -v m="$mhz" 'BEGIN { printf "%.1f", c * m * 32 / 1000 }')
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores at ${mhz} MHz, AVX2+FMA:"
echo "  nominal peak ${peak} GFLOP/s (%peak below: effective, direct-convolution FLOPs), FMA loop measured now ${measured} GFLOP/s (wall, shared machine)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-32s %5s %10s %10s %10s %10s %8s %8s %7s\n' encoder batch "C img/s" "C direct" "torch" "ORT" "C/torch" "C/ORT" "%peak"
for f in "${files[@]}"; do
  base=$(basename "$f" .gguf)
  case "$base" in resnet50) resnet=$f; continue ;; esac # its peers are torchvision's: below
  out=$(unset OPENBLAS_NUM_THREADS; ./build/bench_encoder --model "$f" --dump "$WORK/$base.in" "$WORK/$base.out")
  shape=$(./build/bench_encoder --model "$f" --batch 1 --seconds 0 | sed -nE 's/.*input ([0-9]+)x([0-9]+)x([0-9]+),.*/\1 \2 \3/p')
  gflop=$(./build/bench_encoder --model "$f" --batch 1 --seconds 0 | sed -nE 's/.*, ([0-9.]+) GFLOP\/image.*/\1/p')
  $PY scripts/encoder_peer.py "$f" --check "$WORK/$base.in" "$WORK/$base.out" --onnx "$WORK/$base.onnx" 2>/dev/null | sed "s/^/  /" >&2
  node scripts/encoder_ort.js "$WORK/$base.onnx" $shape --check "$WORK/$base.in" "$WORK/$base.out" | sed "s/^/  /" >&2
  # CPU time of our code on one thread: less distorted by other processes than wall time.
  for b in 1 8; do
    ms=$(IMCAP_THREADS=1 ./build/bench_encoder --model "$f" --batch $b --seconds 2 --cpu | sed -nE 's/^calling thread CPU: ([0-9.]+) ms.*/\1/p')
    awk -v b=$b -v ms="$ms" -v g="$gflop" -v m="$mhz" 'BEGIN {
      r = g * b / (ms / 1000); printf "  C, 1 thread, batch %d: %.2f CPU-ms/image = %.1f effective GFLOP/s per core (%.0f%% of one core'"'"'s nominal %.1f)\n", b, ms / b, r, 100 * r / (m * 32 / 1000), m * 32 / 1000 }' >&2
  done
  for b in 1 8; do
    # ROUNDS interleaved rounds (C, C direct, torch, ORT, then again): each runtime's best round,
    # so a burst of load on the shared machine does not decide a ratio.
    c=0 d=0 t=0 o=0
    for r in $(seq "$ROUNDS"); do
      x=$(unset OPENBLAS_NUM_THREADS; ./build/bench_encoder --model "$f" --batch $b --seconds "$SECONDS_PER" | ips); c=$(best "$c" "$x")
      x=$(unset OPENBLAS_NUM_THREADS; IMCAP_WINOGRAD=0 ./build/bench_encoder --model "$f" --batch $b --seconds "$SECONDS_PER" | ips); d=$(best "$d" "$x")
      x=$($PY scripts/encoder_peer.py "$f" --bench --batch $b --seconds "$SECONDS_PER" | ips); t=$(best "$t" "$x")
      x=$(node scripts/encoder_ort.js "$WORK/$base.onnx" $shape --bench --batch $b --seconds "$SECONDS_PER" | ips); o=$(best "$o" "$x")
    done
    awk -v n="$base" -v b=$b -v c="$c" -v d="$d" -v t="$t" -v o="$o" -v g="$gflop" -v p="$peak" 'BEGIN {
      printf "%-32s %5d %10.2f %10.2f %10.2f %10.2f %8.2f %8.2f %6.1f%%\n", n, b, c, d, t, o, c/t, c/o, 100*c*g/p }'
  done
done
# ResNet-50: the peers run the standard torchvision resnet50 export (scripts/resnet50_peer.py),
# not our graph; same rounds, each runtime's best.
if [ -n "${resnet:-}" ]; then
  $PY scripts/resnet50_peer.py --onnx "$WORK/resnet50_torchvision.onnx" >/dev/null 2>&1
  gflop=$(./build/bench_encoder --model "$resnet" --batch 1 --seconds 0 | sed -nE 's/.*, ([0-9.]+) GFLOP\/image.*/\1/p')
  for b in 1 8; do
    c=0 d=0 t=0 o=0
    for r in $(seq "$ROUNDS"); do
      x=$(unset OPENBLAS_NUM_THREADS; ./build/bench_encoder --model "$resnet" --batch $b --seconds "$SECONDS_PER" | ips); c=$(best "$c" "$x")
      x=$(unset OPENBLAS_NUM_THREADS; IMCAP_WINOGRAD=0 ./build/bench_encoder --model "$resnet" --batch $b --seconds "$SECONDS_PER" | ips); d=$(best "$d" "$x")
      x=$($PY scripts/resnet50_peer.py --bench --batch $b --seconds "$SECONDS_PER" | ips); t=$(best "$t" "$x")
      x=$(node scripts/encoder_ort.js "$WORK/resnet50_torchvision.onnx" 224 224 3 --bench --batch $b --seconds "$SECONDS_PER" | ips); o=$(best "$o" "$x")
    done
    awk -v n="resnet50 (peers: torchvision)" -v b=$b -v c="$c" -v d="$d" -v t="$t" -v o="$o" -v g="$gflop" -v p="$peak" 'BEGIN {
      printf "%-32s %5d %10.2f %10.2f %10.2f %10.2f %8.2f %8.2f %6.1f%%\n", n, b, c, d, t, o, c/t, c/o, 100*c*g/p }'
  done
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# bench-encoder.sh - images/s of the C encoder next to PyTorch CPU and ONNX Runtime CPU, at
# batch 1 and 8, in one run, interleaved.
#   scripts/bench-encoder.sh [--seconds S] [--rounds R] [ENCODER.gguf ...]
# Without files: the converted encoders in models/encoders/ if present, else synthetic
# MobileNetV2 and InceptionV3 (random weights, same architecture) made by bench_encoder.
# Two kinds of peers:
# - same weights: scripts/encoder_peer.py builds the PyTorch module from OUR encoder file and
#   exports ONNX for scripts/encoder_ort.js; each checks its output against ours first;
# - standard export (the speed a user gets): scripts/encoder_std_peer.py takes torchvision's
#   model of the architecture (mobilenet_v2, inception_v3, resnet50; random weights), exports it
#   with torch.onnx.export (opset 13, dynamic batch), and ORT and PyTorch run it at their best
#   settings (ORT: 1 and 2 intra-op threads, graph optimisation all; PyTorch: 1 and 2 threads,
#   NCHW and channels_last; the best of each per batch). An encoder without a torchvision
#   counterpart (MobileNet-EdgeTPU) has only the same-weights peers.
# Our code runs on each kernel path the CPU supports (IMCAP_CPU=avx512 / avx2), with 1 and 2
# threads (IMCAP_THREADS; the best is kept, as for the peers); C/ORT is the best path against
# ORT's best (standard or same-weights export, whichever is faster).
# GFLOP/image and %peak count the direct convolution's FLOPs: Winograd F(4x4,3x3) does fewer
# multiplications for the same output, so an effective rate can pass the machine's peak; %peak is
# of the FMA loop of that ISA measured at the start (bench_encoder --peak: all cores, each timed in
# its thread CPU time, so it is the cores' peak even on a loaded machine; wall-clock rates are not).
# Peers are installed when missing (scripts/peers-install.sh: apt python3-torch
# python3-torchvision python3-opencv as root, npm onnxruntime-node into peers/).
#   scripts/bench-encoder.sh --int8 [--seconds S] [--rounds R]
# only the two quantized MobileNets: int8 execution (--precision int8) against the float graph
# on each kernel path, and ONNX Runtime's best on the standard torchvision mobilenet_v2 export,
# at batch 1 and 8 (interleaved rounds, each side's best; CPU-ms on 1 thread beside images/s),
# with the int8 kernels' fraction of their measured multiply-accumulate peak (bench_encoder
# --peak-int8). The encoders must have been converted by this version (an int8 program).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=5
ROUNDS=2
files=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_PER=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --int8) INT8=1; shift ;;
    *) files+=("$1"); shift ;;
  esac
done
WORK=${IMCAP_BENCH_DIR:-/tmp/imcap-bench-encoder}
mkdir -p "$WORK"
make -s -j2 bench >/dev/null
bash scripts/peers-install.sh --npm
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
if [ "${INT8:-0}" = 1 ]; then
  best() { awk -v a="$1" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }'; }
  least() { awk -v a="$1" -v b="$2" 'BEGIN { print (b != "" && b + 0 > 0 && b + 0 < a + 0) ? b : a }'; }
  cpu1() { sed -nE 's/^cpu batch [0-9]+, 1 threads[^:]*: ([0-9.]+) CPU-ms.*/\1/p' | sort -g | head -1; }
  PY=/usr/bin/python3
  paths=()
  for p in avx512 avx2; do IMCAP_CPU=$p ./build/imcap --version >/dev/null 2>&1 && paths+=("$p"); done
  [ -s "$WORK/std_mobilenet_v2.onnx" ] || OPENBLAS_NUM_THREADS=1 $PY scripts/encoder_std_peer.py mobilenet_v2 --onnx "$WORK/std_mobilenet_v2.onnx" >/dev/null 2>&1
  echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; CPU features: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512(f|bw|vl|dq|_vnni)|avx_vnni)$' | tr '\n' ' ')"
  declare -A pk
  for p in "${paths[@]}"; do
    pk[$p]=$(IMCAP_CPU=$p ./build/bench_encoder --peak-int8 | sed -E 's/int8 peak: ([0-9.]+) GMAC.*\((.*)\)/\1/')
    echo "  path $p: int8 kernels $(IMCAP_CPU=$p ./build/bench_encoder --peak-int8 | sed -E 's/.*x ([a-z0-9-]+) int8.*/\1/'), their multiply-accumulate loop ${pk[$p]} GMAC/s ($(nproc) threads, thread CPU time)"
  done
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  printf '%-32s %5s %-7s %9s %9s %9s %8s %8s %12s %12s %12s %7s\n' encoder batch path "int8" "float" "ORT std" "int8/fl" "int8/ORT" "CPU-ms int8" "CPU-ms float" "CPU-ms ORT" "%peak"
  for m in mobilenet_v2_1.0_224_quant mobilenet_edgetpu_224_1.0_uint8; do
    f=models/encoders/$m.gguf
    ./build/bench_encoder --model "$f" --precision int8 --batch 1 --seconds 0 >/dev/null ||
      { echo "bench-encoder.sh: $f has no int8 program: imcap convert --tflite data/models/$m.tflite --out $f" >&2; exit 1; }
    gmac=$(./build/bench_encoder --model "$f" --batch 1 --seconds 0 | sed -nE 's/.*, ([0-9.]+) GFLOP\/image.*/\1/p' | awk '{ print $1 / 2 }')
    for b in 1 8; do
      declare -A ci=() cf=() ki=() kf=()
      for p in "${paths[@]}"; do ci[$p]=0 cf[$p]=0 ki[$p]=1e9 kf[$p]=1e9; done
      o=0 oc=1e9
      for r in $(seq "$ROUNDS"); do
        for p in "${paths[@]}"; do
          for prec in int8 float; do
            w=0
            for th in 1 2; do
              w=$(best "$w" "$(IMCAP_CPU=$p IMCAP_THREADS=$th ./build/bench_encoder --model "$f" --precision $prec --batch $b --seconds "$SECONDS_PER" | ips)")
            done
            k=$(IMCAP_CPU=$p IMCAP_THREADS=1 ./build/bench_encoder --model "$f" --precision $prec --batch $b --seconds "$SECONDS_PER" --cpu |
                sed -nE 's/^calling thread CPU: ([0-9.]+) ms.*/\1/p' | awk -v b=$b '{ print $1 / b }')
            if [ $prec = int8 ]; then ci[$p]=$(best "${ci[$p]}" "$w"); ki[$p]=$(least "${ki[$p]}" "$k")
            else cf[$p]=$(best "${cf[$p]}" "$w"); kf[$p]=$(least "${kf[$p]}" "$k"); fi
          done
        done
        y=$(node scripts/encoder_ort.js "$WORK/std_mobilenet_v2.onnx" 224 224 3 --bench --threads 1,2 --batch $b --seconds "$SECONDS_PER" 2>/dev/null)
        o=$(best "$o" "$(echo "$y" | ips)"); oc=$(least "$oc" "$(echo "$y" | cpu1)")
      done
      for p in "${paths[@]}"; do
        awk -v m="$m" -v b=$b -v p=$p -v i="${ci[$p]}" -v f="${cf[$p]}" -v o="$o" -v ki="${ki[$p]}" -v kf="${kf[$p]}" -v oc="$oc" \
            -v g="$gmac" -v pk="${pk[$p]}" -v nc="$(nproc)" 'BEGIN {
          printf "%-32s %5d %-7s %9.2f %9.2f %9.2f %8.2f %8.2f %12.2f %12.2f %12.2f %6.1f%%\n", m, b, p, i, f, o, i / f, i / o, ki, kf, oc,
                 100 * g / (ki / 1000) / (pk / nc) }'
      done
    done
  done
  echo "  (%peak: the int8 run's multiply-accumulates per CPU-second on 1 thread over one core's share of the loop's rate;"
  echo "   ORT std: the standard torchvision mobilenet_v2 export, best of 1 and 2 threads, for both rows: no standard EdgeTPU export)"
  echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  exit 0
fi
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }'; }
least() { awk -v a="$1" -v b="$2" 'BEGIN { print (b != "" && b + 0 > 0 && b + 0 < a + 0) ? b : a }'; }
cpu1() { sed -nE 's/^cpu batch [0-9]+, 1 threads[^:]*: ([0-9.]+) CPU-ms.*/\1/p' | sort -g | head -1; }
export OPENBLAS_NUM_THREADS=1   # PyTorch peers
PY=/usr/bin/python3
paths=()
for p in avx512 avx2; do IMCAP_CPU=$p ./build/imcap --version >/dev/null 2>&1 && paths+=("$p"); done
declare -A peakof
for p in "${paths[@]}"; do
  pk=0
  for _ in 1 2 3; do pk=$(best "$pk" "$(IMCAP_CPU=$p ./build/bench_encoder --peak | sed -E 's/peak: ([0-9.]+).*/\1/')"); done
  peakof[$p]=$pk
done
mhz=$(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2 | xargs)
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512(f|bw|vl|dq|_vnni|_bf16)|avx_vnni)$' | tr '\n' ' ')
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores at ${mhz} MHz; CPU features: ${flags}"
for p in "${paths[@]}"; do echo "  kernel path $p: FMA loop measured now ${peakof[$p]} GFLOP/s (best of 3, all cores, thread CPU time)"; done
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
hdr=$(printf '%-32s %5s' encoder batch; for p in "${paths[@]}"; do printf ' %9s' "C $p"; done
      printf ' %9s %9s %9s %9s %8s %6s' "torch" "ORT" "torch std" "ORT std" "C/ORT" "%peak")
echo "$hdr"
for f in "${files[@]}"; do
  base=$(basename "$f" .gguf)
  case "$base" in resnet50) resnet=$f; continue ;; esac # its peers are torchvision's: below
  case "$base" in
    *mobilenet_v2*) arch=mobilenet_v2 ;;
    *inception_v3*) arch=inception_v3 ;;
    *resnet50*|*resnet_50*) arch=resnet50 ;;
    *) arch= ;;
  esac
  out=$(unset OPENBLAS_NUM_THREADS; ./build/bench_encoder --model "$f" --dump "$WORK/$base.in" "$WORK/$base.out")
  shape=$(./build/bench_encoder --model "$f" --batch 1 --seconds 0 | sed -nE 's/.*input ([0-9]+)x([0-9]+)x([0-9]+),.*/\1 \2 \3/p')
  gflop=$(./build/bench_encoder --model "$f" --batch 1 --seconds 0 | sed -nE 's/.*, ([0-9.]+) GFLOP\/image.*/\1/p')
  $PY scripts/encoder_peer.py "$f" --check "$WORK/$base.in" "$WORK/$base.out" --onnx "$WORK/$base.onnx" 2>/dev/null | sed "s/^/  /" >&2
  node scripts/encoder_ort.js "$WORK/$base.onnx" $shape --check "$WORK/$base.in" "$WORK/$base.out" | sed "s/^/  /" >&2
  if [ -n "$arch" ] && [ ! -s "$WORK/std_$arch.onnx" ]; then
    $PY scripts/encoder_std_peer.py "$arch" --onnx "$WORK/std_$arch.onnx" 2>/dev/null | sed "s/^/  /" >&2
  fi
  std_shape=$(echo $shape | awk '{ print $1, $2, 3 }')
  # CPU time of our code on one thread: less distorted by other processes than wall time.
  for p in "${paths[@]}"; do
    for b in 1 8; do
      ms=$(IMCAP_CPU=$p IMCAP_THREADS=1 ./build/bench_encoder --model "$f" --batch $b --seconds 2 --cpu | sed -nE 's/^calling thread CPU: ([0-9.]+) ms.*/\1/p')
      awk -v p=$p -v b=$b -v ms="$ms" -v g="$gflop" -v pk="${peakof[$p]}" -v nc="$(nproc)" 'BEGIN {
        r = g * b / (ms / 1000); printf "  C %s, 1 thread, batch %d: %.2f CPU-ms/image = %.1f effective GFLOP/s per core (%.0f%% of one core'"'"'s measured %s FMA loop)\n", p, b, ms / b, r, 100 * r * nc / pk, p }' >&2
    done
  done
  for b in 1 8; do
    # ROUNDS interleaved rounds (every C path, then each peer, then again): each runtime's best
    # round, so a burst of load on the shared machine does not decide a ratio. Besides images/s
    # (wall, best of 1 and 2 threads) each side's CPU time per image on 1 thread is kept (the least
    # of the rounds): the load-insensitive comparison on a shared machine.
    declare -A c=() cc=()
    for p in "${paths[@]}"; do c[$p]=0 cc[$p]=1e9; done
    t=0 o=0 ts=0 os=0 oc=1e9 osc=1e9 tsc=1e9
    for r in $(seq "$ROUNDS"); do
      for p in "${paths[@]}"; do
        for th in 1 2; do
          x=$(unset OPENBLAS_NUM_THREADS; IMCAP_CPU=$p IMCAP_THREADS=$th ./build/bench_encoder --model "$f" --batch $b --seconds "$SECONDS_PER" | ips); c[$p]=$(best "${c[$p]}" "$x")
        done
        x=$(unset OPENBLAS_NUM_THREADS; IMCAP_CPU=$p IMCAP_THREADS=1 ./build/bench_encoder --model "$f" --batch $b --seconds "$SECONDS_PER" --cpu | sed -nE 's/^calling thread CPU: ([0-9.]+) ms.*/\1/p')
        cc[$p]=$(least "${cc[$p]}" "$(awk -v x="$x" -v b=$b 'BEGIN { print x / b }')")
      done
      x=$($PY scripts/encoder_peer.py "$f" --bench --batch $b --seconds "$SECONDS_PER" | ips); t=$(best "$t" "$x")
      y=$(node scripts/encoder_ort.js "$WORK/$base.onnx" $shape --bench --threads 1,2 --batch $b --seconds "$SECONDS_PER" 2>/dev/null)
      o=$(best "$o" "$(echo "$y" | ips)"); oc=$(least "$oc" "$(echo "$y" | cpu1)")
      if [ -n "$arch" ]; then
        y=$($PY scripts/encoder_std_peer.py "$arch" --bench --batch $b --seconds "$SECONDS_PER" 2>/dev/null)
        ts=$(best "$ts" "$(echo "$y" | ips)"); tsc=$(least "$tsc" "$(echo "$y" | cpu1)")
        y=$(node scripts/encoder_ort.js "$WORK/std_$arch.onnx" $std_shape --bench --threads 1,2 --batch $b --seconds "$SECONDS_PER" 2>/dev/null)
        os=$(best "$os" "$(echo "$y" | ips)"); osc=$(least "$osc" "$(echo "$y" | cpu1)")
      fi
    done
    cbest=0 pbest=${paths[0]} ccbest=1e9
    for p in "${paths[@]}"; do
      if awk -v a="${c[$p]}" -v b="$cbest" 'BEGIN { exit !(a > b) }'; then cbest=${c[$p]} pbest=$p; fi
      ccbest=$(least "$ccbest" "${cc[$p]}")
    done
    obest=$(best "$o" "$os") ocbest=$(least "$oc" "$osc")
    { printf '%-32s %5d' "$base" "$b"; for p in "${paths[@]}"; do printf ' %9.2f' "${c[$p]}"; done
      awk -v t="$t" -v o="$o" -v ts="$ts" -v os="$os" -v cb="$cbest" -v ob="$obest" -v g="$gflop" -v pk="${peakof[$pbest]}" 'BEGIN {
        sd = (ts > 0) ? sprintf("%9.2f", ts) : sprintf("%9s", "-"); od = (os > 0) ? sprintf("%9.2f", os) : sprintf("%9s", "-")
        printf " %9.2f %9.2f %s %s %8.2f %5.1f%%\n", t, o, sd, od, cb / ob, 100 * cb * g / pk }'; }
    { printf '  CPU-ms/image on 1 thread, batch %d:' "$b"; for p in "${paths[@]}"; do printf ' C %s %.2f,' "$p" "${cc[$p]}"; done
      awk -v oc="$oc" -v osc="$osc" -v tsc="$tsc" -v cb="$ccbest" -v ob="$ocbest" 'BEGIN {
        f = "%.2f"; printf " ORT same-weights " f, oc; if (osc < 1e9) printf ", ORT std " f ", torch std " f, osc, tsc
        printf "; ORT best / C best = %.2f\n", ob / cb }'; }
  done
done
# ResNet-50: the peers run the standard torchvision resnet50 export (scripts/resnet50_peer.py),
# not our graph; same rounds, each runtime's best (C: the best kernel path, 2 threads).
if [ -n "${resnet:-}" ]; then
  $PY scripts/resnet50_peer.py --onnx "$WORK/resnet50_torchvision.onnx" >/dev/null 2>&1
  gflop=$(./build/bench_encoder --model "$resnet" --batch 1 --seconds 0 | sed -nE 's/.*, ([0-9.]+) GFLOP\/image.*/\1/p')
  peak=${peakof[${paths[0]}]}
  for b in 1 8; do
    c=0 d=0 t=0 o=0
    for r in $(seq "$ROUNDS"); do
      x=$(unset OPENBLAS_NUM_THREADS; ./build/bench_encoder --model "$resnet" --batch $b --seconds "$SECONDS_PER" | ips); c=$(best "$c" "$x")
      x=$(unset OPENBLAS_NUM_THREADS; IMCAP_WINOGRAD=0 ./build/bench_encoder --model "$resnet" --batch $b --seconds "$SECONDS_PER" | ips); d=$(best "$d" "$x")
      x=$($PY scripts/resnet50_peer.py --bench --batch $b --seconds "$SECONDS_PER" | ips); t=$(best "$t" "$x")
      x=$(node scripts/encoder_ort.js "$WORK/resnet50_torchvision.onnx" 224 224 3 --bench --threads 1,2 --batch $b --seconds "$SECONDS_PER" 2>/dev/null | ips); o=$(best "$o" "$x")
    done
    awk -v n="resnet50 (peers: torchvision)" -v b=$b -v c="$c" -v d="$d" -v t="$t" -v o="$o" -v g="$gflop" -v p="$peak" 'BEGIN {
      printf "%-32s %5d  C %.2f, C direct %.2f, torch %.2f, ORT %.2f img/s; C/ORT %.2f, %.1f%% of peak\n", n, b, c, d, t, o, c/o, 100*c*g/p }'
  done
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

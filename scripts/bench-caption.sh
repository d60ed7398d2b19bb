#!/usr/bin/env bash
# bench-caption.sh - end-to-end captioning cost (JPEG decode + preprocessing + encoder +
# generation) of the C library next to the PyTorch peer doing the same work, in one run.
#   scripts/bench-caption.sh [-n 1000] [--latency-n 50] [--model M.imcap] [--encoder E.gguf]
# Without --model: an untrained captioner of the default size (decoder 120/300/100/120,
# Flickr8k train vocabulary, random weights) on the encoder (default: the converted
# MobileNetV2, models/encoders/mobilenet_v2_1.0_224_quant.gguf) - the same cost per word as a
# trained one, and its captions always run to max_len (20) words.
# Photos: the first N of data/flickr8k/images (sorted). The peer (scripts/caption_peer.py)
# reads the same model and encoder files, first checks its captions against C's on the latency
# photos, then times itself the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
N=1000 LAT=50 MODEL="" ENC=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n) N=$2; shift 2 ;;
    --latency-n) LAT=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --encoder) ENC=$2; shift 2 ;;
    *) echo "bench-caption.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
WORK=${IMCAP_BENCH_DIR:-/tmp/imcap-bench-caption}
mkdir -p "$WORK"
make -s -j2 bench >/dev/null
bash scripts/peers-install.sh   # python3-torch, python3-opencv when missing
if [ -z "$ENC" ] && [ -n "$MODEL" ]; then
  # The encoder file the model names (C finds it the same way), so both sides run the same network.
  ENC=models/encoders/$(/usr/bin/python3 -c "import sys; sys.path.insert(0, 'scripts'); import caption_peer as c
print(c.Gguf(sys.argv[1]).kv['imcap.captioner.encoder.0.file'])" "$MODEL")
fi
ENC=${ENC:-models/encoders/mobilenet_v2_1.0_224_quant.gguf}
if [ ! -f "$ENC" ]; then
  echo "bench-caption.sh: no encoder $ENC: convert it first (imcap convert --tflite data/models/mobilenet_v2_1.0_224_quant.tflite --out $ENC)" >&2
  exit 1
fi
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; GEMMs: OpenBLAS $(dpkg-query -W -f='${Version}' libopenblas0-pthread 2>/dev/null || echo '?') (sgemm, single-threaded inside our thread pool)"
if [ -z "$MODEL" ]; then
  MODEL=$WORK/untrained.imcap
  ./build/bench_caption --encoder "$ENC" --save-model "$MODEL" -n "$N" --latency-n "$LAT" --threads 2 --dump "$WORK/c_captions.tsv"
else
  ./build/bench_caption --model "$MODEL" -n "$N" --latency-n "$LAT" --threads 2 --dump "$WORK/c_captions.tsv"
fi
echo "== PyTorch peer (torch.set_num_threads(2), OPENBLAS_NUM_THREADS=1), same model and encoder files"
PEER_N=$(( N < 50 ? N : 50 ))
OPENBLAS_NUM_THREADS=1 /usr/bin/python3 scripts/caption_peer.py "$MODEL" --encoder "$ENC" \
  --captions "$WORK/c_captions.tsv" --throughput-n "$PEER_N"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

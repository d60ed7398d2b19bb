#!/usr/bin/env bash
# golden_tflite.sh - regenerates tests/data/tflite_*.golden: both TFLite
# MobileNets run in TensorFlow Lite's own runtime (npm @tensorflow/tfjs-tflite,
# installed on demand into peers/node_modules) on every sample photo, fed the
# exact uint8 input tensors imcap computes (crop + resize), so that the test
# compares the networks only. Needs the build (make) and the data (data/).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/imcap ] || make -j2 all >/dev/null
[ -d peers/node_modules/@tensorflow/tfjs-tflite ] || npm install --prefix peers --no-audit --no-fund >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
photos=(data/images/*.jpg data/images/*.bmp data/images/imagenet-val/*.JPEG)
for m in mobilenet_v2_1.0_224_quant mobilenet_edgetpu_224_1.0_uint8; do
  ./build/imcap classify --tflite "data/models/$m.tflite" --dump-inputs "$tmp" "${photos[@]}" >/dev/null
  if ! node scripts/golden_tflite.js "data/models/$m.tflite" "tests/data/tflite_$m.golden" "$tmp"/*.u8 \
       2>"$tmp/log"; then
    cat "$tmp/log" >&2
    exit 1
  fi
  echo "wrote tests/data/tflite_$m.golden (${#photos[@]} photos)"
done

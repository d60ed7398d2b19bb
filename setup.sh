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

log "data"
bash scripts/get-data.sh "$SHARED"

log "build"
make -j"$(nproc)" all >/dev/null

log "encoders"
mkdir -p models/encoders
# Keras InceptionV3 of nsfwjs (TF.js layers bundle) -> native encoder file.
./build/imcap convert --tfjs data/nsfwjs/dist/models/inception_v3 --out models/encoders/inception_v3.gguf >/dev/null

if [ "$DEPS_ONLY" = 1 ]; then exit 0; fi

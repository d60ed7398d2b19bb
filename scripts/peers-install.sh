#!/usr/bin/env bash
# peers-install.sh - the peers of the benchmark scripts, installed when missing:
#   scripts/peers-install.sh [--npm]
# Debian: python3-torch, python3-torchvision (PyTorch peers and the standard torchvision
# exports), python3-opencv (the captioning peer's JPEG decoding), python3-numpy; as root it
# runs apt-get, otherwise it prints the one line to run and fails. --npm also installs
# onnxruntime-node into peers/node_modules (ONNXRUNTIME_NODE_INSTALL=skip: the CPU build in the
# package, no download of GPU binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for p in python3-torch python3-torchvision python3-opencv python3-numpy; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "peers-install.sh: the benchmark peers need: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi
if [ "${1:-}" = --npm ] && [ ! -d peers/node_modules/onnxruntime-node ]; then
  echo "installing onnxruntime-node into peers/node_modules" >&2
  (cd peers && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund >/dev/null)
fi

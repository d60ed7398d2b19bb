#!/usr/bin/env bash
# bench-image.sh - image decode + preprocessing throughput, imcap vs OpenCV
# (cv2.imread + crop + cv2.resize; needs Debian python3-opencv, not a project
# dependency), single-threaded, same files, same run.
# usage: scripts/bench-image.sh [N_FLICKR=1000] [SIZE=224]
# Flickr8k photos are 224x224: SIZE 224 is decode-dominated (the resize is a
# copy), SIZE 299 exercises the bilinear resize on every image.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000} SIZE=${2:-224}
make -s build/bench_image
LIST=$(mktemp)
trap 'rm -f "$LIST"' EXIT
head -n "$N" data/flickr8k/train.txt | sed 's|^|data/flickr8k/images/|' > "$LIST"
ls data/images/*.jpg data/images/*.bmp >> "$LIST"
# warm the page cache so both read from memory
cat $(cat "$LIST") > /dev/null
# alternate the two, 3 rounds, keep each one's best (the machine is shared)
best() { sort -t' ' -k9 -g | tail -1; }
CS="" PS=""
for r in 1 2 3; do
  CS+="$(nice ./build/bench_image "$LIST" "$SIZE" 1)"$'\n'
  PS+="$(nice /usr/bin/python3 scripts/bench_image_cv2.py "$LIST" "$SIZE" 1)"$'\n'
done
C=$(printf '%s' "$CS" | best)
P=$(printf '%s' "$PS" | best)
echo "$C"
echo "$P"
awk -v c="$C" -v p="$P" 'BEGIN { split(c, a, " "); split(p, b, " "); printf "ratio imcap/opencv %.2f\n", a[9] / b[9] }'

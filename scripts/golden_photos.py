#!/usr/bin/python3
"""golden_photos.py - OpenCV's view of the sample photos, for test_image.c.

For every photo in data/images/ and data/images/imagenet-val/: the size and
CRC-32 of the RGB pixels cv2.imread decodes (libjpeg-turbo, EXIF orientation
applied), and the CRC-32 of the recipe's preprocessing of them (square
center crop, extra pixel on the left/top; cv2.resize INTER_LINEAR to 224 and
to 299). Needs Debian python3-opencv, which is NOT a project dependency; the
output tests/data/photos_golden.txt is committed.
Run: /usr/bin/python3 scripts/golden_photos.py
"""
import os
import sys
import zlib

import cv2

DIRS = ["data/images", "data/images/imagenet-val"]
EXTS = (".jpg", ".jpeg", ".png", ".bmp")


def prep(rgb, size):
    h, w = rgb.shape[:2]
    s = min(w, h)
    dx, dy = w - s, h - s
    x0, y0 = dx - dx // 2, dy - dy // 2
    crop = rgb[y0:y0 + s, x0:x0 + s]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR)


def main(out):
    lines = [f"# name w h crc32(rgb) crc32(prep224) crc32(prep299); OpenCV {cv2.__version__}"]
    for d in DIRS:
        for name in sorted(os.listdir(d)):
            if not name.lower().endswith(EXTS):
                continue
            path = os.path.join(d, name)
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            h, w = rgb.shape[:2]
            crcs = [zlib.crc32(rgb.tobytes())] + [zlib.crc32(prep(rgb, s).tobytes()) for s in (224, 299)]
            lines.append(f"{path} {w} {h} " + " ".join(f"{c:08x}" for c in crcs))
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{out}: {len(lines) - 1} photos")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/photos_golden.txt")

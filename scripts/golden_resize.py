#!/usr/bin/python3
"""golden_resize.py - goldens for imcap_resize_linear_u8 / imcap_image_prepare
from OpenCV's cv2.resize(INTER_LINEAR) on uint8 images.

Run: /usr/bin/python3 scripts/golden_resize.py   (needs Debian python3-opencv,
which is NOT a project dependency: the output tests/data/resize_golden.bin is
committed). Source pixels come from a hash both sides compute, so only the
outputs are stored.

File layout (little-endian): magic "RSZ1", int32 n_cases, then per case
int32 sw, sh, dw, dh, crop (1: square center crop first, as imcap_image_prepare),
followed by dh*dw*3 bytes of cv2 output.
"""
import struct
import sys

import cv2
import numpy as np


def source(w, h):
    # pixel(x, y, c) = bits 13..20 of (x*73856093 ^ y*19349663 ^ c*83492791) mod 2^32
    y, x, c = np.meshgrid(np.arange(h, dtype=np.uint64), np.arange(w, dtype=np.uint64),
                          np.arange(3, dtype=np.uint64), indexing="ij")
    m = np.uint64(0xFFFFFFFF)
    v = ((x * np.uint64(73856093)) & m) ^ ((y * np.uint64(19349663)) & m) ^ ((c * np.uint64(83492791)) & m)
    return ((v >> np.uint64(13)) & np.uint64(255)).astype(np.uint8)


CASES = [  # sw, sh, dw, dh, crop
    (9, 7, 6, 5, 0),        # down, non-square
    (17, 13, 29, 31, 0),    # up, non-square, odd
    (40, 40, 20, 20, 0),    # exact 2x down (OpenCV takes its INTER_AREA shortcut)
    (1, 1, 4, 3, 0),        # single pixel
    (3, 1000, 2, 7, 0),     # extreme aspect
    (37, 50, 96, 96, 0),    # up to square
    (61, 47, 33, 33, 1),    # crop: even difference (14)
    (64, 49, 40, 40, 1),    # crop: odd difference (15) -> extra pixel on the left
    (45, 70, 29, 29, 1),    # crop: portrait, odd difference (25) -> extra on top
    (300, 200, 224, 224, 1),  # realistic: up to 224 after crop
    (500, 375, 128, 128, 1),  # realistic: down after crop
]


def main(out):
    blob = bytearray(b"RSZ1" + struct.pack("<i", len(CASES)))
    for sw, sh, dw, dh, crop in CASES:
        img = source(sw, sh)
        if crop:
            s = min(sw, sh)
            dx, dy = sw - s, sh - s
            x0, y0 = dx - dx // 2, dy - dy // 2
            img = np.ascontiguousarray(img[y0:y0 + s, x0:x0 + s])
        res = cv2.resize(img, (dw, dh), interpolation=cv2.INTER_LINEAR)
        assert res.shape == (dh, dw, 3) and res.dtype == np.uint8
        blob += struct.pack("<5i", sw, sh, dw, dh, crop) + res.tobytes()
    with open(out, "wb") as f:
        f.write(blob)
    print(f"{out}: {len(CASES)} cases, {len(blob)} bytes, OpenCV {cv2.__version__}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/resize_golden.bin")

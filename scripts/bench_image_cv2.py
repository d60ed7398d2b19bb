#!/usr/bin/python3
"""bench_image_cv2.py - the OpenCV peer of bench/bench_image.c: cv2.imread +
BGR->RGB + square center crop + cv2.resize(INTER_LINEAR) per file of LIST,
single-threaded. Needs Debian python3-opencv (not a project dependency).
usage: bench_image_cv2.py LIST [SIZE] [REPS]"""
import sys
import time

import cv2


def main():
    paths = [l.strip() for l in open(sys.argv[1]) if l.strip()]
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 224
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    cv2.setNumThreads(1)
    s = 0
    t0 = time.perf_counter()
    for _ in range(reps):
        for p in paths:
            rgb = cv2.cvtColor(cv2.imread(p, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            h, w = rgb.shape[:2]
            m = min(w, h)
            dx, dy = w - m, h - m
            x0, y0 = dx - dx // 2, dy - dy // 2
            out = cv2.resize(rgb[y0:y0 + m, x0:x0 + m], (size, size), interpolation=cv2.INTER_LINEAR)
            s += int(out[0, 0, 0])
    t = time.perf_counter() - t0
    n = len(paths) * reps
    print(f"opencv images {n} size {size} seconds {t:.3f} images/s {n / t:.1f} (checksum {s})")


if __name__ == "__main__":
    main()

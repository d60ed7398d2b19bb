#!/usr/bin/env python3
"""Python peer of bench/bench_text.c: the recipe's caption pipeline on the
same Flickr8k work (csv module load + split restrict, vocabulary with the
recipe's tokenizer at min count 5, every training caption to indices with
START/END, 1000 generate_batch calls of 64 with max_len 20 using numpy).
Best of R runs of each stage. usage: text_peer.py DATA_DIR [R]"""
import collections
import csv
import re
import sys
import time

import numpy as np

PAD, UNK, START, END = "#PAD#", "#UNK#", "#START#", "#END#"


def split_sentence(sentence):
    return list(filter(lambda x: len(x) > 0, re.split(r"\W+", sentence.lower())))


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "data/flickr8k"
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    best = [1e30] * 4
    for _ in range(reps):
        t0 = time.perf_counter()
        caps = collections.defaultdict(list)
        with open(f"{root}/captions.csv", newline="", encoding="utf-8") as f:
            rows = csv.reader(f)
            next(rows)
            for image, caption in rows:
                caps[image].append(caption)
        train = [l.strip() for l in open(f"{root}/train.txt", encoding="utf-8") if l.strip()]
        train_caps = [caps[n] for n in train]
        t1 = time.perf_counter()
        counts = collections.Counter(t for cs in train_caps for c in cs for t in split_sentence(c))
        vocab = sorted([w for w, n in counts.items() if n >= 5] + [PAD, UNK, START, END])
        vocab = {w: i for i, w in enumerate(vocab)}
        t2 = time.perf_counter()
        unk = vocab[UNK]
        indexed = [[[vocab[START]] + [vocab.get(t, unk) for t in split_sentence(c)] + [vocab[END]] for c in cs]
                   for cs in train_caps]
        indexed = np.array(indexed, dtype=object)
        t3 = time.perf_counter()
        pad = vocab[PAD]
        rng = np.random.default_rng(42)
        checksum = 0
        for _ in range(1000):
            idx = rng.choice(len(indexed), size=64, replace=False)
            batch = [c[rng.integers(len(c))] for c in indexed[idx]]
            width = min(20, max(map(len, batch)))
            m = np.full((64, width), pad, dtype=np.int32)
            for i, c in enumerate(batch):
                row = c[:width]
                m[i, : len(row)] = row
            checksum += int(m[63, 1]) + int(idx[0])
        t4 = time.perf_counter()
        for k, t in enumerate([t1 - t0, t2 - t1, t3 - t2, t4 - t3]):
            best[k] = min(best[k], t)
    print(f"vocab_size {len(vocab)}")
    for name, t in zip(["load_restrict", "vocab", "encode_all", "1000_batches"], best):
        print(f"python_{name}_seconds {t:.6f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes tests/data/flickr8k_vocab_min5.txt: the recipe's vocabulary of the
Flickr8k training split (Python's csv module + the recipe's tokenizer
re.split(r'\\W+', caption.lower()), words with count >= 5 plus the four
special tokens, sorted()). The C test text_flickr8k_real_data compares
imcap_vocab_build's list against it word for word.
Usage: /usr/bin/python3 scripts/golden-vocab.py [data/flickr8k]"""
import collections
import csv
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "data/flickr8k"
captions = collections.defaultdict(list)
with open(f"{root}/captions.csv", newline="", encoding="utf-8") as f:
    rows = csv.reader(f)
    assert next(rows) == ["image", "caption"]
    for image, caption in rows:
        captions[image].append(caption)
train = [line.strip() for line in open(f"{root}/train.txt", encoding="utf-8") if line.strip()]
counts = collections.Counter()
for image in train:
    for caption in captions[image]:
        counts.update(t for t in re.split(r"\W+", caption.lower()) if t)
vocab = sorted([w for w, n in counts.items() if n >= 5] + ["#PAD#", "#UNK#", "#START#", "#END#"])
with open("tests/data/flickr8k_vocab_min5.txt", "w", encoding="utf-8", newline="\n") as f:
    f.write("".join(w + "\n" for w in vocab))
print(f"{len(vocab)} words")

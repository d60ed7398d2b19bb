#!/usr/bin/env python3
"""caption_stats.py - diversity statistics of a COCO results file (imcap eval --results-out):
captions, distinct captions, vocabulary used (distinct words), mean length in words, repetition
rate (captions with a repeated bigram, e.g. "a man in a red shirt and a man in ..."), and the
most frequent caption endings (last two words), which SCST models are known to drift to.

usage: caption_stats.py RESULTS.json [--json]"""
import json
import sys
from collections import Counter


def stats(path):
    with open(path) as f:
        caps = [r["caption"].split() for r in json.load(f)]
    rep = 0
    for w in caps:
        bigrams = list(zip(w, w[1:]))
        rep += len(set(bigrams)) < len(bigrams)
    endings = Counter(" ".join(w[-2:]) for w in caps if len(w) >= 2)
    n = len(caps)
    return {
        "captions": n,
        "distinct": len(set(" ".join(w) for w in caps)),
        "vocabulary": len(set(x for w in caps for x in w)),
        "mean_words": sum(len(w) for w in caps) / n if n else 0.0,
        "repeated_bigram": rep / n if n else 0.0,
        "top_endings": endings.most_common(3),
    }


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    s = stats(sys.argv[1])
    if "--json" in sys.argv[2:]:
        print(json.dumps(s))
    else:
        for k, v in s.items():
            print(f"{k}: {v}")

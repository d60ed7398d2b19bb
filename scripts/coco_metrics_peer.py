#!/usr/bin/env python3
"""coco_metrics_peer.py - an independent, compact Python implementation of the
COCO caption toolkit's BLEU-1..4, ROUGE-L and CIDEr-D on already tokenized
captions (written for imcap from the metric definitions; pycocoevalcap is not
installable offline). It is the peer that cross-checks src/eval/metrics.c and makes
the golden files of tests/test_metrics.c.

usage:
  coco_metrics_peer.py oracle DIR            score DIR/refs_tokenized.json, print JSON
  coco_metrics_peer.py pairs DIR OUT.json    golden for the end-to-end test: refs =
                                             tokenizer_pairs' ptb side, candidates =
                                             refs_tokenized's test fields
  coco_metrics_peer.py edge OUT.json         golden for the edge-case test
  coco_metrics_peer.py bench DIR REPEATS     time scoring of the 1000-image oracle
"""
import json
import math
import sys
import time
from collections import Counter

N = 4
SIGMA = 6.0
BETA = 1.2


def ngrams(words, n_max=N):
    c = Counter()
    for n in range(1, n_max + 1):
        for i in range(len(words) - n + 1):
            c[tuple(words[i:i + n])] += 1
    return c


def bleu(data):
    """data: list of (candidate, [refs]) token-string pairs. Corpus BLEU."""
    testlen = reflen = 0
    guess = [0] * N
    correct = [0] * N
    for cand, refs in data:
        cw = cand.split()
        maxref = Counter()
        lens = []
        for r in refs:
            rw = r.split()
            lens.append(len(rw))
            for g, k in ngrams(rw).items():
                if k > maxref[g]:
                    maxref[g] = k
        c = len(cw)
        best = min(lens, key=lambda l: (abs(l - c), l))
        testlen += c
        reflen += best
        for n in range(N):
            guess[n] += max(0, c - n)
        for g, k in ngrams(cw).items():
            correct[len(g) - 1] += min(k, maxref.get(g, 0))
    scores = []
    prod = 1.0
    for n in range(N):
        prod *= (correct[n] + 1e-15) / (guess[n] + 1e-9)
        scores.append(prod ** (1.0 / (n + 1)))
    ratio = (testlen + 1e-15) / (reflen + 1e-9)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores, dict(testlen=testlen, reflen=reflen, guess=guess, correct=correct)


def lcs_len(a, b):
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(data):
    per = []
    for cand, refs in data:
        cw = cand.split(" ")  # the toolkit splits on one space: "" is one empty token
        pbest = rbest = 0.0
        for r in refs:
            rw = r.split(" ")
            l = lcs_len(rw, cw)
            pbest = max(pbest, l / len(cw))
            rbest = max(rbest, l / len(rw))
        if pbest and rbest:
            per.append((1 + BETA ** 2) * pbest * rbest / (rbest + BETA ** 2 * pbest))
        else:
            per.append(0.0)
    return sum(per) / len(per), per


def cider_d(data):
    df = Counter()
    for _, refs in data:
        seen = set()
        for r in refs:
            seen.update(ngrams(r.split()).keys())
        df.update(seen)
    log_n = math.log(len(data))

    def vec(words):
        counts = ngrams(words)
        v = [dict() for _ in range(N)]
        norm = [0.0] * N
        for g, k in counts.items():
            w = k * (log_n - math.log(max(1.0, df.get(g, 0))))
            v[len(g) - 1][g] = w
            norm[len(g) - 1] += w * w
        return v, [math.sqrt(x) for x in norm], max(0, len(words) - 1)

    per = []
    for cand, refs in data:
        vc, nc, lc = vec(cand.split())
        total = 0.0
        for r in refs:
            vr, nr, lr = vec(r.split())
            pen = math.exp(-((lc - lr) ** 2) / (2 * SIGMA ** 2))
            for n in range(N):
                s = sum(min(w, vr[n][g]) * vr[n][g] for g, w in vc[n].items() if g in vr[n])
                if nc[n] != 0 and nr[n] != 0:
                    s /= nc[n] * nr[n]
                total += s * pen
        per.append(total / N / len(refs) * 10.0)
    return sum(per) / len(per), per


def score(data):
    b, internals = bleu(data)
    r, _ = rouge_l(data)
    c, _ = cider_d(data)
    out = {"Bleu_%d" % (i + 1): b[i] for i in range(N)}
    out["ROUGE_L"] = r
    out["CIDEr"] = c
    out["bleu_internals"] = internals
    return out


def oracle_data(d):
    return [(e["test"], e["refs"]) for e in json.load(open(d + "/refs_tokenized.json"))]


EDGE_CASES = {
    "empty_candidate": [("", ["a dog runs", "the dog is running"]), ("a cat sits", ["a cat sits on a mat"])],
    "longer_than_refs": [("a small brown dog runs fast across the big green field today",
                          ["a dog runs", "a brown dog runs across a field"]),
                         ("two people walk", ["two people walk on a beach", "people walking"])],
    "single_image": [("a man rides a horse", ["a man riding a horse", "a person on a horse"])],
    "uneven_refs": [("a red bus", ["a red bus on a street"]),
                    ("a plate of food", ["a plate with food", "food on a plate", "a white plate of food",
                                         "a meal on a plate", "a plate of pasta", "dinner on a table",
                                         "a dish of food"]),
                    ("a cat on a bed", ["a cat sleeping on a bed", "a cat lies on a bed"])],
    "unicode": [("un café près de la tour", ["un café à côté de la tour", "la tour et un café"]),
                ("кошка на диване", ["кошка спит на диване", "серая кошка на диване"]),
                ("东京 的 街道", ["东京 的 街道 上 有 车", "一条 街道"])],
    "repeated_ngrams": [("the the the the", ["the cat is on the mat", "there is a cat on the mat"]),
                        ("a a dog dog", ["a dog and a dog", "two dogs"])],
}


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "oracle":
        print(json.dumps(score(oracle_data(sys.argv[2])), indent=1))
    elif cmd == "pairs":
        d = sys.argv[2]
        refs = {}
        for p in json.load(open(d + "/tokenizer_pairs.json")):
            refs.setdefault(p["image_id"], []).append(p["ptb"])
        data = [(e["test"], refs[e["image_id"]]) for e in json.load(open(d + "/refs_tokenized.json"))]
        out = score(data)
        out["about"] = ("scripts/coco_metrics_peer.py pairs: tokenizer_pairs.json ptb side as references, "
                        "refs_tokenized.json test fields as candidates")
        json.dump(out, open(sys.argv[3], "w"), indent=1)
    elif cmd == "edge":
        out = {}
        for name, data in EDGE_CASES.items():
            s = score(data)
            s["items"] = [{"candidate": c, "refs": r} for c, r in data]
            out[name] = s
        json.dump(out, open(sys.argv[2], "w"), indent=1, ensure_ascii=False)
    elif cmd == "bench":
        data = oracle_data(sys.argv[2])
        reps = int(sys.argv[3])
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            score(data)
            best = min(best, time.perf_counter() - t)
        print("python_peer_seconds %.6f" % best)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

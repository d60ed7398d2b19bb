#!/usr/bin/python3
"""golden_generate.py - PyTorch golden for caption generation (tests/test_generate.c).

Makes a small decoder with random weights (numpy, fixed seed), 6 image embeddings, and runs the
PyTorch implementation of the generation rules (scripts/caption_peer.py, class Decoder: greedy
and beam search with length normalisation, PAD/START/UNK masked, END masked first) on them.
Writes tests/data/generate_golden.json: config, vocabulary, weights (row-major, the C tensor
layout of src/decoder/decoder.h), embeddings and, per embedding and setting, the captions (word ids),
log-probabilities, scores and whether they ended.

Run: OPENBLAS_NUM_THREADS=1 /usr/bin/python3 scripts/golden_generate.py
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from caption_peer import Decoder  # noqa: E402

SETTINGS = [  # (name, beam, n_best, alpha)
    ("greedy", 1, 1, 0.7),
    ("beam3_alpha0.7", 3, 3, 0.7),
    ("beam5_alpha0", 5, 2, 0.0),
    ("beam4_alpha1", 4, 4, 1.0),
]


def main():
    torch.set_num_threads(2)
    rng = np.random.default_rng(20261125)
    words = ["#END#", "#PAD#", "#START#", "#UNK#"] + sorted(
        "a air ball beach bike black boy dog girl grass in jumps man on red runs the through water white".split())
    V, D, I1, H, E, O = len(words), 8, 7, 10, 6, 9
    cfg = {"n_img": D, "n_img1": I1, "n_hid": H, "n_emb": E, "n_out1": O, "n_vocab": V, "pad_id": 1}
    shapes = [("img1.weight", (I1, D)), ("img1.bias", (I1,)), ("img2.weight", (H, I1)), ("img2.bias", (H,)),
              ("embed.weight", (V, E)), ("lstm.weight_ih", (4 * H, E)), ("lstm.weight_hh", (4 * H, H)),
              ("lstm.bias", (4 * H,)), ("out1.weight", (O, H)), ("out1.bias", (O,)),
              ("out2.weight", (V, O)), ("out2.bias", (V,))]
    w = {n: (rng.standard_normal(s) * 0.9).astype(np.float32) for n, s in shapes}
    w["out2.bias"][0] += 0.8  # captions end at various lengths
    emb = (rng.standard_normal((6, D)) * 1.5).astype(np.float32)
    t = {n: torch.from_numpy(a) for n, a in w.items()}
    out = {"config": cfg, "vocab": words, "max_len": 12,
           "weights": {n: [float(x) for x in a.reshape(-1)] for n, a in w.items()},
           "embeddings": [[float(x) for x in e] for e in emb], "results": []}
    with torch.no_grad():
        for e in emb:
            x = torch.from_numpy(e).reshape(1, -1)
            res = {}
            for name, beam, n_best, alpha in SETTINGS:
                dec = Decoder(t, words, 12, alpha)
                if beam == 1:
                    ids, lp, ended = dec.greedy(x)
                    hyps = [(lp / (len(ids) + ended) ** alpha, ids, lp, ended)]
                else:
                    hyps = dec.beam(x, beam, n_best)
                res[name] = [{"words": ids, "logprob": lp, "score": sc, "ended": bool(en)}
                             for sc, ids, lp, en in hyps]
            out["results"].append(res)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "generate_golden.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""caption_peer.py - the PyTorch peer of `imcap caption` for bench-caption.sh.

Reads OUR captioner file (docs/FORMATS.md "Captioner file") and encoder file (the encoder
network is built by scripts/encoder_peer.py from the same file), and captions photos the same
way in PyTorch: OpenCV JPEG decoding, square center crop, cv2.resize INTER_LINEAR (what the C
preprocessing reproduces bit-exactly), x = px/255*scale + bias, encoder, then greedy or beam-3
decoding with PAD/START/UNK masked and END masked at the first step.

  caption_peer.py MODEL.imcap --encoder ENC.gguf --captions C.tsv [--throughput-n N]

C.tsv is bench_caption's --dump: "path<TAB>greedy<TAB>beam-3" lines; the peer reports how many
of its captions equal the C ones (the same work), then its per-photo latency (decode + encode +
generate, greedy and beam 3) and its throughput over the first N of the dumped photos, repeated
if needed. Run with /usr/bin/python3, OPENBLAS_NUM_THREADS=1; uses torch.set_num_threads(2).
"""
import argparse
import os
import sys
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from encoder_peer import Encoder, Gguf  # noqa: E402


class Decoder:
    """The decoder of docs/FORMATS.md ("Decoder checkpoint" tensors) with the generation rules of
    src/decoder/generate.c. t: dict of torch tensors by tensor name (without a "decoder." prefix)."""

    def __init__(self, t, words, max_len, alpha):
        self.img1_w, self.img1_b = t["img1.weight"], t["img1.bias"]
        self.img2_w, self.img2_b = t["img2.weight"], t["img2.bias"]
        self.emb = t["embed.weight"]
        self.wih, self.whh, self.b = t["lstm.weight_ih"], t["lstm.weight_hh"], t["lstm.bias"]
        self.out1_w, self.out1_b = t["out1.weight"], t["out1.bias"]
        self.out2_w, self.out2_b = t["out2.weight"], t["out2.bias"]
        self.words = list(words)
        ix = {w: i for i, w in enumerate(self.words)}
        self.start, self.end = ix["#START#"], ix["#END#"]
        self.mask = torch.zeros(len(self.words), dtype=torch.float64)
        for w in ("#PAD#", "#START#", "#UNK#"):
            self.mask[ix[w]] = float("-inf")
        self.first_mask = self.mask.clone()
        self.first_mask[self.end] = float("-inf")
        self.max_len, self.alpha = max_len, alpha

    def init_state(self, img):
        a = F.elu(img @ self.img1_w.T + self.img1_b)
        h = F.elu(a @ self.img2_w.T + self.img2_b)
        return h, h.clone()

    def step(self, tok, h, c):
        g = self.emb[tok] @ self.wih.T + h @ self.whh.T + self.b
        i, f, gg, o = g.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
        h = torch.sigmoid(o) * torch.tanh(c)
        logits = F.elu(h @ self.out1_w.T + self.out1_b) @ self.out2_w.T + self.out2_b
        return logits, h, c

    def logp(self, logits, t):
        return torch.log_softmax(logits.double() + (self.first_mask if t == 0 else self.mask), -1)

    def greedy(self, img):
        """-> (word ids, logprob, ended)"""
        h, c = self.init_state(img)
        tok, out, total, ended = torch.tensor([self.start]), [], 0.0, False
        for t in range(self.max_len):
            logits, h, c = self.step(tok, h, c)
            lp = self.logp(logits[0], t)
            k = int(torch.argmax(lp))
            total += float(lp[k])
            if k == self.end:
                ended = True
                break
            out.append(k)
            tok = torch.tensor([k])
        return out, total, ended

    def beam(self, img, K=3, n_best=1):
        """The C algorithm (src/decoder/generate.c): extensions ranked by summed log-probability; an END
        extension among the first K finishes a caption, others fill the K prefixes; finished
        captions ranked by logprob / len^alpha; early stop once K are finished and no prefix can
        beat the K-th. -> n_best of (score, word ids, logprob, ended), best first."""
        h, c = self.init_state(img)
        live = [([], 0.0)]
        tok = torch.tensor([self.start])
        fin = []
        bound_div = (self.max_len + 1) ** self.alpha
        for t in range(self.max_len):
            logits, h, c = self.step(tok, h, c)
            lp = self.logp(logits, t)
            tot = lp + torch.tensor([s for _, s in live], dtype=torch.float64).unsqueeze(1)
            vals, idx = torch.topk(tot.reshape(-1), min(2 * K, tot.numel()))
            nxt, rows, toks = [], [], []
            for r, (v, i) in enumerate(zip(vals.tolist(), idx.tolist())):
                if v == float("-inf") or len(nxt) == K:
                    break
                row, k = divmod(i, lp.shape[1])
                if k == self.end:
                    if r < K:
                        words = live[row][0]
                        fin.append((v / (len(words) + 1) ** self.alpha, words, v, True))
                    continue
                nxt.append((live[row][0] + [k], v))
                rows.append(row)
                toks.append(k)
            fin.sort(key=lambda x: -x[0])
            fin = fin[:K]
            live = nxt
            if not live:
                break
            h, c, tok = h[rows], c[rows], torch.tensor(toks)
            if len(fin) == K and live[0][1] / bound_div <= fin[-1][0]:
                live = []
                break
        for words, s in live:
            fin.append((s / len(words) ** self.alpha, words, s, False))
        fin.sort(key=lambda x: -x[0])
        return fin[:n_best]


class Captioner:
    """Our captioner file + its encoder file(s) (comma-separated, in the model's order)."""

    def __init__(self, model_path, encoder_paths):
        g = Gguf(model_path)
        kv = g.kv
        if kv.get("general.architecture") != "imcap.captioner":
            raise ValueError(f"{model_path}: not an imcap captioner file")
        t = {k[len("decoder."):]: torch.from_numpy(v.copy()) for k, v in g.tensors.items()}
        self.dec = Decoder(t, kv["imcap.captioner.vocab"], int(kv["imcap.captioner.gen.max_len"]),
                           float(kv["imcap.captioner.gen.length_alpha"]))
        paths = encoder_paths.split(",")
        if len(paths) != int(kv["imcap.captioner.encoder.count"]):
            raise ValueError(f"{model_path}: needs {kv['imcap.captioner.encoder.count']} encoder files")
        self.parts = []
        for k, p in enumerate(paths):
            e = f"imcap.captioner.encoder.{k}."
            self.parts.append({
                "size": [int(v) for v in kv[e + "preproc.size"]],
                "scale": np.asarray(kv[e + "preproc.scale"], dtype=np.float32),
                "bias": np.asarray(kv[e + "preproc.bias"], dtype=np.float32),
                "output": kv[e + "output"],
                "net": Encoder(p).eval()})

    def preprocess(self, path):
        """-> one NCHW input per encoder."""
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: cannot decode")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        side = min(h, w)
        dx, dy = w - side, h - side
        x0, y0 = dx - dx // 2, dy - dy // 2
        crop = rgb[y0:y0 + side, x0:x0 + side]
        xs = []
        for part in self.parts:
            small = cv2.resize(crop, (part["size"][1], part["size"][0]), interpolation=cv2.INTER_LINEAR)
            x = small.astype(np.float32) / 255.0 * part["scale"] + part["bias"]
            xs.append(torch.from_numpy(x).permute(2, 0, 1).unsqueeze(0).contiguous())
        return xs

    def embed(self, xs):
        return torch.cat([p["net"](x, p["output"]).reshape(1, -1) for p, x in zip(self.parts, xs)], 1)

    def text(self, ids):
        return " ".join(self.dec.words[k] for k in ids)

    def greedy(self, img):
        return self.text(self.dec.greedy(img)[0])

    def beam(self, img, K=3):
        return self.text(self.dec.beam(img, K)[0][1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--encoder", required=True)
    ap.add_argument("--captions", required=True)
    ap.add_argument("--throughput-n", type=int, default=200)
    a = ap.parse_args()
    torch.set_num_threads(2)
    cap = Captioner(a.model, a.encoder)
    rows = [line.rstrip("\n").split("\t") for line in open(a.captions, encoding="utf-8") if line.strip()]
    with torch.no_grad():
        for path, _, _ in rows[:3]:  # warm up
            cap.greedy(cap.embed(cap.preprocess(path)))
        same = {"greedy": 0, "beam 3": 0}
        times = {"greedy": [], "beam 3": []}
        for path, c_greedy, c_beam in rows:
            for mode, want in (("greedy", c_greedy), ("beam 3", c_beam)):
                t0 = time.perf_counter()
                x = cap.preprocess(path)
                t1 = time.perf_counter()
                e = cap.embed(x)
                t2 = time.perf_counter()
                got = cap.greedy(e) if mode == "greedy" else cap.beam(e, 3)
                t3 = time.perf_counter()
                times[mode].append((t1 - t0, t2 - t1, t3 - t2, t3 - t0))
                same[mode] += got == want
        for mode in ("greedy", "beam 3"):
            arr = np.array(times[mode]) * 1e3
            med = np.median(arr, axis=0)
            print(f"peer {mode:7s} decode {arr[:, 0].mean():6.2f}/{med[0]:6.2f}  encode {arr[:, 1].mean():6.2f}/"
                  f"{med[1]:6.2f}  generate {arr[:, 2].mean():6.2f}/{med[2]:6.2f}  total {arr[:, 3].mean():6.2f}/"
                  f"{med[3]:6.2f} (ms mean/median); captions equal to C: {same[mode]}/{len(rows)}")
        n = a.throughput_n
        paths = [rows[i % len(rows)][0] for i in range(n)]
        t0 = time.perf_counter()
        for p in paths:
            cap.greedy(cap.embed(cap.preprocess(p)))
        dt = time.perf_counter() - t0
        print(f"peer throughput greedy: {n} photos in {dt:.2f} s = {n / dt:.2f} photos/s ({1e3 * dt / n:.2f} ms/photo)")


if __name__ == "__main__":
    main()

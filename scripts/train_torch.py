#!/usr/bin/python3
"""train_torch.py - the same captioning architecture trained in PyTorch, as a peer.

Reads the same embeddings file (docs/FORMATS.md "Embeddings file"), captions CSV and splits
as `imcap train`, builds the same model (dense 120 ELU -> dense 300 ELU = h0 = c0; embedding 100;
LSTM 300; dense 120 ELU -> |V| logits; Keras initialisers), trains it with the same protocol
(Adam, random images with one random caption each, max length, validation loss per epoch, the
best-validation weights kept), captions the evaluation split greedily and with beam search, and
writes COCO-format results JSON files that `imcap score` scores against the same references.

Usage: /usr/bin/python3 scripts/train_torch.py --emb E.f32 --captions captions.csv \
          --train train.txt --val dev.txt --out DIR [--epochs N --batches N --batch B --lr LR]

Defaults are `imcap train`'s (12 epochs x 1000 batches of 64, Adam 1e-3 with betas 0.9/0.999 and
eps 1e-8, max 20 tokens with START and END, words seen >= 5 times) and `imcap eval`'s generation
(at most 20 words; PAD, START and UNK masked out and the rest renormalised, END not allowed
first; beam ranking by log-probability / (words + END)^0.7).
"""
import argparse, csv, json, math, os, re, struct, sys, time, zlib

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np
import torch
import torch.nn as nn

# 2 intra-op threads as the project's peers; IMCAP_TORCH_THREADS=1 on a crowded machine, where
# OpenMP's 2-thread barriers waste most of the CPU (the results do not depend on it).
torch.set_num_threads(int(os.environ.get("IMCAP_TORCH_THREADS", "2")))
SPECIAL = ["#PAD#", "#UNK#", "#START#", "#END#"]


def read_embeddings(path):
    with open(path, "rb") as f:
        hdr = f.read(128)
        if len(hdr) < 128 or hdr[:8] != b"IMCAPEMB":
            sys.exit(f"{path}: not an imcap embeddings file")
        version, hsize, dim, width, count = struct.unpack_from("<IIIIQ", hdr, 8)
        if version != 1 or hsize != 128:
            sys.exit(f"{path}: unsupported version {version}")
        if zlib.crc32(hdr[:124]) != struct.unpack_from("<I", hdr, 124)[0]:
            sys.exit(f"{path}: header CRC mismatch")
        rec = width + 4 * dim + 4
        data = f.read(count * rec)
        if len(data) != count * rec:
            sys.exit(f"{path}: truncated")
    names, rows = [], np.empty((count, dim), np.float32)
    for i in range(count):
        r = data[i * rec:(i + 1) * rec]
        if zlib.crc32(r[:-4]) != struct.unpack_from("<I", r, rec - 4)[0]:
            sys.exit(f"{path}: row {i} CRC mismatch")
        names.append(r[:width].split(b"\0", 1)[0].decode("utf-8"))
        rows[i] = np.frombuffer(r[width:width + 4 * dim], np.float32)
    return names, rows


def tokenize(s):
    # the recipe: lowercase, split on runs of non-word characters (non-ASCII bytes are word bytes)
    s = s.encode("utf-8").lower()
    return [t.decode("utf-8") for t in re.split(rb"[^A-Za-z0-9_\x80-\xff]+", s) if t]


def read_captions(path):
    caps = {}
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.reader(f)
        next(r)
        for name, cap in r:
            caps.setdefault(name, []).append(cap)
    return caps


class Decoder(nn.Module):
    def __init__(self, d, v, img1=120, hid=300, emb=100, out1=120):
        super().__init__()
        self.img1, self.img2 = nn.Linear(d, img1), nn.Linear(img1, hid)
        self.emb = nn.Embedding(v, emb)
        self.lstm = nn.LSTM(emb, hid, batch_first=True)
        self.out1, self.out2 = nn.Linear(hid, out1), nn.Linear(out1, v)
        for lin in (self.img1, self.img2, self.out1, self.out2):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        nn.init.uniform_(self.emb.weight, -0.05, 0.05)
        nn.init.xavier_uniform_(self.lstm.weight_ih_l0)
        nn.init.orthogonal_(self.lstm.weight_hh_l0)
        nn.init.zeros_(self.lstm.bias_ih_l0)
        nn.init.zeros_(self.lstm.bias_hh_l0)
        with torch.no_grad():
            self.lstm.bias_ih_l0[hid:2 * hid] = 1.0  # forget gate bias 1, as Keras

    def init_state(self, img):
        h0 = nn.functional.elu(self.img2(nn.functional.elu(self.img1(img))))
        return h0.unsqueeze(0), h0.unsqueeze(0).clone()

    def forward(self, img, tokens):
        h0, c0 = self.init_state(img)
        out, _ = self.lstm(self.emb(tokens), (h0, c0))
        return self.out2(nn.functional.elu(self.out1(out)))

    @torch.no_grad()
    def step(self, tokens, state):
        out, state = self.lstm(self.emb(tokens).unsqueeze(1), state)
        return torch.log_softmax(self.out2(nn.functional.elu(self.out1(out[:, 0]))), -1), state


def batch_tokens(caps, w2i, max_len, pad):
    seqs = []
    for c in caps:
        ids = [w2i["#START#"]] + [w2i.get(t, w2i["#UNK#"]) for t in tokenize(c)] + [w2i["#END#"]]
        seqs.append(ids[:max_len])
    width = max(len(s) for s in seqs)
    return torch.tensor([s + [pad] * (width - len(s)) for s in seqs])


@torch.no_grad()
def beam_search(model, img, w2i, i2w, k, max_len, alpha):
    banned = [w2i[t] for t in ("#PAD#", "#START#", "#UNK#")]
    state = model.init_state(img[None])
    beams = [(0.0, [w2i["#START#"]], state)]
    done = []
    for _ in range(max_len):
        cand = []
        for lp, seq, st in beams:
            logp, nst = model.step(torch.tensor([seq[-1]]), st)
            logp = logp[0].clone()
            logp[banned] = -math.inf
            if len(seq) == 1:
                logp[w2i["#END#"]] = -math.inf
            logp = logp - torch.logsumexp(logp, 0)
            top = torch.topk(logp, k)
            for v, i in zip(top.values.tolist(), top.indices.tolist()):
                cand.append((lp + v, seq + [i], nst))
        cand.sort(key=lambda x: -x[0])
        beams = []
        for lp, seq, st in cand:
            if seq[-1] == w2i["#END#"]:
                done.append((lp / (len(seq) - 1) ** alpha, seq))
            else:
                beams.append((lp, seq, st))
            if len(beams) == k:
                break
        if len(done) >= k or not beams:
            break
    if not done:
        done = [(lp / (len(seq) - 1) ** alpha, seq) for lp, seq, _ in beams]
    best = max(done, key=lambda x: x[0])[1]
    return " ".join(i2w[t] for t in best[1:] if t != w2i["#END#"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--emb", required=True)
    ap.add_argument("--captions", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batches", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-len", type=int, default=20)
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--beam", type=int, default=3)
    ap.add_argument("--alpha", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    names, rows = read_embeddings(a.emb)
    row_of = {n: i for i, n in enumerate(names)}
    caps = read_captions(a.captions)
    split = lambda p: [l.strip() for l in open(p) if l.strip()]
    train, val = split(a.train), split(a.val)
    counts = {}
    for n in train:
        for c in caps[n]:
            for t in tokenize(c):
                counts[t] = counts.get(t, 0) + 1
    vocab = sorted(SPECIAL + [w for w, c in counts.items() if c >= a.min_count], key=lambda s: s.encode())
    w2i = {w: i for i, w in enumerate(vocab)}
    pad = w2i["#PAD#"]
    emb = torch.from_numpy(rows)
    model = Decoder(rows.shape[1], len(vocab))
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    lossf = nn.CrossEntropyLoss(ignore_index=pad)

    def loss_on(imgs, toks):
        logits = model(emb[[row_of[n] for n in imgs]], toks[:, :-1])
        return lossf(logits.reshape(-1, len(vocab)), toks[:, 1:].reshape(-1))

    val_caps = [(n, c) for n in val for c in caps[n]]
    best, best_state, history, t0 = math.inf, None, [], time.time()
    for ep in range(a.epochs):
        model.train()
        tr = 0.0
        for _ in range(a.batches):
            imgs = [train[i] for i in rng.choice(len(train), a.batch, replace=False)]  # distinct, as imcap
            toks = batch_tokens([caps[n][rng.integers(0, len(caps[n]))] for n in imgs], w2i, a.max_len, pad)
            opt.zero_grad()
            loss = loss_on(imgs, toks)
            loss.backward()
            opt.step()
            tr += loss.item()
        model.eval()
        with torch.no_grad():
            tot = cnt = 0
            for i in range(0, len(val_caps), 500):
                chunk = val_caps[i:i + 500]
                toks = batch_tokens([c for _, c in chunk], w2i, a.max_len, pad)
                n = int((toks[:, 1:] != pad).sum())
                tot += loss_on([m for m, _ in chunk], toks).item() * n
                cnt += n
        vl = tot / cnt
        history.append((ep + 1, tr / a.batches, vl))
        print(f"epoch {ep + 1}/{a.epochs} train {tr / a.batches:.4f} val {vl:.4f} ({time.time() - t0:.0f}s)", flush=True)
        if vl < best:
            best, best_state = vl, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "torch_history.csv"), "w") as f:
        f.write("epoch,train_loss,val_loss\n" + "".join(f"{e},{t:.6f},{v:.6f}\n" for e, t, v in history))
    ids = {n: i for i, n in enumerate(val)}
    for k, name in ((1, "greedy"), (a.beam, f"beam{a.beam}")):
        res = [{"image_id": ids[n], "caption": beam_search(model, emb[row_of[n]], w2i, vocab, k, a.max_len, a.alpha)}
               for n in val]
        json.dump(res, open(os.path.join(a.out, f"torch_results_{name}.json"), "w"))
    refs = {"images": [{"id": i, "file_name": n} for n, i in ids.items()],
            "annotations": [{"image_id": ids[n], "id": j, "caption": c} for j, (n, c) in enumerate(val_caps)]}
    json.dump(refs, open(os.path.join(a.out, "refs.json"), "w"))
    print(f"best val loss {best:.4f}; results in {a.out}")


if __name__ == "__main__":
    main()

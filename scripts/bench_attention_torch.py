#!/usr/bin/python3
"""PyTorch peer of bench/bench_attention.c: trains the same attention decoder
(grid G x G x D, mean -> tanh dense h0 / c0, soft attention of size A, gate,
LSTMCell H over [embedding E; beta z], deep output O over [h; z; emb] -> |V|,
cross-entropy ignoring PAD + the doubly stochastic regulariser (lambda 1),
Adam) on the same synthetic batches, on the CPU.

Run with OPENBLAS_NUM_THREADS=1 (scripts/bench-attention.sh does);
torch.set_num_threads(--threads, default 2).
prints: "torch ... tokens/s X tokens/cpu_s Y peak_rss_mb M"
"""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench_decoder_torch import LCG, token_rows, train_timed  # the same LCG, rows and loop as the decoder's peer


def make_batch(g, k, b, t1, L, d, v):
    tok = token_rows(g, b, t1, v)
    i = torch.arange(b * L * d, dtype=torch.int64)
    img = ((i * 7919 + k * 104729) % 2003).to(torch.float32) / 1001.5 - 1.0
    return tok, img.reshape(b, L, d)


class Attention(nn.Module):
    def __init__(self, d, h, e, o, a, v):
        super().__init__()
        self.v = v
        self.init_h = nn.Linear(d, h)
        self.init_c = nn.Linear(d, h)
        self.embed = nn.Embedding(v, e)
        self.att_a = nn.Linear(d, a)
        self.att_h = nn.Linear(h, a, bias=False)
        self.att_v = nn.Parameter(0.1 * torch.randn(a))
        self.gate = nn.Linear(h, d)
        self.lstm = nn.LSTMCell(e + d, h)
        self.out1 = nn.Linear(h + d + e, o)
        self.out2 = nn.Linear(o, v)

    def forward(self, a, tokens, pad=1, lam=1.0):
        B, L, _ = a.shape
        mean = a.mean(1)
        h, c = torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))
        P = self.att_a(a)
        tg = tokens[:, 1:]
        live = (tg != pad)
        lens = torch.where(live.any(1), live.shape[1] - live.flip(1).int().argmax(1), torch.zeros(B, dtype=torch.long))
        T = int(lens.max())
        hs, zs, es = [], [], []
        S = torch.zeros(B, L)
        for t in range(T):
            e_ = (torch.tanh(P + self.att_h(h).unsqueeze(1)) * self.att_v).sum(-1)
            alpha = F.softmax(e_, 1)
            z = torch.bmm(alpha.unsqueeze(1), a).squeeze(1)
            beta = torch.sigmoid(self.gate(h))
            emb = self.embed(tokens[:, t])
            h, c = self.lstm(torch.cat([emb, beta * z], 1), (h, c))
            hs.append(h)
            zs.append(z)
            es.append(emb)
            S = S + alpha * (t < lens).float().unsqueeze(1)
        o = torch.cat([torch.stack(hs, 1), torch.stack(zs, 1), torch.stack(es, 1)], 2)
        logits = self.out2(F.elu(self.out1(o)))
        ce = F.cross_entropy(logits.reshape(-1, self.v), tg[:, :T].reshape(-1), ignore_index=pad)
        act = lens > 0
        return ce + lam * ((1 - S[act]) ** 2).mean()


def main():
    ap = argparse.ArgumentParser()
    for k, d in [("vocab", 2500), ("batches", 5), ("batch", 64), ("t1", 20), ("grid", 7), ("img", 1280),
                 ("hidden", 256), ("embed", 128), ("out", 256), ("att", 128), ("threads", 2)]:
        ap.add_argument("--" + k, type=int, default=d)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    L = a.grid * a.grid
    m = Attention(a.img, a.hidden, a.embed, a.out, a.att, a.vocab)
    g = LCG(42)
    batches = [make_batch(g, k, a.batch, a.t1, L, a.img, a.vocab) for k in range(a.batches + 1)]
    n_tok, dt, cpu, rss = train_timed(m, batches, 1, m)  # one warm-up batch, as the C benchmark
    print("torch vocab %d batch %d t1 %d grid %dx%dx%d hidden %d batches %d tokens/s %.0f tokens/cpu_s %.0f "
          "peak_rss_mb %.0f" % (a.vocab, a.batch, a.t1, a.grid, a.grid, a.img, a.hidden, a.batches, n_tok / dt,
                                n_tok / cpu, rss))


if __name__ == "__main__":
    main()

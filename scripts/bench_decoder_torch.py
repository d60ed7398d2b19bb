#!/usr/bin/python3
"""PyTorch peer of bench/bench_decoder.c: trains the same decoder (D 2048 ->
120 ELU -> 300 ELU = h0 = c0, embedding 100, LSTM 300, 120 ELU -> |V|,
cross-entropy ignoring PAD, Adam) on the same synthetic batches (same LCG)
for a fixed number of batches, on the CPU.

Run with OPENBLAS_NUM_THREADS=1 (scripts/bench-decoder.sh does);
torch.set_num_threads(--threads, default 2).
usage: bench_decoder_torch.py [--vocab V] [--batches N] [--batch B] [--t1 T1] [--img D] [--threads N]
prints: "torch vocab V batch B t1 T1 batches N tokens/s X tokens/cpu_s Y peak_rss_mb M"
(tokens/cpu_s: per second of process CPU time over the timed batches)
"""
import argparse
import resource
import sys
import time

import torch
import torch.nn as nn

MASK = (1 << 64) - 1


class LCG:
    def __init__(self, seed):
        self.s = seed

    def next(self):
        self.s = (self.s * 6364136223846793005 + 1442695040888963407) & MASK
        return self.s >> 33


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def train_timed(m, batches, warmup, loss_fn):
    """Adam (lr 1e-3) on m over batches [(tokens, img)], timing all but the
    first `warmup` (as the C benchmarks do). Returns (target tokens (not PAD
    1), wall seconds, CPU seconds, peak RSS MB) of the timed batches; the last
    loss goes to stderr."""
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    n_tok, t0, c0 = 0, 0.0, 0.0
    for it, (tok, img) in enumerate(batches):
        if it == warmup:
            t0 = time.perf_counter()
            c0 = cpu_seconds()
        opt.zero_grad()
        loss = loss_fn(img, tok)
        loss.backward()
        opt.step()
        if it >= warmup:
            n_tok += int((tok[:, 1:] != 1).sum())
    dt = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("torch: last loss %.4f" % loss.item(), file=sys.stderr)
    return n_tok, dt, cpu, rss


def token_rows(g, b, t1, v):
    """b rows of t1 tokens, lengths uniform in 8..t1 from the LCG (START 2,
    words 4..v-1, END 0, then PAD 1): bench_token_rows of bench/bench_train.h."""
    tok = [[1] * t1 for _ in range(b)]
    for r in range(b):
        n = 8 + g.next() % (t1 - 7)
        tok[r][0] = 2
        for t in range(1, n - 1):
            tok[r][t] = 4 + g.next() % (v - 4)
        tok[r][n - 1] = 0
    return torch.tensor(tok, dtype=torch.long)


def make_batch(g, b, t1, d, v):
    tok = token_rows(g, b, t1, v)
    img = [(g.next() % 2000) / 1000.0 - 1.0 for _ in range(b * d)]
    return tok, torch.tensor(img, dtype=torch.float32).reshape(b, d)


class Decoder(nn.Module):
    def __init__(self, d, v, pad):
        super().__init__()
        self.pad, self.v = pad, v
        self.img1 = nn.Linear(d, 120)
        self.img2 = nn.Linear(120, 300)
        self.embed = nn.Embedding(v, 100)
        self.lstm = nn.LSTM(100, 300, batch_first=True)
        self.out1 = nn.Linear(300, 120)
        self.out2 = nn.Linear(120, v)

    def forward(self, img, tokens):
        h0 = nn.functional.elu(self.img2(nn.functional.elu(self.img1(img)))).unsqueeze(0)
        hs, _ = self.lstm(self.embed(tokens[:, :-1]), (h0, h0))
        logits = self.out2(nn.functional.elu(self.out1(hs)))
        return nn.functional.cross_entropy(logits.reshape(-1, self.v), tokens[:, 1:].reshape(-1),
                                           ignore_index=self.pad)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=2500)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--t1", type=int, default=20)
    ap.add_argument("--img", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    m = Decoder(a.img, a.vocab, 1)
    g = LCG(42)
    batches = [make_batch(g, a.batch, a.t1, a.img, a.vocab) for _ in range(a.batches + 2)]
    n_tok, dt, cpu, rss = train_timed(m, batches, 2, m)  # two warm-up batches, as the C benchmark
    print("torch vocab %d batch %d t1 %d batches %d tokens/s %.0f tokens/cpu_s %.0f peak_rss_mb %.0f"
          % (a.vocab, a.batch, a.t1, a.batches, n_tok / dt, n_tok / cpu, rss))


if __name__ == "__main__":
    main()

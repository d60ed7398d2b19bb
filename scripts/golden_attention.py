#!/usr/bin/python3
"""Golden file for the attention decoder (tests/data/attention_golden.bin).

Builds the decoder of src/decoder/attention.c (Show, Attend and Tell: grid
mean -> h0, c0; soft attention e = v . tanh(W_a a_i + W_h h); gate
beta = sigmoid(W_b h); LSTM input [emb; beta z]; deep output over
[h; z; emb]; doubly stochastic regulariser) in PyTorch (Debian
python3-torch) with tiny but nontrivial sizes, and writes the inputs
(tokens with PAD, per-row loss weights, the grids), the weights, the loss,
every gradient, d loss / d grid, the losses and final weights of 10 Adam
steps with gradient clipping, and the greedy captions of the initial model.

Run: OPENBLAS_NUM_THREADS=1 /usr/bin/python3 scripts/golden_attention.py

File layout (little-endian):
  char[8] "IMCAGLD1"
  i32 D, GH, GW, A, H, E, O, V, pad, B, T1, n_steps, gen_len
  f32 lr, clip, lambda
  i32 tokens[B][T1]
  f32 row_w[B]
  f32 img[B][L][D]            (L = GH * GW)
  18 tensors in attention.c order: init_h.weight [H][D], init_h.bias [H],
     init_c.weight [H][D], init_c.bias [H], embed.weight [V][E],
     att_a.weight [A][D], att_a.bias [A], att_h.weight [A][H], att_v.weight [A],
     gate.weight [D][H], gate.bias [D], lstm.weight_ih [4H][E + D],
     lstm.weight_hh [4H][H], lstm.bias [4H] (bias_ih; bias_hh folded in and
     frozen at 0), out1.weight [O][H + D + E], out1.bias [O],
     out2.weight [V][O], out2.bias [V]
  f32 loss
  the 18 gradients in the same order, f32 d_img[B][L][D]
  f32 losses[n_steps]: loss before Adam step k
  the 18 tensors after n_steps Adam steps
  greedy captions of the initial model, per photo: i32 n_words, i32 words[gen_len]
  (START 2, END 3; PAD 0 and UNK 1 never generated; END not first; -1 fills)
"""
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

from golden_torch import TOKENS, adam, backward, f32, out_path, perturb, weights

torch.set_num_threads(2)
torch.manual_seed(4321)

D, GH, GW, A, H, E, O, V, PAD, B, T1, N_STEPS, GEN_LEN = 5, 2, 3, 4, 6, 3, 5, 11, 0, 5, 8, 10, 8
L = GH * GW
LR, CLIP, LAMBDA = 1e-2, 0.5, 0.5
START, END, UNK = 2, 3, 1


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.init_h = nn.Linear(D, H)
        self.init_c = nn.Linear(D, H)
        self.embed = nn.Embedding(V, E)
        self.att_a = nn.Linear(D, A)
        self.att_h = nn.Linear(H, A, bias=False)
        self.att_v = nn.Parameter(0.5 * torch.randn(A))
        self.gate = nn.Linear(H, D)
        self.lstm = nn.LSTMCell(E + D, H)
        self.out1 = nn.Linear(H + D + E, O)
        self.out2 = nn.Linear(O, V)

    def start(self, a):
        mean = a.mean(1)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean)), self.att_a(a)

    def step(self, P, a, tok, h, c):
        e = (torch.tanh(P + self.att_h(h).unsqueeze(1)) * self.att_v).sum(-1)
        alpha = F.softmax(e, dim=1)
        z = (alpha.unsqueeze(2) * a).sum(1)
        beta = torch.sigmoid(self.gate(h))
        emb = self.embed(tok)
        h2, c2 = self.lstm(torch.cat([emb, beta * z], 1), (h, c))
        logits = self.out2(F.elu(self.out1(torch.cat([h2, z, emb], 1))))
        return logits, h2, c2, alpha

    def forward(self, a, tokens, w):
        h, c, P = self.start(a)
        tg_all = tokens[:, 1:]
        lens = torch.zeros(B, dtype=torch.long)
        for r in range(B):
            nz = (tg_all[r] != PAD).nonzero()
            lens[r] = nz.max().item() + 1 if len(nz) else 0
        n_tgt = (tg_all != PAD).sum()
        ce_sum = 0.0
        S = torch.zeros(B, L)
        for t in range(T1 - 1):
            logits, h, c, alpha = self.step(P, a, tokens[:, t], h, c)
            ce = F.cross_entropy(logits, tokens[:, t + 1], reduction="none", ignore_index=PAD)
            ce_sum = ce_sum + (ce * w).sum()
            S = S + alpha * (t < lens).float().unsqueeze(1)
        active = lens > 0
        reg = LAMBDA * ((1 - S[active]) ** 2).sum() / (active.sum() * L)
        return ce_sum / n_tgt + reg

    @torch.no_grad()
    def greedy(self, a1):
        h, c, P = self.start(a1)
        tok = torch.tensor([START])
        words = []
        for t in range(GEN_LEN):
            logits, h, c, _ = self.step(P, a1, tok, h, c)
            z = logits[0].clone()
            z[PAD] = z[START] = z[UNK] = -float("inf")
            if t == 0:
                z[END] = -float("inf")
            best = int(torch.argmax(z))
            if best == END:
                break
            words.append(best)
            tok = torch.tensor([best])
        return words


def tensors(m):
    """The 18 tensors in attention.c order (bias_hh is 0 and frozen)."""
    return [m.init_h.weight, m.init_h.bias, m.init_c.weight, m.init_c.bias, m.embed.weight, m.att_a.weight,
            m.att_a.bias, m.att_h.weight, m.att_v, m.gate.weight, m.gate.bias, m.lstm.weight_ih, m.lstm.weight_hh,
            m.lstm.bias_ih, m.out1.weight, m.out1.bias, m.out2.weight, m.out2.bias]


def main():
    out = out_path("attention_golden.bin")
    m = Attention()
    params = perturb(m, 0.6, m.lstm.bias_ih, m.lstm.bias_hh)
    ps = tensors(m)
    tokens = torch.tensor(TOKENS, dtype=torch.long)
    w = torch.tensor([1.0, 0.5, 2.0, 1.5, -0.5])
    img = torch.randn(B, L, D, requires_grad=True)

    buf = bytearray(b"IMCAGLD1")
    buf += struct.pack("<13i", D, GH, GW, A, H, E, O, V, PAD, B, T1, N_STEPS, GEN_LEN)
    buf += struct.pack("<3f", LR, CLIP, LAMBDA)
    buf += tokens.to(torch.int32).numpy().tobytes()
    buf += f32(w)
    buf += f32(img)
    for t in weights(ps):
        buf += f32(t)
    gen = [m.greedy(img.detach()[r:r + 1]) for r in range(B)]
    backward(buf, m(img, tokens, w), ps, img)
    img = img.detach()
    losses = adam(buf, params, lambda: m(img, tokens, w), N_STEPS, LR, CLIP, ps)
    for words in gen:
        buf += struct.pack("<i", len(words))
        buf += struct.pack("<%di" % GEN_LEN, *(words + [-1] * (GEN_LEN - len(words))))
    with open(out, "wb") as f:
        f.write(buf)
    print("wrote %s (%d bytes), loss %.6f, captions %s" % (out, len(buf), losses[0], gen))


if __name__ == "__main__":
    main()

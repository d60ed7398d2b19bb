#!/usr/bin/python3
"""Golden file for the LSTM decoder (tests/data/decoder_golden.bin).

Builds the decoder of src/decoder/decoder.h in PyTorch (Debian python3-torch) with
tiny but nontrivial sizes, and writes the inputs (tokens with PAD, image
embeddings), the weights, the loss, every gradient, d loss / d image and
the losses and final weights of 10 Adam steps with gradient clipping.

Run: OPENBLAS_NUM_THREADS=1 /usr/bin/python3 scripts/golden_decoder.py

File layout (little-endian):
  char[8] "IMCDGLD1"
  i32 D, A, H, E, O, V, pad, B, T1, n_steps
  f32 lr, clip
  i32 tokens[B][T1]
  f32 img[B][D]
  12 tensors in dec_tensors order (img1.weight [A][D], img1.bias [A],
     img2.weight [H][A], img2.bias [H], embed.weight [V][E],
     lstm.weight_ih [4H][E], lstm.weight_hh [4H][H], lstm.bias [4H]
     (bias_ih; bias_hh is folded in and frozen at 0), out1.weight [O][H], out1.bias [O],
     out2.weight [V][O], out2.bias [V]):  f32 weights
  f32 loss
  the 12 gradients in the same order, f32 d_img[B][D]
  f32 losses[n_steps]: loss before Adam step k (k = 0 .. n_steps-1)
  the 12 tensors after n_steps Adam steps
"""
import os
import struct
import sys

import torch
import torch.nn as nn

torch.set_num_threads(2)
torch.manual_seed(1234)

D, A, H, E, O, V, PAD, B, T1, N_STEPS = 6, 5, 7, 4, 6, 11, 0, 5, 8, 10
LR, CLIP = 1e-2, 0.3  # clips the first steps only


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.img1 = nn.Linear(D, A)
        self.img2 = nn.Linear(A, H)
        self.embed = nn.Embedding(V, E)
        self.lstm = nn.LSTM(E, H, batch_first=True)
        self.out1 = nn.Linear(H, O)
        self.out2 = nn.Linear(O, V)

    def forward(self, img, tokens):
        h0 = nn.functional.elu(self.img2(nn.functional.elu(self.img1(img))))
        state = (h0.unsqueeze(0), h0.unsqueeze(0))
        x = self.embed(tokens[:, :-1])
        hs, _ = self.lstm(x, state)
        logits = self.out2(nn.functional.elu(self.out1(hs)))
        return nn.functional.cross_entropy(logits.reshape(-1, V), tokens[:, 1:].reshape(-1), ignore_index=PAD)


def tensors(m, grad=False):
    def g(p):
        return p.grad if grad else p.data
    bias = g(m.lstm.bias_ih_l0)  # bias_hh_l0 is 0 and frozen
    return [g(m.img1.weight), g(m.img1.bias), g(m.img2.weight), g(m.img2.bias), g(m.embed.weight),
            g(m.lstm.weight_ih_l0), g(m.lstm.weight_hh_l0), bias, g(m.out1.weight), g(m.out1.bias),
            g(m.out2.weight), g(m.out2.bias)]


def f32(t):
    return t.detach().to(torch.float32).contiguous().numpy().tobytes()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "data",
                                                               "decoder_golden.bin")
    m = Decoder()
    with torch.no_grad():  # larger, nonzero biases so every path matters
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
        # The C model has one LSTM bias. PyTorch's two would each get the
        # same gradient and each take an Adam step (and count twice in the
        # clipping norm), so bias_hh is folded into bias_ih and frozen at 0.
        m.lstm.bias_ih_l0.add_(m.lstm.bias_hh_l0)
        m.lstm.bias_hh_l0.zero_()
    m.lstm.bias_hh_l0.requires_grad_(False)
    params = [p for p in m.parameters() if p.requires_grad]
    # START=2, END=3, PAD=0: different lengths, an interior PAD target, and
    # a row with no target at all
    tokens = torch.tensor([
        [2, 4, 5, 6, 7, 8, 3, 0],
        [2, 9, 3, 0, 0, 0, 0, 0],
        [2, 5, 0, 4, 10, 1, 6, 3],
        [2, 0, 0, 0, 0, 0, 0, 0],
        [2, 10, 9, 8, 3, 0, 0, 0],
    ], dtype=torch.long)
    img = torch.randn(B, D, requires_grad=True)

    buf = bytearray(b"IMCDGLD1")
    buf += struct.pack("<10i", D, A, H, E, O, V, PAD, B, T1, N_STEPS)
    buf += struct.pack("<2f", LR, CLIP)
    buf += tokens.to(torch.int32).numpy().tobytes()
    buf += f32(img)
    for t in tensors(m):
        buf += f32(t)
    loss = m(img, tokens)
    loss.backward()
    buf += struct.pack("<f", loss.item())
    for t in tensors(m, grad=True):
        buf += f32(t)
    buf += f32(img.grad)

    opt = torch.optim.Adam(params, lr=LR, betas=(0.9, 0.999), eps=1e-8)
    img = img.detach()
    losses = []
    for _ in range(N_STEPS):
        opt.zero_grad()
        loss = m(img, tokens)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, CLIP)
        print("step %d grad norm %.4f" % (len(losses), norm))
        opt.step()
        losses.append(loss.item())
    buf += struct.pack("<%df" % N_STEPS, *losses)
    for t in tensors(m):
        buf += f32(t)
    with open(out, "wb") as f:
        f.write(buf)
    print("wrote %s (%d bytes), loss %.6f, Adam losses %s" % (out, len(buf), losses[0], losses))


if __name__ == "__main__":
    main()

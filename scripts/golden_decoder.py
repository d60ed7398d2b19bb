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
import struct

import torch
import torch.nn as nn

from golden_torch import TOKENS, adam, backward, f32, out_path, perturb, weights

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


def tensors(m):
    """The 12 tensors in dec_tensors order (bias_hh_l0 is 0 and frozen)."""
    return [m.img1.weight, m.img1.bias, m.img2.weight, m.img2.bias, m.embed.weight, m.lstm.weight_ih_l0,
            m.lstm.weight_hh_l0, m.lstm.bias_ih_l0, m.out1.weight, m.out1.bias, m.out2.weight, m.out2.bias]


def main():
    out = out_path("decoder_golden.bin")
    m = Decoder()
    params = perturb(m, 0.2, m.lstm.bias_ih_l0, m.lstm.bias_hh_l0)
    ps = tensors(m)
    tokens = torch.tensor(TOKENS, dtype=torch.long)
    img = torch.randn(B, D, requires_grad=True)

    buf = bytearray(b"IMCDGLD1")
    buf += struct.pack("<10i", D, A, H, E, O, V, PAD, B, T1, N_STEPS)
    buf += struct.pack("<2f", LR, CLIP)
    buf += tokens.to(torch.int32).numpy().tobytes()
    buf += f32(img)
    for t in weights(ps):
        buf += f32(t)
    backward(buf, m(img, tokens), ps, img)
    img = img.detach()
    losses = adam(buf, params, lambda: m(img, tokens), N_STEPS, LR, CLIP, ps)
    with open(out, "wb") as f:
        f.write(buf)
    print("wrote %s (%d bytes), loss %.6f, Adam losses %s" % (out, len(buf), losses[0], losses))


if __name__ == "__main__":
    main()

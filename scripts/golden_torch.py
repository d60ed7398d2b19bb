"""What the PyTorch golden files of the decoders share (scripts/golden_decoder.py,
scripts/golden_attention.py): the token batch, float32 bytes, the
perturbed weights with one LSTM bias, the backward record and the Adam run.

Each record is appended to a bytearray, little-endian, as the C tests read
it (tests/dec_check.c).
"""
import os
import struct
import sys

import torch

# START=2, END=3, PAD=0: different lengths, an interior PAD target, and a
# row with no target at all
TOKENS = [
    [2, 4, 5, 6, 7, 8, 3, 0],
    [2, 9, 3, 0, 0, 0, 0, 0],
    [2, 5, 0, 4, 10, 1, 6, 3],
    [2, 0, 0, 0, 0, 0, 0, 0],
    [2, 10, 9, 8, 3, 0, 0, 0],
]


def f32(t):
    return t.detach().to(torch.float32).contiguous().numpy().tobytes()


def out_path(name):
    """argv[1], else tests/data/<name>."""
    return sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "data", name)


def perturb(m, scale, bias_ih, bias_hh):
    """Adds scale * N(0, 1) to every weight (larger, nonzero biases so every
    path matters) and folds the LSTM's bias_hh into bias_ih, frozen at 0:
    the C model has one LSTM bias, and PyTorch's two would each get the same
    gradient, each take an Adam step and count twice in the clipping norm.
    Returns the trained parameters."""
    with torch.no_grad():
        for p in m.parameters():
            p.add_(scale * torch.randn_like(p))
        bias_ih.add_(bias_hh)
        bias_hh.zero_()
    bias_hh.requires_grad_(False)
    return [p for p in m.parameters() if p.requires_grad]


def weights(ps, grad=False):
    """The tensors ps, or their gradients."""
    return [p.grad if grad else p.data for p in ps]


def backward(buf, loss, ps, img):
    """loss.backward(); appends f32 loss, the gradients of ps, d loss / d img."""
    loss.backward()
    buf += struct.pack("<f", loss.item())
    for t in weights(ps, grad=True):
        buf += f32(t)
    buf += f32(img.grad)


def adam(buf, params, loss_fn, n_steps, lr, clip, ps):
    """n_steps Adam steps with gradient clipping; appends the losses before
    each step, then the tensors ps after the last. Returns the losses."""
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    losses = []
    for _ in range(n_steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, clip)
        print("step %d grad norm %.4f" % (len(losses), norm))
        opt.step()
        losses.append(loss.item())
    buf += struct.pack("<%df" % n_steps, *losses)
    for t in weights(ps):
        buf += f32(t)
    return losses

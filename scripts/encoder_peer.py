#!/usr/bin/python3
"""encoder_peer.py - the PyTorch peer of the C encoder.

Reads one of OUR native encoder files (GGUF, docs/FORMATS.md "Encoder file") with a small
hand-written parser, builds the same network as a torch.nn.Module (NCHW, the same weights), and:

  --check IN.f32 OUT.f32   compares its output with the C encoder's output (files written by
                           `bench_encoder --model F --dump IN.f32 OUT.f32`): cosine, max abs diff
  --bench                  images/s at --batch 1,8 (run with OPENBLAS_NUM_THREADS=1; 2 threads)
  --onnx F.onnx            exports the module with torch.onnx.export for the ONNX Runtime peer

Run with /usr/bin/python3 (Debian python3-torch).
"""
import argparse
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------- GGUF reader

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class Gguf:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.buf = f.read()
        self.pos = 0
        if self.buf[:4] != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        self.pos = 4
        version = self._u("<I")
        if version != 3:
            raise ValueError(f"{path}: GGUF version {version}")
        n_tensors, n_kv = self._u("<Q"), self._u("<Q")
        self.kv = {}
        for _ in range(n_kv):
            key = self._str()
            self.kv[key] = self._value(self._u("<I"))
        infos = []
        for _ in range(n_tensors):
            name = self._str()
            nd = self._u("<I")
            ne = [self._u("<Q") for _ in range(nd)]
            ttype, off = self._u("<I"), self._u("<Q")
            if ttype != 0:
                raise ValueError(f"{path}: tensor {name} is not f32")
            infos.append((name, list(reversed(ne)), off))
        align = self.kv.get("general.alignment", 32)
        start = (self.pos + align - 1) // align * align
        self.tensors = {}
        for name, shape, off in infos:
            n = int(np.prod(shape))
            self.tensors[name] = np.frombuffer(self.buf, dtype="<f4", count=n, offset=start + off).reshape(shape)

    def _u(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def _str(self):
        n = self._u("<Q")
        s = self.buf[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def _value(self, t):
        if t == 8:
            return self._str()
        if t == 9:
            et, n = self._u("<I"), self._u("<Q")
            if et in (5, 6, 4):
                fmt = {5: "<i4", 6: "<f4", 4: "<u4"}[et]
                a = np.frombuffer(self.buf, dtype=fmt, count=n, offset=self.pos).copy()
                self.pos += 4 * n
                return a
            return [self._value(et) for _ in range(n)]
        return self._u(_SCALARS[t])


# ------------------------------------------------------------------- network

OPS = ["CONV2D", "DWCONV2D", "DENSE", "ADD", "CONCAT", "AVGPOOL", "MAXPOOL", "GAP", "SOFTMAX", "ACT", "AFFINE", "PAD"]


def same_pad(inp, k, s):
    out = (inp + s - 1) // s
    total = max((out - 1) * s + k - inp, 0)
    return total // 2, total - total // 2


class Encoder(torch.nn.Module):
    """The graph of an imcap encoder file, op by op, in NCHW."""

    def __init__(self, path):
        super().__init__()
        g = Gguf(path)
        if g.kv.get("general.architecture") != "imcap.encoder":
            raise ValueError(f"{path}: not an imcap encoder file")
        self.name = g.kv["imcap.encoder.name"]
        self.shapes = g.kv["imcap.encoder.value_shapes"].reshape(-1, 3)
        nodes = g.kv["imcap.encoder.nodes"].reshape(-1, 20)
        self.outputs = dict(zip(g.kv["imcap.encoder.output_names"], [int(v) for v in g.kv["imcap.encoder.output_values"]]))
        n_params = len(g.kv["imcap.encoder.param_names"])
        raw = [torch.from_numpy(g.tensors[f"param.{i}"].copy()) for i in range(n_params)]
        self.plan = []
        self.params = torch.nn.ParameterList()
        for r in nodes:
            op, nin = OPS[r[0]], int(r[1])
            ins = [int(v) for v in r[2:2 + nin]]
            out, kh, kw, sh, sw, pad, act, mult, w, b = [int(v) for v in r[10:20]]
            h, wd, c = self.shapes[ins[0]]
            node = {"op": op, "ins": ins, "out": out, "act": act, "k": (kh, kw), "s": (sh, sw), "pad": None}
            if pad == 1 and kh > 0:
                pt, pb = same_pad(int(h), kh, sh)
                pl, pr = same_pad(int(wd), kw, sw)
                node["pad"] = (pl, pr, pt, pb)
            weight = raw[w] if w >= 0 else None
            if op == "CONV2D":
                weight = weight.permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
            elif op == "DWCONV2D":
                weight = weight.reshape(kh, kw, -1).permute(2, 0, 1).unsqueeze(1).contiguous()  # [C*m,1,kh,kw]
                node["groups"] = int(c)
            elif op == "DENSE":
                weight = weight.t().contiguous().unsqueeze(-1).unsqueeze(-1)  # 1x1 conv
            elif op == "AFFINE":
                weight = weight.view(1, -1, 1, 1)
            if weight is not None:
                self.params.append(torch.nn.Parameter(weight, requires_grad=False))
                node["w"] = len(self.params) - 1
            if b >= 0:
                bias = raw[b] if op != "AFFINE" else raw[b].view(1, -1, 1, 1)
                self.params.append(torch.nn.Parameter(bias, requires_grad=False))
                node["b"] = len(self.params) - 1
            if op == "AVGPOOL" and node["pad"] is not None:
                # TF SAME average: padded cells are not counted.
                pl, pr, pt, pb = node["pad"]
                ones = F.pad(torch.ones(1, 1, int(h), int(wd)), (pl, pr, pt, pb))
                cnt = F.avg_pool2d(ones, (kh, kw), (sh, sw)) * (kh * kw)
                self.register_buffer(f"cnt{out}", cnt)
            self.plan.append(node)

    def _act(self, x, a):
        if a == 1:
            return F.relu(x)
        if a == 2:
            return F.relu6(x)
        if a == 3:
            return torch.sigmoid(x)
        return x

    def forward(self, x, want="embedding"):
        target = self.outputs[want]
        last = {}
        for node in self.plan:
            for v in node["ins"]:
                last[v] = node["out"]
        vals = {0: x}
        for node in self.plan:
            op, ins = node["op"], [vals[v] for v in node["ins"]]
            a = ins[0]
            w = self.params[node["w"]] if "w" in node else None
            b = self.params[node["b"]] if "b" in node else None
            if node["pad"] is not None and op in ("CONV2D", "DWCONV2D"):
                a = F.pad(a, node["pad"])
            if op == "CONV2D" or op == "DENSE":
                y = F.conv2d(a, w, b, stride=node["s"] if op == "CONV2D" else 1)
            elif op == "DWCONV2D":
                y = F.conv2d(a, w, b, stride=node["s"], groups=node["groups"])
            elif op == "ADD":
                y = ins[0] + ins[1]
            elif op == "CONCAT":
                y = torch.cat(ins, dim=1)
            elif op == "AVGPOOL":
                pl, pr, pt, pb = node["pad"] or (0, 0, 0, 0)
                if pl == pr and pt == pb:
                    y = F.avg_pool2d(a, node["k"], node["s"], padding=(pt, pl), count_include_pad=False)
                else:
                    kk = node["k"][0] * node["k"][1]
                    y = F.avg_pool2d(F.pad(a, node["pad"]), node["k"], node["s"]) * kk
                    y = y / getattr(self, f"cnt{node['out']}")
            elif op == "MAXPOOL":
                if node["pad"] is not None:
                    a = F.pad(a, node["pad"], value=-math.inf)
                y = F.max_pool2d(a, node["k"], node["s"])
            elif op == "GAP":
                y = a.mean(dim=(2, 3), keepdim=True)
            elif op == "SOFTMAX":
                y = torch.softmax(a, dim=1)
            elif op == "ACT":
                y = a
            elif op == "AFFINE":
                y = a * w + (b if b is not None else 0)
            elif op == "PAD":  # rows above / below in k[0] / s[0], columns left / right in k[1] / s[1]
                y = F.pad(a, (node["k"][1], node["s"][1], node["k"][0], node["s"][0]))
            y = self._act(y, node["act"])
            vals[node["out"]] = y
            if node["out"] == target:
                return y.flatten(1) if y.shape[2] == 1 and y.shape[3] == 1 else y.permute(0, 2, 3, 1)
            for v in node["ins"]:
                if last.get(v) == node["out"] and v in vals:
                    del vals[v]
        raise ValueError(f"output {want} not reached")


class Wrapper(torch.nn.Module):
    def __init__(self, enc, want):
        super().__init__()
        self.enc, self.want = enc, want

    def forward(self, x):
        return self.enc(x, self.want)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--output", default="embedding")
    ap.add_argument("--check", nargs=2, metavar=("IN", "OUT"))
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--onnx")
    a = ap.parse_args()
    torch.set_num_threads(2)
    enc = Encoder(a.model).eval()
    h, w, c = [int(v) for v in enc.shapes[0]]
    model = Wrapper(enc, a.output).eval()
    if a.check:
        x = np.fromfile(a.check[0], dtype="<f4").reshape(-1, h, w, c)
        want = np.fromfile(a.check[1], dtype="<f4").reshape(x.shape[0], -1)
        with torch.no_grad():
            got = model(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).reshape(x.shape[0], -1).numpy()
        cos = [float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))) for u, v in zip(got, want)]
        diff = float(np.max(np.abs(got - want)))
        print(f"check {enc.name} '{a.output}': {x.shape[0]} images, min cosine {min(cos):.8f}, "
              f"max |diff| {diff:.3g} (max |value| {float(np.max(np.abs(want))):.3g})")
        if min(cos) < 0.9999:
            sys.exit(1)
    if a.onnx:
        x = torch.zeros(1, c, h, w)
        with torch.no_grad():
            torch.onnx.export(model, x, a.onnx, input_names=["input"], output_names=[a.output], opset_version=13,
                              dynamic_axes={"input": {0: "batch"}, a.output: {0: "batch"}})
        print(f"exported {a.onnx}")
    if a.bench:
        bench(model, enc.name, (c, h, w), a.batch, a.seconds)


def bench(model, name, chw, batches, seconds):
    """Prints "batch N: X images/s ..." for each batch size in "1,8"."""
    # channels_last: PyTorch's fastest CPU layout here (about 2x eager NCHW on this machine).
    model = model.to(memory_format=torch.channels_last)
    print(f"pytorch {torch.__version__}: {name}, threads {torch.get_num_threads()}, channels_last, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    for n in [int(b) for b in batches.split(",")]:
        x = (torch.rand(n, *chw) * 2 - 1).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            model(x)
            runs, t0 = 0, time.perf_counter()
            while True:
                model(x)
                runs += 1
                t = time.perf_counter() - t0
                if t >= seconds:
                    break
        print(f"batch {n}: {runs * n / t:.2f} images/s ({1e3 * t / runs:.2f} ms/batch, {runs} runs)")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""encoder_std_peer.py - the STANDARD torchvision model of an architecture, as a user would run it.

Our encoder files are checked against peers that read the same weights (scripts/encoder_peer.py);
for speed, the honest peer is the standard model a user would take: torchvision's
mobilenet_v2 / inception_v3 / resnet50 (random weights: the speed does not depend on them, and
no weights are downloaded), exported the standard way.

  --onnx F.onnx      torch.onnx.export of the model (opset 13, dynamic batch, eval mode, input
                     NCHW float32) for ONNX Runtime (scripts/encoder_ort.js)
  --bench            PyTorch images/s at each --batch with each of --threads, NCHW and
                     channels_last; prints every setting, the best per batch, and each
                     setting's process CPU time per image ("cpu batch N, T threads, L: X CPU-ms/image")

Run with /usr/bin/python3 (Debian python3-torch, python3-torchvision) and OPENBLAS_NUM_THREADS=1.
"""
import argparse
import copy
import os
import sys
import time

import torch
import torchvision

ARCHS = {
    # name: (constructor, input size)
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(weights=None), 224),
    "inception_v3": (lambda: torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False), 299),
    "resnet50": (lambda: torchvision.models.resnet50(weights=None), 224),
}


def build(arch):
    ctor, size = ARCHS[arch]
    torch.manual_seed(0)
    return ctor().eval(), size


def rate(model, x, seconds):
    with torch.no_grad():
        model(x)
        runs, t0, c0 = 0, time.perf_counter(), time.process_time()
        while True:
            model(x)
            runs += 1
            t = time.perf_counter() - t0
            if t >= seconds:
                cpu = 1e3 * (time.process_time() - c0) / (runs * x.shape[0])
                return runs * x.shape[0] / t, 1e3 * t / runs, runs, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("arch", choices=sorted(ARCHS))
    ap.add_argument("--onnx")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    model, size = build(a.arch)
    if a.onnx:
        x = torch.zeros(1, 3, size, size)
        with torch.no_grad():
            torch.onnx.export(model, x, a.onnx, input_names=["input"], output_names=["output"], opset_version=13,
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        print(f"exported torchvision {a.arch} to {a.onnx} (opset 13, dynamic batch)")
    if a.bench:
        print(f"pytorch {torch.__version__}, torchvision {torchvision.__version__}: standard {a.arch} ({size}x{size}), "
              f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
        cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        for n in [int(b) for b in a.batch.split(",")]:
            best = None
            for th in [int(t) for t in a.threads.split(",")]:
                torch.set_num_threads(th)
                for layout in ("nchw", "channels_last"):
                    x = torch.rand(n, 3, size, size) * 2 - 1
                    m = model
                    if layout == "channels_last":
                        x, m = x.contiguous(memory_format=torch.channels_last), cl
                    ips, ms, runs, cpu = rate(m, x, a.seconds)
                    print(f"  batch {n}, {th} threads, {layout}: {ips:.2f} images/s ({ms:.2f} ms/batch, {runs} runs)",
                          file=sys.stderr)
                    print(f"cpu batch {n}, {th} threads, {layout}: {cpu:.2f} CPU-ms/image")
                    if best is None or ips > best[0]:
                        best = (ips, ms, runs, th, layout)
            ips, ms, runs, th, layout = best
            print(f"batch {n}: {ips:.2f} images/s ({ms:.2f} ms/batch, {runs} runs; best: {th} threads, {layout})")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""resnet50_peer.py - the PyTorch / ONNX Runtime peer of imcap's ResNet-50 for
scripts/bench-encoder.sh: the STANDARD torchvision resnet50 (weights=None:
random weights run as fast as trained ones), not a rebuild of our graph.
torchvision's ResNet-50 is v1.5 (stride 2 in the 3x3 convolution of a
bottleneck, 4.1 GMAC/image); the Keras ResNet50 imcap runs is v1 (stride 2
in the first 1x1, 3.9 GMAC/image): same family, same layer sizes.

  resnet50_peer.py --onnx F.onnx            export (opset 13, dynamic batch)
  resnet50_peer.py --bench [--batch 1,8] [--seconds S]
                                            images/s, 2 threads, channels_last
Run with OPENBLAS_NUM_THREADS=1 (bench-encoder.sh sets it).
"""
import argparse
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from encoder_peer import bench  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    if a.onnx:
        with torch.no_grad():
            torch.onnx.export(model, torch.zeros(1, 3, 224, 224), a.onnx, input_names=["input"], output_names=["logits"],
                              opset_version=13, dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        print(f"exported {a.onnx}")
    if a.bench:
        bench(model, f"torchvision {torchvision.__version__} resnet50", (3, 224, 224), a.batch, a.seconds)


if __name__ == "__main__":
    main()

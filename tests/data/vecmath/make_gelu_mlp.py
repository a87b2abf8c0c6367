"""Regenerate tests/data/vecmath/: a GELU MLP (Linear, GELU, Linear) exported by both PyTorch
exporters -- TorchScript-based (dynamo=False, opset 17) and torch.export-based (dynamo=True,
opset 18), each writing GELU as Div by √2, Erf, Add, Mul, Mul -- and by dynamo at opset 20, which
writes the Gelu operator itself.

    pip install torch==2.13.0 onnx onnxscript && python tests/data/vecmath/make_gelu_mlp.py

PyTorch is only needed here; the tests read the committed .onnx files and their .npz data.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

OUT = Path(__file__).resolve().parent
FEATURES, HIDDEN, CLASSES, SAMPLES = 20, 32, 5, 16
EXPORTS = {"script": (False, 17), "dynamo": (True, 18), "dynamo-opset20": (True, 20)}


def gelu_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, CLASSES)).eval()


def export(model: nn.Module, path: Path, dynamo: bool, opset: int, example: tuple | None = None) -> None:
    """One self-contained ONNX file of `model` on `example` (default: one sample of the MLP's input)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example or (torch.randn(1, FEATURES),), str(path), input_names=["x"],
                          output_names=["y"], dynamo=dynamo, opset_version=opset)
    onnx.save(onnx.load(str(path)), str(path))  # one self-contained file: the weights inside
    path.with_name(path.name + ".data").unlink(missing_ok=True)  # where dynamo wrote them first


def main() -> None:
    model = gelu_mlp()
    x = torch.randn(SAMPLES, 1, FEATURES, generator=torch.Generator().manual_seed(1)) * 2.0
    for tag, (dynamo, opset) in EXPORTS.items():
        export(model, OUT / f"gelu-mlp-{tag}.onnx", dynamo, opset)
    np.savez(OUT / "gelu-mlp.npz", x=x.numpy())


if __name__ == "__main__":
    main()

"""Regenerate tests/data/vecmath/power-front-end-*: a spectral front end with powers and logs of
data -- the power re² + im² of each bin, its log ln(p + 0.1), an RMSNorm of the log spectrum
(x · rsqrt(mean(x²) + eps), which the exporters write as Pow 2, ReduceMean, Add, Sqrt and
Reciprocal) -- feeding a GRU and a Linear, exported by both PyTorch exporters
(TorchScript-based, dynamo=False at opset 17, and torch.export-based, dynamo=True at opset 18).
The samples' magnitudes span three decades.

    pip install torch==2.13.0 onnx onnxscript && python tests/data/vecmath/make_power_front_end.py

PyTorch is only needed here; the tests read the committed .onnx files and their .npz data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from make_gelu_mlp import export
from torch import nn

OUT = Path(__file__).resolve().parent
BINS, HIDDEN, CLASSES, STEPS, SAMPLES = 8, 12, 3, 5, 12
EXPORTS = {"script": (False, 17), "dynamo": (True, 18)}


class PowerFrontEnd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(BINS, HIDDEN, batch_first=True)
        self.out = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        re, im = x[..., :BINS], x[..., BINS:]
        spectrum = torch.log(re * re + im * im + 0.1)
        spectrum = spectrum * torch.rsqrt(spectrum.pow(2).mean(-1, keepdim=True) + 1e-5)
        y, _ = self.gru(spectrum)
        return self.out(y[:, -1])


def main() -> None:
    torch.manual_seed(0)
    model = PowerFrontEnd().eval()
    rng = np.random.default_rng(1)
    shape = (SAMPLES, 1, STEPS, 2 * BINS)
    x = rng.standard_normal(shape) * 10.0 ** rng.uniform(-2.5, 0.5, shape)
    for tag, (dynamo, opset) in EXPORTS.items():
        export(model, OUT / f"power-front-end-{tag}.onnx", dynamo, opset, (torch.zeros(1, STEPS, 2 * BINS),))
    np.savez(OUT / "power-front-end.npz", x=x.astype(np.float32))


if __name__ == "__main__":
    main()

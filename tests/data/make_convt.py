"""Make the exported ConvTranspose test models in tests/data/convt (run from anywhere, with PyTorch):

  enhancer-1d  a speech enhancer's shape: x [1, 16, 32] (features, time) -> Conv1d(16, 32, 4,
               stride 2, padding 1) -> ReLU -> time-major [1, 16, 32] -> GRU(32, 32) -> back to
               [1, 32, 16] -> ConvTranspose1d(32, 16, 4, stride 2, padding 1) -> y [1, 16, 32]
  unet-2d      an encoder-decoder: x [1, 2, 12, 10] -> Conv2d(2, 8, 3, stride 2, padding 1) ->
               BatchNorm2d -> PReLU(8) -> ConvTranspose2d(8, 4, 3, stride 2, padding 1,
               output_padding 1) -> BatchNorm2d -> PReLU(4) -> ConvTranspose2d(4, 2, 2, stride 1)

BatchNorm2d statistics and PReLU slopes are drawn away from their defaults so that they do work.
Both exporters: MODEL-script.onnx (dynamo=False, opset 17) and MODEL-dynamo.onnx (dynamo=True,
opset 18), each self-contained, with MODEL-*.npz holding the samples (leading samples axis) and
PyTorch's outputs. PyTorch is only needed here; the tests read the committed files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_frontends import _normalised, export  # noqa: E402  (BatchNorm2d away from its defaults; both exporters)

OUT = Path(__file__).resolve().parent / "convt"
FEATURES, FRAMES, HIDDEN = 16, 32, 32


class Enhancer1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.down = nn.Conv1d(FEATURES, HIDDEN, 4, stride=2, padding=1)
        self.rnn = nn.GRU(HIDDEN, HIDDEN, batch_first=True)
        self.up = nn.ConvTranspose1d(HIDDEN, FEATURES, 4, stride=2, padding=1)

    def forward(self, x):
        y, _ = self.rnn(torch.relu(self.down(x)).transpose(1, 2))
        return self.up(y.transpose(1, 2))


def _prelu(channels: int) -> nn.PReLU:
    prelu = nn.PReLU(channels)
    with torch.no_grad():
        prelu.weight.uniform_(0.05, 0.4)
    return prelu


def unet_2d() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 8, 3, stride=2, padding=1), _normalised(8), _prelu(8),
        nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1), _normalised(4), _prelu(4),
        nn.ConvTranspose2d(4, 2, 2))


MODELS = {"enhancer-1d": (Enhancer1d, (1, FEATURES, FRAMES)), "unet-2d": (unet_2d, (1, 2, 12, 10))}


if __name__ == "__main__":
    export(MODELS, OUT)

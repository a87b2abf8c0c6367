"""Make the exported convolutional test models in tests/data/conv (run from anywhere, with PyTorch):

  crnn-bn   x [1, 1, T, MELS] -> Conv2d(1, 8, 3x3, stride (1, 2), padding 1) -> BatchNorm2d (running
            statistics made non-trivial) -> ReLU -> [1, T, 8 * MELS / 2] -> GRU -> Linear on the last step

Both exporters: crnn-bn-script.onnx (dynamo=False, opset 17) and crnn-bn-dynamo.onnx (dynamo=True,
opset 18), each self-contained, with crnn-bn-*.npz holding the samples (leading samples axis) and
PyTorch's outputs. PyTorch is only needed here; the tests read the committed files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_partitioned import CLASSES, HIDDEN, MELS, STEPS, _save, _seeded  # noqa: E402  (the same sizes and export)

OUT = Path(__file__).resolve().parent / "conv"
CHANNELS, SAMPLES = 8, 4


class CRNN(nn.Module):
    """The BatchNorm2d's running statistics and affine parameters are drawn away from their
    initial 0 and 1, so that folding it changes the Conv's weights and bias."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, CHANNELS, 3, stride=(1, 2), padding=1)
        self.norm = nn.BatchNorm2d(CHANNELS)
        self.rnn = nn.GRU(CHANNELS * MELS // 2, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, CLASSES)
        with torch.no_grad():
            self.norm.running_mean.uniform_(-0.5, 0.5)
            self.norm.running_var.uniform_(0.5, 2.0)
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-0.3, 0.3)

    def forward(self, x):
        f = torch.relu(self.norm(self.conv(x))).permute(0, 2, 1, 3).reshape(1, STEPS, CHANNELS * MELS // 2)
        y, _ = self.rnn(f)
        return self.head(y[:, -1])


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for dynamo in (False, True):
        model = _seeded(CRNN)
        samples = [(torch.randn(1, 1, STEPS, MELS),) for _ in range(SAMPLES)]
        _save(model, samples, ["x"], OUT / f"crnn-bn-{'dynamo' if dynamo else 'script'}.onnx", dynamo)


if __name__ == "__main__":
    main()

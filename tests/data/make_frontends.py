"""Make the exported front-end test models in tests/data/frontends (run from anywhere, with PyTorch):

  ds-cnn      the MLPerf Tiny keyword spotter's shape, small: x [1, 1, 49, 10] MFCC ->
              Conv2d(1, 16, 10x4, stride 2, padding (5, 1)) -> BatchNorm2d -> ReLU, then twice a
              depthwise Conv2d(16, 16, 3x3, groups 16, padding 1) -> BatchNorm2d -> ReLU -> pointwise
              Conv2d(16, 16, 1x1) -> BatchNorm2d -> ReLU; AdaptiveAvgPool2d(1), Flatten, Linear -> 12
  conv1d-ln   x [1, 10, 49] (features, time) -> Conv1d(10, 32, 3, padding 1) -> ReLU -> time-major
              [1, 49, 32] -> LayerNorm(32) -> LSTM(32, 32) -> Linear on the last step -> 12

Every BatchNorm2d's running statistics and affine parameters, and the LayerNorm's affine
parameters, are drawn away from 0 and 1, so that folding changes the weights and the scale and
shift do work. In eval mode both exporters fold each BatchNorm2d into the Conv before it: the
files hold Conv nodes only. Both exporters: MODEL-script.onnx (dynamo=False, opset 17) and
MODEL-dynamo.onnx (dynamo=True, opset 18), each self-contained, with MODEL-*.npz holding the
samples (leading samples axis) and PyTorch's outputs. PyTorch is only needed here; the tests read
the committed files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_partitioned import _save, _seeded  # noqa: E402  (the same export and sample files)

OUT = Path(__file__).resolve().parent / "frontends"
MFCC, FRAMES, CHANNELS, HIDDEN, CLASSES, SAMPLES = 10, 49, 16, 32, 12, 4


def _normalised(channels: int) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels)
    with torch.no_grad():
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.3, 0.3)
    return norm


def _separable_block() -> list[nn.Module]:
    """Depthwise 3x3 then pointwise 1x1, each followed by BatchNorm2d and ReLU."""
    return [nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1, groups=CHANNELS), _normalised(CHANNELS), nn.ReLU(),
            nn.Conv2d(CHANNELS, CHANNELS, 1), _normalised(CHANNELS), nn.ReLU()]


def ds_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, CHANNELS, (10, 4), stride=2, padding=(5, 1)), _normalised(CHANNELS), nn.ReLU(),
        *_separable_block(), *_separable_block(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(CHANNELS, CLASSES))


class Conv1dLayerNormLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(MFCC, HIDDEN, 3, padding=1)
        self.norm = nn.LayerNorm(HIDDEN)
        self.rnn = nn.LSTM(HIDDEN, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, CLASSES)
        with torch.no_grad():
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-0.3, 0.3)

    def forward(self, x):
        y, _ = self.rnn(self.norm(torch.relu(self.conv(x)).transpose(1, 2)))
        return self.head(y[:, -1])


MODELS = {"ds-cnn": (ds_cnn, (1, 1, FRAMES, MFCC)), "conv1d-ln": (Conv1dLayerNormLSTM, (1, MFCC, FRAMES))}


def export(models: dict, out: Path) -> None:
    """Each model of one input x, from both exporters, with SAMPLES random samples, into `out`."""
    out.mkdir(exist_ok=True)
    for name, (make, shape) in models.items():
        for dynamo in (False, True):
            model = _seeded(make)
            samples = [(torch.randn(*shape),) for _ in range(SAMPLES)]
            _save(model, samples, ["x"], out / f"{name}-{'dynamo' if dynamo else 'script'}.onnx", dynamo)


if __name__ == "__main__":
    export(MODELS, OUT)

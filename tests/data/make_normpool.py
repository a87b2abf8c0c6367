"""Regenerate tests/data/normpool/: small PyTorch models whose front ends the vector unit runs
(normalisations and pooling) before a recurrent core, exported by both PyTorch exporters
(TorchScript-based, dynamo=False, opset 17, and torch.export-based, dynamo=True, opset 18).

    pip install torch==2.13.0 onnx onnxscript && python tests/data/make_normpool.py

  ln-lstm       x [1, T, F] -> LayerNorm(F) -> LSTM -> Linear on every step: the normalised
                front end of the issue's Conv1d + LayerNorm + LSTM model, without the Conv
  pool-bn-gru   x [1, F, T] -> AvgPool1d(2) over time -> BatchNorm1d (eval: running statistics)
                -> MaxPool1d(3, stride 1, padding 1) -> GRU -> Linear on the last step

Each MODEL-{script,dynamo}.onnx is self-contained; MODEL-....npz holds the inputs of a few
samples (leading samples axis) and PyTorch's outputs for them under the graph's output names.
PyTorch is only needed here; the tests read the committed files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_partitioned import _save, _seeded  # noqa: E402  (one way to export and save a model)

OUT = Path(__file__).resolve().parent / "normpool"
FEATURES, STEPS, HIDDEN, CLASSES, SAMPLES = 8, 12, 16, 4, 3


class LayerNormLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(FEATURES)
        self.rnn = nn.LSTM(FEATURES, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x):
        y, _ = self.rnn(self.norm(x))
        return self.head(y)


class PoolBatchNormGRU(nn.Module):
    def __init__(self):
        super().__init__()
        self.average = nn.AvgPool1d(2)
        self.norm = nn.BatchNorm1d(FEATURES)
        self.peak = nn.MaxPool1d(3, stride=1, padding=1)
        self.rnn = nn.GRU(FEATURES, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, CLASSES)
        with torch.no_grad():  # running statistics that are not the identity
            self.norm.running_mean.uniform_(-0.5, 0.5)
            self.norm.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        y, _ = self.rnn(self.peak(self.norm(self.average(x))).transpose(1, 2))
        return self.head(y[:, -1])


def main() -> None:
    OUT.mkdir(exist_ok=True)
    models = {"ln-lstm": (LayerNormLSTM, lambda: (torch.randn(1, STEPS, FEATURES),)),
              "pool-bn-gru": (PoolBatchNormGRU, lambda: (torch.randn(1, FEATURES, STEPS),))}
    for dynamo in (False, True):
        tag = "dynamo" if dynamo else "script"
        for name, (make, sample) in models.items():
            torch.manual_seed(1)
            samples = [sample() for _ in range(SAMPLES)]
            _save(_seeded(make), samples, ["x"], OUT / f"{name}-{tag}.onnx", dynamo)


if __name__ == "__main__":
    main()

"""Regenerate tests/data/rechain/: recurrent layers called one frame at a time in a Python loop
that carries the state, exported by both PyTorch exporters (dynamo=False at opset 17, dynamo=True
at opset 18) as chains of one-step LSTM/GRU/RNN nodes; and, for the KWS-sized ones, the same
model with one call over the whole sequence, with the same weights, for comparison.

    pip install torch==2.13.0 onnx onnxscript && python tests/data/make_rechain.py

PyTorch is only needed here; the tests read the committed .onnx files and their .npz data.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

OUT = Path(__file__).resolve().parent / "rechain"

# name -> (cell, inputs, hidden, steps, batch, classes, layers, per frame)
CONFIGS = {
    "lstm-small": ("LSTM", 6, 8, 7, 2, 4, 1, True),
    "gru-small": ("GRU", 8, 12, 9, 1, 3, 1, True),
    "rnn-small": ("RNN", 10, 16, 12, 1, 5, 1, True),
    "lstm-stack2": ("LSTM", 7, 10, 6, 1, 4, 2, True),
    "kws-lstm-frames": ("LSTM", 10, 64, 49, 1, 12, 1, True),
    "kws-lstm-sequence": ("LSTM", 10, 64, 49, 1, 12, 1, False),
    "kws-gru-frames": ("GRU", 10, 64, 49, 1, 12, 1, True),
    "kws-gru-sequence": ("GRU", 10, 64, 49, 1, 12, 1, False),
}


class Recurrent(nn.Module):
    """Batch-first layers and a Linear head on the last layer's last h; `per_frame` calls each
    layer on one frame at a time, carrying its state, as streaming-minded code does."""

    def __init__(self, cell: str, inputs: int, hidden: int, classes: int, layers: int, per_frame: bool):
        super().__init__()
        self.layers = nn.ModuleList(getattr(nn, cell)(inputs if k == 0 else hidden, hidden, batch_first=True)
                                    for k in range(layers))
        self.head = nn.Linear(hidden, classes)
        self.per_frame = per_frame

    def forward(self, x):
        if not self.per_frame:
            for layer in self.layers:
                x, _ = layer(x)
            return self.head(x[:, -1])
        states: list = [None] * len(self.layers)
        for t in range(x.shape[1]):
            frame = x[:, t:t + 1]
            for k, layer in enumerate(self.layers):
                frame, states[k] = layer(frame, states[k])
        return self.head(frame[:, 0])


def _export(model: nn.Module, x: torch.Tensor, path: Path, dynamo: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), str(path), input_names=["x"], output_names=["y"],
                          opset_version=18 if dynamo else 17, dynamo=dynamo)
    onnx.save(onnx.load(str(path)), str(path))  # one self-contained file: the weights inside
    Path(f"{path}.data").unlink(missing_ok=True)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, (cell, inputs, hidden, steps, batch, classes, layers, per_frame) in CONFIGS.items():
        torch.manual_seed(sum(map(ord, name.replace("-frames", "").replace("-sequence", ""))))
        model = Recurrent(cell, inputs, hidden, classes, layers, per_frame)
        x = torch.randn(batch, steps, inputs)
        for dynamo in (False, True):
            path = OUT / f"{name}-{'dynamo' if dynamo else 'script'}.onnx"
            _export(model, x, path, dynamo)
            np.savez(path.with_suffix(".npz"), x=x.numpy())


if __name__ == "__main__":
    main()

"""Regenerate tests/data/state/: per-frame recurrent models that carry their state as graph inputs
and outputs, `(frame, state) -> (y, state')`, as real-time apps ship them, exported by both PyTorch
exporters (TorchScript-based, dynamo=False, and torch.export-based, dynamo=True).

    pip install torch==2.13.0 onnx onnxscript && python tests/data/make_state_models.py

- lstm-hc:      (x, h, c) -> (y, h', c'), one LSTM layer;
- lstm-packed:  (x, state[layers, hidden, 2]) -> (y, state'), two LSTM layers, h and c packed on
                the last axis;
- gru-h:        (x, h) -> (y, h'), one GRU layer.

PyTorch is only needed here; the tests read the committed .onnx files.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

OUT = Path(__file__).resolve().parent / "state"
INPUTS, HIDDEN, CLASSES = 8, 16, 3


class LstmHC(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn, self.head = nn.LSTM(INPUTS, HIDDEN, batch_first=True), nn.Linear(HIDDEN, CLASSES)

    def forward(self, x, h, c):
        y, (h, c) = self.rnn(x, (h, c))
        return self.head(y[:, -1]), h, c


class LstmPacked(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn, self.head = nn.LSTM(INPUTS, HIDDEN, num_layers=2, batch_first=True), nn.Linear(HIDDEN, CLASSES)

    def forward(self, x, state):
        h, c = state[..., 0].unsqueeze(1), state[..., 1].unsqueeze(1)
        y, (h, c) = self.rnn(x, (h.contiguous(), c.contiguous()))
        return self.head(y[:, -1]), torch.stack([h.squeeze(1), c.squeeze(1)], dim=-1)


class GruH(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn, self.head = nn.GRU(INPUTS, HIDDEN, batch_first=True), nn.Linear(HIDDEN, CLASSES)

    def forward(self, x, h):
        y, h = self.rnn(x, h)
        return self.head(y[:, -1]), h


MODELS = {
    "lstm-hc": (LstmHC, {"x": (1, 1, INPUTS), "h": (1, 1, HIDDEN), "c": (1, 1, HIDDEN)}, ("y", "h_out", "c_out")),
    "lstm-packed": (LstmPacked, {"x": (1, 1, INPUTS), "state": (2, HIDDEN, 2)}, ("y", "state_out")),
    "gru-h": (GruH, {"x": (1, 1, INPUTS), "h": (1, 1, HIDDEN)}, ("y", "h_out")),
}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, (make, inputs, outputs) in MODELS.items():
        torch.manual_seed(len(name))
        model = make().eval()
        args = tuple(torch.randn(shape) * 0.5 for shape in inputs.values())
        for dynamo in (False, True):
            path = OUT / f"{name}-{'dynamo' if dynamo else 'script'}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, args, str(path), input_names=list(inputs), output_names=list(outputs),
                                  opset_version=18 if dynamo else 17, dynamo=dynamo)
            onnx.save(onnx.load(str(path)), str(path))  # one self-contained file: the weights inside
            Path(f"{path}.data").unlink(missing_ok=True)


if __name__ == "__main__":
    main()

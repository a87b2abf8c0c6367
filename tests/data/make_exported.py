"""Regenerate tests/data/exported/: nn.LSTM, nn.GRU and nn.RNN models with Linear heads, and MLPs,
exported by both PyTorch exporters (TorchScript-based, dynamo=False, and torch.export-based,
dynamo=True), in the configurations users export.

    pip install torch==2.13.0 onnx onnxscript && python tests/data/make_exported.py

PyTorch is only needed here; the tests read the committed .onnx files and their .npz data.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

OUT = Path(__file__).resolve().parent / "exported"
INPUTS, HIDDEN, CLASSES, STEPS, BATCH = 6, 10, 4, 7, 2
KWS_STEPS, KWS_FEATURES, KWS_HIDDEN = 49, 10, 64  # a keyword spotter's frames of MFCCs

# name -> (layers, batch_first, bidirectional, initial state as input, full sequence output)
CONFIGS = {
    "last": (1, True, False, False, False),
    "stack2-bi-state-seq": (2, False, True, True, True),
    "stack3-bi-last": (3, True, True, False, False),
}


class Recurrent(nn.Module):
    def __init__(self, cell: str, layers: int, batch_first: bool, bidirectional: bool, state: bool, seq: bool,
                 inputs: int = INPUTS, hidden: int = HIDDEN):
        super().__init__()
        self.rnn = getattr(nn, cell)(inputs, hidden, num_layers=layers, batch_first=batch_first,
                                     bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), CLASSES)
        self.cell, self.batch_first, self.state, self.seq = cell, batch_first, state, seq

    def forward(self, x, *states):
        if not self.state:
            y, _ = self.rnn(x)
        else:
            y, _ = self.rnn(x, tuple(states) if self.cell == "LSTM" else states[0])
        if self.seq:
            return self.head(y)
        return self.head(y[:, -1] if self.batch_first else y[-1])


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.Sigmoid(), nn.Linear(16, CLASSES))


def _export(model: nn.Module, args: tuple, names: list[str], path: Path, dynamo: bool,
            outputs: tuple[str, ...] = ("y",)) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), args, str(path), input_names=names, output_names=list(outputs),
                          opset_version=18 if dynamo else 17, dynamo=dynamo)
    onnx.save(onnx.load(str(path)), str(path))  # one self-contained file: the weights inside
    Path(f"{path}.data").unlink(missing_ok=True)


def _recurrent_args(cell: str, layers: int, batch_first: bool, bidirectional: bool, state: bool):
    x = torch.randn(*((BATCH, STEPS) if batch_first else (STEPS, BATCH)), INPUTS)
    states = []
    if state:
        shape = (layers * (2 if bidirectional else 1), BATCH, HIDDEN)
        states = [torch.rand(shape) - 0.5 for _ in range(2 if cell == "LSTM" else 1)]
    return (x, *states), ["x", "h0", "c0"][: 1 + len(states)]


def kws_lstm() -> None:
    """A keyword spotter's size, [1, 49, 10] in and hidden 64, exported by dynamo with fixed shapes,
    which writes the 49 steps into the model as constants (tests/test_streaming.py streams it)."""
    torch.manual_seed(KWS_STEPS)
    model = Recurrent("LSTM", 1, True, False, False, False, inputs=KWS_FEATURES, hidden=KWS_HIDDEN)
    x = torch.randn(1, KWS_STEPS, KWS_FEATURES)
    path = OUT / "lstm-kws-dynamo.onnx"
    _export(model, (x,), ["x"], path, dynamo=True)
    np.savez(path.with_suffix(".npz"), x=x.numpy())


def main() -> None:
    OUT.mkdir(exist_ok=True)
    torch.manual_seed(0)
    for dynamo in (False, True):
        tag = "dynamo" if dynamo else "script"
        for cell in ("LSTM", "GRU", "RNN"):
            for name, (layers, batch_first, bidirectional, state, seq) in CONFIGS.items():
                model = Recurrent(cell, layers, batch_first, bidirectional, state, seq)
                args, names = _recurrent_args(cell, layers, batch_first, bidirectional, state)
                path = OUT / f"{cell.lower()}-{name}-{tag}.onnx"
                _export(model, args, names, path, dynamo)
                np.savez(path.with_suffix(".npz"), **{n: a.numpy() for n, a in zip(names, args)})
        path = OUT / f"mlp-{tag}.onnx"
        _export(mlp(), (torch.randn(3, 20),), ["x"], path, dynamo)
        np.savez(path.with_suffix(".npz"), x=torch.randn(3, 20).numpy())
    kws_lstm()


if __name__ == "__main__":
    main()

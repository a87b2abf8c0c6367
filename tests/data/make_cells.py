"""Regenerate tests/data/cells/: nn.LSTMCell, nn.GRUCell and nn.RNNCell (tanh and relu) as PyTorch
exports them, unrolled into plain arithmetic, for the cell recognition (compiler/frontend/cells.py):
one step with the state as explicit inputs and outputs, a Python loop over T steps from zero
state with a Linear head on the last h, and a keyword-spotting-sized LSTMCell loop; each by both
exporters, plus the dynamo export of nn.RNN.

    pip install torch==2.13.0 onnx onnxscript && python tests/data/make_cells.py

PyTorch is only needed here; the tests read the committed .onnx files and their .npz data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_exported import _export  # noqa: E402 - the exporters' settings, defined once

OUT = Path(__file__).resolve().parent / "cells"
INPUTS, HIDDEN, CLASSES, STEPS, BATCH = 6, 8, 3, 5, 2
# cell name -> (nn class, its keyword arguments)
CELLS = {"lstm": (nn.LSTMCell, {}), "gru": (nn.GRUCell, {}), "rnn-tanh": (nn.RNNCell, {}),
         "rnn-relu": (nn.RNNCell, {"nonlinearity": "relu"})}


class Step(nn.Module):
    """One step, the state in and out: (x, h[, c]) -> (head(h'), h'[, c'])."""

    def __init__(self, cell: nn.Module, hidden: int, classes: int):
        super().__init__()
        self.cell, self.head = cell, nn.Linear(hidden, classes)

    def forward(self, x, h, *c):
        state = self.cell(x, (h, *c)) if c else self.cell(x, h)
        h = state[0] if c else state
        return (self.head(h), *state) if c else (self.head(h), h)


class Loop(nn.Module):
    """The cell over every step of a batch-first sequence from zero state; a head on the last h."""

    def __init__(self, cell: nn.Module, hidden: int, classes: int):
        super().__init__()
        self.cell, self.head, self.hidden = cell, nn.Linear(hidden, classes), hidden
        self.lstm = isinstance(cell, nn.LSTMCell)

    def forward(self, x):
        h = torch.zeros(x.shape[0], self.hidden)
        c = torch.zeros(x.shape[0], self.hidden)
        for t in range(x.shape[1]):
            if self.lstm:
                h, c = self.cell(x[:, t], (h, c))
            else:
                h = self.cell(x[:, t], h)
        return self.head(h)


class Sequence(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn, self.head = nn.RNN(INPUTS, HIDDEN, batch_first=True), nn.Linear(HIDDEN, CLASSES)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def _save(model: nn.Module, args: tuple, names: list[str], outputs: tuple[str, ...], path: Path,
          dynamo: bool) -> None:
    _export(model, args, names, path, dynamo, outputs)
    proto = onnx.load(str(path))
    for node in proto.graph.node:  # the dynamo exporter's per-node provenance: most of the file
        del node.metadata_props[:]
    onnx.save(proto, str(path))
    np.savez(path.with_suffix(".npz"), **{n: a.numpy() for n, a in zip(names, args)})


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for dynamo in (False, True):
        tag = "dynamo" if dynamo else "script"
        torch.manual_seed(0)
        for name, (cell, kwargs) in CELLS.items():
            lstm = name == "lstm"
            x, states = torch.randn(BATCH, INPUTS), [torch.randn(BATCH, HIDDEN) * 0.5 for _ in range(1 + lstm)]
            _save(Step(cell(INPUTS, HIDDEN, **kwargs), HIDDEN, CLASSES), (x, *states), ["x", "h", "c"][: 2 + lstm],
                  ("y", "h_out", "c_out")[: 2 + lstm], OUT / f"{name}-step-{tag}.onnx", dynamo)
            _save(Loop(cell(INPUTS, HIDDEN, **kwargs), HIDDEN, CLASSES), (torch.randn(BATCH, STEPS, INPUTS),),
                  ["x"], ("y",), OUT / f"{name}-loop-{tag}.onnx", dynamo)
        for name, kws_cell in (("lstm", nn.LSTMCell), ("gru", nn.GRUCell)):
            _save(Loop(kws_cell(10, 64), 64, 12), (torch.randn(1, 49, 10),), ["x"], ("y",),
                  OUT / f"kws-{name}-loop-{tag}.onnx", dynamo)
    _save(Sequence(), (torch.randn(BATCH, STEPS, INPUTS),), ["x"], ("y",), OUT / "rnn-seq-dynamo.onnx", True)


if __name__ == "__main__":
    main()

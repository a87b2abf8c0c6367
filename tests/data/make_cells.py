"""Regenerate tests/data/cells/: nn.LSTMCell, nn.GRUCell and nn.RNNCell (tanh and relu) as PyTorch
exports them, unrolled into plain arithmetic, for the cell recognition (compiler/frontend/cells.py):
one step with the state as explicit inputs and outputs, a Python loop over T steps from zero
state with a Linear head on the last h, and a keyword-spotting-sized LSTMCell loop; each by both
exporters, plus the dynamo exports of nn.RNN: one layer, and stacked, bidirectional ones.

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
    """nn.RNN over a batch-first sequence, a head on the last step (`last`) or on every step."""

    def __init__(self, layers: int = 1, bidirectional: bool = False, last: bool = True, **kwargs):
        super().__init__()
        self.rnn = nn.RNN(INPUTS, HIDDEN, num_layers=layers, batch_first=True, bidirectional=bidirectional, **kwargs)
        self.head, self.last = nn.Linear(HIDDEN * (1 + bidirectional), CLASSES), last

    def forward(self, x, *h0):
        y = self.rnn(x, *h0)[0]
        return self.head(y[:, -1] if self.last else y)


# nn.RNN stacks for dynamo, which writes each step as arithmetic: name -> (Sequence's arguments,
# whether the initial state is an input)
STACKS = {"rnn-seq2-bi-state": ({"layers": 2, "bidirectional": True, "last": False}, True),
          "rnn-seq3-bi-relu": ({"layers": 3, "bidirectional": True, "nonlinearity": "relu"}, False),
          "rnn-seq2-state": ({"layers": 2}, True)}


def stacks() -> None:
    """Stacked and bidirectional nn.RNN exported by dynamo (sizes other than tests/data/exported's)."""
    torch.manual_seed(len(STACKS))
    for name, (kwargs, state) in STACKS.items():
        model = Sequence(**kwargs)
        h0 = [torch.rand(model.rnn.num_layers * (1 + model.rnn.bidirectional), BATCH, HIDDEN) - 0.5][: state]
        _save(model, (torch.randn(BATCH, STEPS, INPUTS), *h0), ["x", "h0"][: 1 + state], ("y",),
              OUT / f"{name}-dynamo.onnx", True)


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
    stacks()


if __name__ == "__main__":
    main()

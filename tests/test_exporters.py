"""Models exported by both PyTorch exporters (tests/data/exported, made by make_exported.py):
nn.LSTM, nn.GRU and nn.RNN of 1 to 3 layers, batch-first and time-major, bidirectional, with and
without initial states, full-sequence or last-step outputs, with Linear heads; and MLPs. Each one
compiles, runs bit-exactly against the golden reference and stays within tolerance of ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from toolchain import assert_close

EXPORTED = Path(__file__).resolve().parent / "data" / "exported"
MODELS = sorted(EXPORTED.glob("*.onnx"))


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_exported_model(path):
    inputs = {k: v.astype(np.float32) for k, v in np.load(path.with_suffix(".npz")).items()}
    assert_close(onnx.load(str(path)), inputs)


def test_both_exporters_and_every_cell_are_covered():
    stems = {p.stem for p in MODELS}
    for cell in ("lstm", "gru", "rnn"):
        for exporter in ("script", "dynamo"):
            assert any(s.startswith(cell) and s.endswith(exporter) for s in stems), (cell, exporter)


def test_stacked_bidirectional_layers_show_in_the_listing():
    from compiler.pipeline import compile_model
    from isa.listing import disassemble

    path = EXPORTED / "lstm-stack3-bi-last-script.onnx"
    inputs = {k: v.astype(np.float32)[None] for k, v in np.load(path.with_suffix(".npz")).items()}
    listing = disassemble(compile_model(onnx.load(str(path)), calibration=inputs).program)
    for layer in range(3):
        assert f" L{layer} t=0 tile 0 fwd Wx" in listing and f" L{layer} t=6 tile 0 rev Wx" in listing

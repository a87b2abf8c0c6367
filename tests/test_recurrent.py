"""LSTM, GRU and RNN with every option: bit-exact against the golden reference (run_checked) and
within the documented tolerance of ONNX Runtime (onnx's reference evaluator for layout 1)."""

from __future__ import annotations

import numpy as np
import pytest

from models import recurrent_model
from toolchain import assert_close, random_inputs

CASES = {
    "forward": {},
    "reverse": {"direction": "reverse"},
    "bidirectional": {"direction": "bidirectional"},
    "bidirectional-layout1": {"direction": "bidirectional", "layout": 1},
    "seq-lens": {"seq_lens": [5, 2, 0]},
    "seq-lens-bidirectional": {"direction": "bidirectional", "seq_lens": [3, 5, 1]},
    "initial-state": {"initial": True},
    "clip": {"clip": 0.7},
    "hardsigmoid-relu": {"activations": None},  # filled per op below
}
ACTIVATIONS = {"LSTM": ["HardSigmoid", "Tanh", "Relu"], "GRU": ["HardSigmoid", "Relu"], "RNN": ["Relu"]}


def _inputs(model, seed: int) -> dict:
    inputs = random_inputs(model, seed)
    return {k: np.clip(v, -0.9, 0.9) if k != "X" else v for k, v in inputs.items()}


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("case", CASES)
def test_recurrent_options(op, case):
    options = dict(CASES[case])
    if case == "hardsigmoid-relu":
        options["activations"] = ACTIVATIONS[op] * 1
        options["activation_alpha"], options["activation_beta"] = [0.25], [0.45]
        if op == "RNN":
            del options["activation_alpha"], options["activation_beta"]
    model = recurrent_model(op, 5, 3, 4, 8, seed=len(case), **options)
    inputs = _inputs(model, seed=3)
    calibration = {k: np.stack([v, _inputs(model, 4)[k]]) for k, v in inputs.items()}
    assert_close(model, inputs, calibration=calibration)


@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("bits", [8, 16])
def test_gru_reset_modes(lbr, bits):
    model = recurrent_model("GRU", 7, 2, 6, 20, linear_before_reset=lbr, initial=True, seed=lbr)
    assert_close(model, _inputs(model, seed=5), bits)


@pytest.mark.parametrize("peepholes,input_forget", [(True, 0), (False, 1), (True, 1)])
def test_lstm_peepholes_and_input_forget(peepholes, input_forget):
    model = recurrent_model("LSTM", 6, 2, 5, 12, peepholes=peepholes, input_forget=input_forget, initial=True,
                            direction="bidirectional")
    assert_close(model, _inputs(model, seed=6))


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("outputs", [("Y",), ("Y_h",)])
def test_output_subsets(op, outputs):
    model = recurrent_model(op, 4, 2, 3, 9, direction="bidirectional", seq_lens=[4, 2], outputs=outputs)
    assert_close(model, _inputs(model, seed=7))

"""Float behaviour: dequantised simulator outputs stay within the documented tolerance of
ONNX Runtime (onnx's reference evaluator where ONNX Runtime lacks the operator's variant,
as for LSTM layout 1). The tolerance is docs/numerics.md's: |sim - float| <= TOLERANCE[bits]
times max(1, max |float|).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from models import fc_model, lstm_model
from toolchain import TOLERANCE, assert_close, random_inputs

DATA = Path(__file__).resolve().parent / "data"  # an untrained KWS-shaped LSTM (data/make_kws_model.py)
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("initial", ["none", "inputs", "const"])
def test_lstm_matches_float_model(bits, layout, initial):
    model = lstm_model(20, 3, 12, 40, layout=layout, initial=initial, seed=layout)
    inputs = random_inputs(model, seed=7)
    if initial == "inputs":
        inputs = {k: np.clip(v, -0.9, 0.9) if k != "X" else v for k, v in inputs.items()}
    assert_close(model, inputs, bits)


@pytest.mark.parametrize("activation", [None, "Relu", "Sigmoid", "Tanh"])
@pytest.mark.parametrize("bits", [8, 16])
def test_fc_matches_float_model(activation, bits):
    model = fc_model(3, 100, 70, activation=activation, seed=5)
    calibration = random_inputs(model, seed=9, samples=16)
    assert_close(model, random_inputs(model, seed=8), bits, calibration)


def test_kws_example_from_pytorch_matches_onnx_runtime():
    import onnx

    model = onnx.load(str(DATA / "kws_lstm.onnx"))
    calibration = dict(np.load(DATA / "kws_calib.npz"))
    inputs = dict(np.load(DATA / "kws_input.npz"))
    assert_close(model, inputs, 8, calibration)


def test_kws_example_agrees_with_float_top1_on_the_test_set():
    import onnx

    from compiler.pipeline import compile_model
    from runtime_sim import Simulator

    model = onnx.load(str(DATA / "kws_lstm.onnx"))
    compiled = compile_model(model, calibration=dict(np.load(DATA / "kws_calib.npz")))
    test = np.load(DATA / "kws_test.npz")["mfcc"]
    chip = Simulator(compiled.program).run({"mfcc": test}, batch=True).outputs["logits"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = np.stack([session.run(None, {"mfcc": x})[0] for x in test])
    assert np.mean(chip.argmax(-1) == want.argmax(-1)) >= 0.97
    assert np.max(np.abs(chip - want)) <= TOLERANCE[8] * max(1.0, float(np.max(np.abs(want))))

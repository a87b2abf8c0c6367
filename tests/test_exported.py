"""Models exported by PyTorch (tests/data, made by tests/data/make_models.py): the exporter's
graph patterns fold or lower, and the results are bit-exact and within tolerance of ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from compiler.frontend.onnx_import import import_model

from toolchain import assert_close

DATA = Path(__file__).resolve().parent / "data"


def load(name: str) -> onnx.ModelProto:
    return onnx.load(str(DATA / name))


def test_dynamic_batch_lstm_with_shape_fixed():
    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((3, 11, 8)).astype(np.float32)}
    checked = assert_close(load("lstm_dynamic_batch.onnx"), inputs, shapes={"x": (3, 11, 8)})
    assert checked.outputs["logits"].shape == (3, 5)


def test_exporter_shape_arithmetic_folds_away():
    graph = import_model(load("lstm_dynamic_batch.onnx"), {"x": (3, 11, 8)})
    ops = [node.op for node in graph.nodes]
    assert ops.count("lstm") == 1 and ops.count("fc") == 1
    assert set(ops) <= {"lstm", "fc", "gather"}
    lstm = next(node for node in graph.nodes if node.op == "lstm")
    assert lstm.inputs[1:] == ("", "")  # the ConstantOfShape zeros became "no initial state"


def test_batch_first_transposes_become_copies_for_batch_3():
    from compiler.pipeline import compile_model

    program = compile_model(load("lstm_dynamic_batch.onnx"), shapes={"x": (3, 11, 8)}).program
    assert sum(instr.mnemonic == "VMOV" for instr in program.code) >= 3 * 11


@pytest.mark.parametrize("bits", [8, 16])
def test_lstm_with_state_inputs_and_all_outputs(bits):
    rng = np.random.default_rng(1)
    inputs = {"x": rng.standard_normal((7, 2, 6)).astype(np.float32),
              "h0": rng.uniform(-0.8, 0.8, (1, 2, 16)).astype(np.float32),
              "c0": rng.uniform(-2, 2, (1, 2, 16)).astype(np.float32)}
    assert_close(load("lstm_state_io.onnx"), inputs, bits)


def test_mlp():
    rng = np.random.default_rng(2)
    calibration = {"x": rng.standard_normal((32, 4, 30)).astype(np.float32)}
    assert_close(load("mlp.onnx"), {"x": calibration["x"][0]}, calibration=calibration)

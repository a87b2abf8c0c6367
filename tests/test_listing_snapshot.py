"""The compiled listing of a tiny LSTM and head, as text: a change to the frontend, quantisation,
tiling, schedule, allocation or listing format shows up as a reviewable diff."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from compiler.pipeline import compile_model
from isa.listing import disassemble
from isa.target import Target

from models import lstm_model
from snapshot import assert_snapshot


def tiny_model() -> onnx.ModelProto:
    """LSTM (2 steps, 3 inputs, hidden 4) -> last hidden state -> Gemm to 2 outputs -> Relu."""
    model = lstm_model(2, 1, 3, 4, outputs=("Y_h",))
    graph = model.graph
    graph.initializer.append(numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(2, 4) / 8, "Wh"))
    graph.initializer.append(numpy_helper.from_array(np.array([4], np.int64), "flat"))
    graph.node.extend([helper.make_node("Reshape", ["Y_h", "flat"], ["h"], name="flatten"),
                       helper.make_node("Unsqueeze", ["h", "zero"], ["h2"], name="row"),
                       helper.make_node("Gemm", ["h2", "Wh"], ["z"], transB=1, name="head"),
                       helper.make_node("Relu", ["z"], ["y"], name="relu")])
    graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), "zero"))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2]))
    onnx.checker.check_model(model)
    return model


def test_tiny_lstm_listing_snapshot():
    calibration = {"X": np.random.default_rng(0).standard_normal((4, 2, 1, 3)).astype(np.float32)}
    program = compile_model(tiny_model(), Target(macs=8), calibration).program
    assert_snapshot("tiny_lstm.s", disassemble(program))


def test_compiling_twice_gives_identical_programs():
    from isa.container import to_bytes

    first, second = (to_bytes(compile_model(tiny_model()).program) for _ in range(2))
    assert first == second

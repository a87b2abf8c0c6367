"""ONNX Runtime's DynamicQuantizeLSTM (com.microsoft), what quantize_dynamic writes for an LSTM:
converted to the chip's LSTM with its integer weights dequantised, compiled, simulated bit-exact,
and compared with ONNX Runtime on the quantised model itself (docs/numerics.md)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from compiler.frontend.capability import CONSTRAINTS
from compiler.frontend.partition import HOST, UNRUNNABLE, place_nodes, plan_partition
from compiler.pipeline import compile_model
from isa.errors import RnnaccelError
from isa.target import Target

from toolchain import assert_close

STEPS, BATCH, INPUTS, HIDDEN, CLASSES = 20, 1, 8, 16, 5
MS = "com.microsoft"


def _float_model(seed: int = 0) -> onnx.ModelProto:
    """An LSTM (Y and Y_h are outputs) and a float MatMul head on Y_h."""
    rng = np.random.default_rng(seed)
    inits = {"W": rng.standard_normal((1, 4 * HIDDEN, INPUTS)) * 0.4,
             "R": rng.standard_normal((1, 4 * HIDDEN, HIDDEN)) * 0.3,
             "B": rng.standard_normal((1, 8 * HIDDEN)) * 0.1, "head": rng.standard_normal((HIDDEN, CLASSES)) * 0.5}
    nodes = [helper.make_node("LSTM", ["x", "W", "R", "B"], ["Y", "Y_h"], hidden_size=HIDDEN),
             helper.make_node("MatMul", ["Y_h", "head"], ["logits"])]
    outputs = {"Y": [STEPS, 1, BATCH, HIDDEN], "Y_h": [1, BATCH, HIDDEN], "logits": [1, BATCH, CLASSES]}
    graph = helper.make_graph(nodes, "dynamic_lstm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [STEPS, BATCH, INPUTS])],
                              [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in outputs.items()],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture(scope="module")
def quantised(tmp_path_factory) -> onnx.ModelProto:
    """The float model through quantize_dynamic: per channel int8, the LSTM only (a quantised
    MatMul would become ConvInteger-style host work, not what this file tests)."""
    folder = Path(tmp_path_factory.mktemp("dynamic"))
    onnx.save(_float_model(), folder / "float.onnx")
    quantize_dynamic(folder / "float.onnx", folder / "q.onnx", per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["LSTM"])
    return onnx.load(folder / "q.onnx")


def _frames(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, STEPS, BATCH, INPUTS)).astype(np.float32)


def test_quantize_dynamic_writes_a_dynamic_quantize_lstm(quantised):
    assert [(n.domain, n.op_type) for n in quantised.graph.node] == [(MS, "DynamicQuantizeLSTM"), ("", "MatMul")]


def test_it_compiles_bit_exact_and_matches_onnx_runtime_on_itself(quantised):
    inputs = {"x": _frames(1, 1)[0]}
    assert_close(quantised, inputs, calibration={"x": _frames(16, 2)})


def test_its_weights_keep_their_integers(quantised):
    """Each row of the compiled W is (q - zero_point) times one whole factor (1 where max|q| = 127)."""
    consts = {i.name: numpy_helper.to_array(i) for i in quantised.graph.initializer}
    lstm = quantised.graph.node[0]
    steps = (consts[lstm.input[1]].astype(np.int64) - consts[lstm.input[9]][:, None, :])[0].T  # [4H, I]
    compiled = compile_model(quantised, Target(), {"x": _frames(16, 2)})
    weights = next(n for n in compiled.graph.nodes if n.op == "lstm").attrs.cells[0].x.weights
    factors = np.max(np.abs(weights), axis=1) // np.max(np.abs(steps), axis=1)
    np.testing.assert_array_equal(weights, steps * factors[:, None])
    assert np.all(factors >= 1)


INPUT_NAMES = ("x", "W", "R", "B", "sequence_lens", "", "", "P", "W_scale", "W_zero_point", "R_scale",
               "R_zero_point")


def _dynamic_lstm(w_scale: np.ndarray | None = None, computed: str = "", x_shape=(STEPS, BATCH, INPUTS),
                  **attrs) -> onnx.ModelProto:
    """One DynamicQuantizeLSTM node 'lstm' with every input given; `computed` names one that a
    Cast computes from a float graph input instead of an initialiser."""
    rng = np.random.default_rng(3)
    w_scale = np.full((1,), 0.01, np.float32) if w_scale is None else w_scale
    inits = {"W": rng.integers(-127, 128, (1, INPUTS, 4 * HIDDEN)).astype(np.int8),
             "R": rng.integers(-127, 128, (1, HIDDEN, 4 * HIDDEN)).astype(np.int8),
             "B": np.zeros((1, 8 * HIDDEN), np.float32), "sequence_lens": np.full((BATCH,), STEPS, np.int32),
             "P": np.zeros((1, 3 * HIDDEN), np.float32), "W_scale": w_scale,
             "W_zero_point": np.zeros(w_scale.shape, np.int8), "R_scale": np.full((1,), 0.002, np.float32),
             "R_zero_point": np.zeros((1,), np.int8)}
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))]
    casts = []
    if computed:
        value = inits.pop(computed)
        inputs.append(helper.make_tensor_value_info("float_" + computed, TensorProto.FLOAT, list(value.shape)))
        casts.append(helper.make_node("Cast", ["float_" + computed], [computed],
                                      to=helper.np_dtype_to_tensor_dtype(value.dtype)))
    node = helper.make_node("DynamicQuantizeLSTM", list(INPUT_NAMES), ["Y"], name="lstm", domain=MS,
                            hidden_size=HIDDEN, **attrs)
    graph = helper.make_graph([*casts, node], "g", inputs,
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [STEPS, 1, BATCH, HIDDEN])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])


def test_a_per_channel_scale_of_the_wrong_shape_is_refused_in_one_line():
    model = _dynamic_lstm(np.full((1, 3 * HIDDEN), 0.01, np.float32))
    with pytest.raises(RnnaccelError, match=r"^node 'lstm' \(DynamicQuantizeLSTM\): W_scale and W_zero_point of "
                                            r"shapes \[1, 48\] and \[1, 48\] \(expected \[D\] or "
                                            r"\[D, 4\*hidden_size\], D=1\)$"):
        compile_model(model, Target(), chip_only=True)


HOST_REASON = ("the host runs standard ONNX operators only, and 'com.microsoft.DynamicQuantizeLSTM' is an ONNX "
               "Runtime contrib operator, which onnx's reference evaluator does not run")
# each of its constraints (capability.CONSTRAINTS) -> a model that violates it
VIOLATIONS = {
    "direction must be forward, reverse or bidirectional": lambda: _dynamic_lstm(direction="sideways"),
    "X must have rank 3": lambda: _dynamic_lstm(x_shape=(STEPS, INPUTS)),
    "each activation must be one of Relu, Sigmoid, Tanh, HardSigmoid":
        lambda: _dynamic_lstm(activations=["Sigmoid", "Softsign", "Tanh"]),
    **{f"{name} must be a constant (an initialiser)": functools.partial(_dynamic_lstm, computed=name)
       for name in ("W", "R", "B", "sequence_lens", "P", "W_scale", "W_zero_point", "R_scale", "R_zero_point")},
}


def test_every_constraint_has_a_model_that_violates_it():
    assert {c.reason for c in CONSTRAINTS[f"{MS}.DynamicQuantizeLSTM"]} == set(VIOLATIONS)


@pytest.mark.parametrize("reason", VIOLATIONS)
def test_a_violation_keeps_it_off_the_chip_and_the_host_refuses_it(reason):
    """--check lists the chip's reason first; compiling refuses the model in one line with the host's."""
    model = VIOLATIONS[reason]()
    placed = {p.name: p for p in place_nodes(model).placements}["lstm"]
    assert (placed.place, placed.why, placed.reasons[-1]) == (HOST, UNRUNNABLE, HOST_REASON)
    assert placed.reasons[0].startswith(reason)
    with pytest.raises(RnnaccelError, match=rf"^node 'lstm' \(DynamicQuantizeLSTM\): {HOST_REASON}$"):
        plan_partition(model)

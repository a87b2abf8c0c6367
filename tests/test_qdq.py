"""Pre-quantised models: Q/DQ pairs and dequantised weights, compiled, simulated and compared with
ONNX Runtime on the quantised model itself (docs/numerics.md, "Pre-quantised models (QDQ)")."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from compiler.frontend.partition import HOST, plan_partition
from compiler.frontend.quant_ops import dequantize_linear, quantize_linear
from compiler.passes.weights import quantize_matrix
from compiler.pipeline import compile_model
from isa.errors import RnnaccelError
from isa.target import Target

from qdq_models import INPUT, float_model, frames, quantized
from toolchain import TOLERANCE, assert_close, float_outputs, run_checked


def _model(nodes, inits: dict, shape=(3, 6), out=(3, 4), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out))],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _within(checked, model, inputs) -> float:
    want = float_outputs(model, inputs)["y"]
    error = float(np.max(np.abs(checked.outputs["y"] - want)))
    assert error <= TOLERANCE[8] * max(1.0, float(np.max(np.abs(want)))), error
    return error


def test_a_statically_quantised_model_matches_onnx_runtime_on_itself():
    model, calibration = float_model(), frames(32, 1)
    qdq = quantized(model, calibration)
    sample = {INPUT: frames(1, 3)[0]}
    checked = run_checked(qdq, sample, calibration={INPUT: calibration})  # bit-exact against the golden
    assert "fake_quant" in [n.op for n in checked.compiled.graph.nodes]
    _within(checked, qdq, sample)
    assert_close(model, sample, calibration={INPUT: calibration})  # the float model, calibrated


def _grid(rows: int, cols: int, seed: int) -> np.ndarray:
    """int8 weights whose every row and column reaches +-127 (a symmetric quantiser's largest)."""
    q = np.random.default_rng(seed).integers(-127, 128, (rows, cols)).astype(np.int8)
    q[np.arange(rows), np.arange(rows) % cols] = 127
    q[np.arange(cols) % rows, np.arange(cols)] = -127
    return q


@pytest.mark.parametrize("per_axis", [False, True])
def test_dequantised_weights_fold_and_stay_exactly_on_their_grid(per_axis):
    q = _grid(6, 4, 1)  # MatMul's B: [in, out]
    scale = np.array([0.011, 0.02, 0.005, 0.03] if per_axis else 0.013, np.float32)
    inits = {"q": q, "s": scale, "zp": np.zeros(scale.shape, np.int8)}
    nodes = [helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["w"], axis=1),
             helper.make_node("MatMul", ["x", "w"], ["y"])]
    model = _model(nodes, inits)
    inputs = {"x": np.random.default_rng(2).standard_normal((3, 6)).astype(np.float32)}
    checked = assert_close(model, inputs)
    fc = checked.compiled.graph.nodes[-1]
    np.testing.assert_array_equal(fc.attrs.q.weights, q.T.astype(np.int64))


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32])
@pytest.mark.parametrize("opset,axis", [(19, None), (19, 0), (21, 1), (21, -1)])  # the evaluator starts at 19
def test_folding_computes_what_onnx_defines(dtype, opset, axis):
    rng = np.random.default_rng(4)
    info = np.iinfo(dtype)
    x = rng.integers(max(info.min, -1000), min(info.max, 1000), (3, 5)).astype(dtype)
    size = 1 if axis is None else x.shape[axis]
    scale = rng.uniform(0.01, 0.2, size).astype(np.float32).reshape(() if axis is None else (size,))
    zp = rng.integers(0, 10, scale.shape).astype(dtype)
    attrs = {} if axis is None else {"axis": axis}
    for op, fn, args in (("DequantizeLinear", dequantize_linear, [x, scale, zp]),
                         ("QuantizeLinear", quantize_linear, [(x * 0.37).astype(np.float32), scale, zp])):
        if op == "QuantizeLinear" and dtype == np.int32:
            continue  # QuantizeLinear has no int32 output in these opsets
        node = helper.make_node(op, ["a", "s", "z"], ["r"], **attrs)
        graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("r", TensorProto.UNDEFINED, None)],
                                  [numpy_helper.from_array(v, k) for k, v in zip("asz", args)])
        want = ReferenceEvaluator(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])).run(
            None, {})[0]
        got = fn(*args, axis=1 if axis is None else axis)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def _pair(dtype, zero_point: int, scale: float = 0.05) -> onnx.ModelProto:
    inits = {"s": np.array(scale, np.float32), "zp": np.array(zero_point, dtype)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])]
    return _model(nodes, inits, out=(3, 6), opset=21)


@pytest.mark.parametrize("dtype,zero_point,clamps", [(np.uint8, 0, True), (np.int8, 10, True), (np.int16, 0, False)])
def test_a_pair_on_data_clips_to_its_integer_range(dtype, zero_point, clamps):
    """A uint8 pair at zero point 0 is a Relu; an int16 one cannot bind within int16 and costs nothing."""
    model = _pair(dtype, zero_point)
    inputs = {"x": np.random.default_rng(5).standard_normal((3, 6)).astype(np.float32) * 3}
    checked = run_checked(model, inputs)
    want = float_outputs(model, inputs)["y"]
    assert np.max(np.abs(checked.outputs["y"] - want)) <= 0.05 * 0.5 + 1e-6  # at most a tie rounded apart
    mnemonics = {i.mnemonic for i in checked.compiled.program.code}
    assert ("VCLAMP" in mnemonics) == clamps


def test_blocked_dequantisation_is_refused_with_its_reason():
    inits = {"q": _grid(6, 4, 6), "s": np.full((3, 4), 0.01, np.float32)}
    nodes = [helper.make_node("DequantizeLinear", ["q", "s"], ["w"], axis=0, block_size=2),
             helper.make_node("MatMul", ["x", "w"], ["y"])]
    with pytest.raises(RnnaccelError, match="block_size must be 0 .blocked quantisation is not supported.; got 2"):
        compile_model(_model(nodes, inits, opset=21), Target(), chip_only=True)


def test_a_pair_with_a_computed_scale_stays_on_the_host():
    nodes = [helper.make_node("Abs", ["x"], ["a"]), helper.make_node("ReduceMax", ["a"], ["s"], keepdims=0),
             helper.make_node("QuantizeLinear", ["x", "s"], ["q"], name="quant"),
             helper.make_node("DequantizeLinear", ["q", "s"], ["d"], name="dequant"),
             helper.make_node("MatMul", ["d", "w"], ["y"], name="mm")]
    model = _model(nodes, {"w": np.ones((6, 4), np.float32)})
    placed = {p.name: p for p in plan_partition(model).placements}
    assert placed["quant"].place == placed["dequant"].place == HOST
    assert placed["quant"].reasons[0] == "y_scale must be a constant (an initialiser); got computed 's'"
    assert placed["mm"].place == "chip"


def test_a_row_on_a_coarser_grid_takes_its_finest_multiple_and_float_rows_keep_max_over_qmax():
    """Halves fit 126 steps of 1/126 (not 127 of 1/127); a row of floats keeps max|w| / 127."""
    q = quantize_matrix(np.array([[0.5, -1.0, 0.0], [0.5, -1.0, 0.2713]]), None, 0.01, 0.1, Target())
    assert q.weights.tolist() == [[63, -126, 0], [64, -127, 34]]

"""Softmax and LogSoftmax on the chip: classifier heads, graph inputs of rank 1 to 3, both meanings
of `axis` (flattening before opset 13, one axis from 13), a KWS-like LSTM -> Gemm -> Softmax chain;
bit-exact against the golden reference (run_checked) and within tolerance of ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.frontend.onnx_import import import_model
from compiler.frontend.softmax_ops import row_length
from compiler.pipeline import compile_model
from isa.errors import RnnaccelError

from toolchain import assert_close, float_outputs, run_checked

OPS = ["Softmax", "LogSoftmax"]
REDUCTIONS = {"Softmax": {"VRMAX", "VSUBS", "VRSUM", "VNORM"}, "LogSoftmax": {"VRMAX", "VSUBS", "VRSUM", "VLOG"}}


def _model(nodes, x_shape, y_shape, inits=None, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                              [numpy_helper.from_array(_tensor(v), k) for k, v in (inits or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 8)
    onnx.checker.check_model(model)
    return model


def _tensor(value) -> np.ndarray:
    """Integers (a Reshape's shape) as int64, everything else as float32."""
    value = np.asarray(value)
    return value.astype(np.int64) if value.dtype.kind in "iu" else value.astype(np.float32)


def softmax_model(op: str, shape, opset: int = 17, **attrs) -> onnx.ModelProto:
    return _model([helper.make_node(op, ["x"], ["y"], name="sm", **attrs)], shape, shape, opset=opset)


def head_model(op: str, inputs: int = 16, classes: int = 12, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["logits"], name="fc", transB=1),
             helper.make_node(op, ["logits"], ["y"], name="sm")]
    inits = {"W": rng.standard_normal((classes, inputs)) * 0.6, "b": rng.standard_normal(classes)}
    return _model(nodes, [2, inputs], [2, classes], inits)


def _data(shape, scale: float = 1.0, seed: int = 1, samples: int = 16) -> tuple[dict, dict]:
    """One input and a calibration set drawn alike."""
    calibration = (np.random.default_rng(seed).standard_normal((samples, *shape)) * scale).astype(np.float32)
    return {"x": calibration[0]}, {"x": calibration}


def _mnemonics(checked) -> set[str]:
    return {i.mnemonic for i in checked.compiled.program.code}


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("op", OPS)
def test_classifier_head(op, bits):
    """Gemm -> Softmax: the logits keep their own scale; the output has the fixed format."""
    inputs, calibration = _data((2, 16))
    checked = assert_close(head_model(op), inputs, bits, calibration)
    assert [n.op for n in checked.compiled.graph.nodes] == ["fc", op.lower()]
    assert REDUCTIONS[op] <= _mnemonics(checked)
    assert checked.compiled.program.outputs[0].scale == {"Softmax": 2.0 ** -15, "LogSoftmax": 2.0 ** -11}[op]
    if op == "Softmax":
        np.testing.assert_allclose(checked.outputs["y"].sum(axis=-1), 1.0, atol=2e-3)


# ONNX Runtime refuses a 1-D input's default axis 1 before opset 11
CASES = [(shape, opset) for shape in [(10,), (4, 10), (2, 3, 7)] for opset in [7, 11, 13, 22]
         if len(shape) > 1 or opset >= 11]


@pytest.mark.parametrize("shape, opset", CASES)
@pytest.mark.parametrize("op", OPS)
def test_on_a_graph_input_with_the_default_axis(op, shape, opset):
    """Default axis: the flattened block from axis 1 before opset 13 (all of a 1-D input), the last axis from 13."""
    inputs, calibration = _data(shape, scale=2.0)
    checked = assert_close(softmax_model(op, shape, opset), inputs, calibration=calibration)
    rows = 1 if len(shape) == 1 else shape[0]
    per_row = {"Softmax": 4, "LogSoftmax": 5}[op]  # VRMAX VSUBS VRSUM VNORM | VRMAX VSUBS VRSUM VLOG VSUBS
    reductions = [i for i in checked.compiled.program.code if i.mnemonic in REDUCTIONS[op]]
    assert len(reductions) == per_row * (rows if opset < 13 else int(np.prod(shape[:-1])))


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_before_opset_13_every_axis_is_a_contiguous_block(axis):
    inputs, calibration = _data((2, 3, 5))
    checked = assert_close(softmax_model("Softmax", (2, 3, 5), 11, axis=axis), inputs, calibration=calibration)
    assert checked.compiled.graph.nodes[-1].attrs.row == int(np.prod((2, 3, 5)[axis % 3:]))


def test_an_axis_followed_by_unit_dims_is_contiguous_from_opset_13():
    inputs, calibration = _data((3, 6, 1))
    checked = assert_close(softmax_model("LogSoftmax", (3, 6, 1), 13, axis=1), inputs, calibration=calibration)
    assert checked.compiled.graph.nodes[-1].attrs.row == 6


@pytest.mark.parametrize("op", OPS)
def test_logits_far_beyond_the_exp_tables_range(op):
    """Logits of +-40: x - max is taken at the logits' own scale, so nothing saturates at +-8 first."""
    x = np.array([[40.0, 37.0, 31.0, -40.0, 39.5, 0.0, 12.0, 38.0]], np.float32)
    model = softmax_model(op, x.shape)
    checked = run_checked(model, {"x": x})
    want = float_outputs(model, {"x": x})["y"]
    step = 2 * 40 / 32767  # the logits' scale: each x - max errs by up to one step
    np.testing.assert_allclose(checked.outputs["y"], np.maximum(want, -16), atol=step + 2 ** -10)
    assert "VSCALE" in _mnemonics(checked)  # the difference goes to Q3.12 for the exp table


def test_terms_far_below_the_max_carry_no_weight_in_a_long_row():
    """exp of a difference saturated at -8 is 0, not exp(-8): 999 such terms would otherwise cost 25 %."""
    x = np.full((1, 1000), -20.0, np.float32)
    x[0, 3] = 0.0
    checked = run_checked(softmax_model("Softmax", x.shape), {"x": x})
    assert checked.raw["y"][0, 3] == 32767 and checked.raw["y"].sum() == 32767


def test_small_logits_are_brought_to_the_working_scale_first():
    inputs, calibration = _data((3, 9), scale=0.05)
    checked = assert_close(softmax_model("Softmax", (3, 9)), inputs, calibration=calibration)
    first_vec = next(i for i in checked.compiled.program.code if i.op.unit == "VEC")
    assert first_vec.mnemonic == "VSCALE"  # x at a scale finer than Q3.12 goes to Q3.12 before the max


def test_log_softmax_saturates_at_minus_16():
    x = np.array([[0.0, -5.0, -30.0, -15.0]], np.float32)
    checked = run_checked(softmax_model("LogSoftmax", x.shape), {"x": x})
    assert checked.raw["y"].min() == -32768 and checked.outputs["y"][0, 2] == -16.0
    want = float_outputs(softmax_model("LogSoftmax", x.shape), {"x": x})["y"][0, [0, 1, 3]]
    np.testing.assert_allclose(checked.outputs["y"][0, [0, 1, 3]], want, atol=2 * 30 / 32767 + 2 ** -10)


def test_kws_like_chain_lstm_last_step_gemm_softmax():
    steps, inputs, hidden, classes = 12, 10, 24, 6
    rng = np.random.default_rng(4)
    inits = {"W": rng.standard_normal((1, 4 * hidden, inputs)) * 0.3,
             "R": rng.standard_normal((1, 4 * hidden, hidden)) * 0.3,
             "B": rng.standard_normal((1, 8 * hidden)) * 0.1, "shape": np.array([1, hidden]),
             "Wo": rng.standard_normal((classes, hidden)) * 1.5, "bo": rng.standard_normal(classes) * 0.2}
    nodes = [helper.make_node("LSTM", ["x", "W", "R", "B"], ["", "h"], name="lstm", hidden_size=hidden),
             helper.make_node("Reshape", ["h", "shape"], ["last"], name="last"),
             helper.make_node("Gemm", ["last", "Wo", "bo"], ["logits"], name="fc", transB=1),
             helper.make_node("Softmax", ["logits"], ["y"], name="sm")]
    model = _model(nodes, [steps, 1, inputs], [1, classes], inits)
    inputs_, calibration = _data((steps, 1, inputs), seed=5)
    checked = assert_close(model, inputs_, calibration=calibration)
    assert [n.op for n in checked.compiled.graph.nodes][-2:] == ["fc", "softmax"]


def test_a_softmax_of_a_constant_folds():
    nodes = [helper.make_node("Softmax", ["c"], ["p"]), helper.make_node("Mul", ["x", "p"], ["y"])]
    c = np.array([[1.0, 2.0, 3.0]])
    graph = import_model(_model(nodes, [2, 3], [2, 3], {"c": c}))
    assert [n.op for n in graph.nodes] == ["mul_const"]
    np.testing.assert_allclose(graph.nodes[0].attrs.value[0], np.exp(c[0]) / np.exp(c[0]).sum(), rtol=1e-6)


def test_row_lengths_by_opset():
    assert row_length((2, 3, 4), None, 11) == 12 and row_length((2, 3, 4), None, 13) == 4
    assert row_length((5,), None, 9) == 5 and row_length((2, 3, 4), 0, 12) == 24
    assert row_length((2, 3, 1), -2, 13) == 3


def test_a_strided_axis_is_refused_naming_the_node():
    model = softmax_model("Softmax", (2, 3, 4), 13, axis=1)
    with pytest.raises(RnnaccelError, match=r"node 'sm' \(Softmax\): from opset 13, the axis must be the last .*; "
                                            r"got axis 1 of shape \[2, 3, 4\]"):
        compile_model(model)


def test_an_axis_out_of_range_is_refused():
    model = softmax_model("LogSoftmax", (2, 3), 13)
    model.graph.node[0].attribute.append(helper.make_attribute("axis", 2))
    with pytest.raises(RnnaccelError, match=r"node 'sm' \(LogSoftmax\): axis 2 is out of range for an input of shape"):
        import_model(model)

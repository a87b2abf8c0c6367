"""Reductions, pooling, padding and normalisations on the vector unit: each op built with
onnx.helper, compiled, simulated bit-exact against the golden reference and within tolerance of
ONNX Runtime; and PyTorch front ends (LayerNorm; pooling and BatchNorm) before a recurrent core,
from both exporters, chip-only. ONNX's
own cases for these operators run in test_conformance.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.pipeline import compile_model
from compiler.reference import reference_outputs
from runtime_sim import Simulator

from toolchain import TOLERANCE, assert_close

EXPORTS = Path(__file__).resolve().parent / "data" / "normpool"


def op_model(op: str, x_shape, y_shape, opset: int = 17, inits: dict | None = None, extra_inputs=(),
             **attrs) -> onnx.ModelProto:
    """One node reading graph input x (and initialisers `inits`, by name) into graph output y."""
    node = helper.make_node(op, ["x", *extra_inputs], ["y"], name="op", **attrs)
    initializers = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 8)
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def data(shape, seed: int = 1, samples: int = 16, scale: float = 1.0) -> tuple[dict, dict]:
    """One input and a calibration set drawn alike."""
    calibration = (np.random.default_rng(seed).standard_normal((samples, *shape)) * scale).astype(np.float32)
    return {"x": calibration[0]}, {"x": calibration}


def check(model, shape, bits: int = 8, **kwargs):
    inputs, calibration = data(shape, **kwargs)
    checked = assert_close(model, inputs, bits, calibration)
    assert list(checked.outputs["y"].shape) == _output_shape(model)
    return checked


def _output_shape(model) -> list[int]:
    return [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]


REDUCE_CASES = [((2, 3, 8), [-1], 1), ((2, 3, 8), [1], 0), ((2, 3, 8), [0, 2], 1), ((4, 6), [], 0)]


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum"])
@pytest.mark.parametrize("shape, axes, keepdims", REDUCE_CASES)
def test_reductions_over_any_axes(op, shape, axes, keepdims, bits):
    inits = {"axes": np.array(axes, np.int64)} if axes else {}
    model = op_model(op, shape, None, 18, inits, ["axes"] if axes else [], keepdims=keepdims)
    checked = check(model, shape, bits)
    ops = [n.op for n in checked.compiled.graph.nodes]
    assert ops == (["reduce"] if axes in ([-1], []) else ["gather", "reduce"])


def test_global_average_pool_needs_no_gather():
    model = op_model("GlobalAveragePool", (1, 4, 5, 6), None)
    checked = check(model, (1, 4, 5, 6), 16)
    assert [n.op for n in checked.compiled.graph.nodes] == ["reduce"]


POOLS = [
    ((1, 3, 12), {"kernel_shape": [3]}),
    ((1, 3, 12), {"kernel_shape": [4], "strides": [2], "pads": [1, 2]}),
    ((1, 2, 7, 9), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 7, 9), {"kernel_shape": [2, 3], "strides": [2, 2], "ceil_mode": 1}),
    ((1, 2, 8, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 8, 8), {"kernel_shape": [2, 2], "strides": [3, 3], "auto_pad": "SAME_LOWER"}),
    ((2, 2, 6, 6), {"kernel_shape": [2, 2], "strides": [2, 2]}),
]


@pytest.mark.parametrize("shape, attrs", POOLS)
def test_max_pool(shape, attrs):
    checked = check(op_model("MaxPool", shape, None, **attrs), shape)
    assert [n.op for n in checked.compiled.graph.nodes] == ["gather", "reduce"]


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("shape, attrs", POOLS)
def test_average_pool(shape, attrs, count_include_pad):
    check(op_model("AveragePool", shape, None, count_include_pad=count_include_pad, **attrs), shape, 16)


def test_max_pool_with_dilations():
    shape = (1, 2, 9, 9)
    check(op_model("MaxPool", shape, None, kernel_shape=[2, 2], dilations=[2, 2], pads=[1, 0, 1, 0]), shape)


def batch_norm_model(shape, opset: int = 15, seed: int = 2) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    channels = shape[1]
    inits = {"scale": rng.uniform(0.5, 2.0, channels), "B": rng.standard_normal(channels),
             "mean": rng.standard_normal(channels) * 0.3, "var": rng.uniform(0.2, 3.0, channels)}
    inits = {k: v.astype(np.float32) for k, v in inits.items()}
    return op_model("BatchNormalization", shape, None, opset, inits, ["scale", "B", "mean", "var"], epsilon=1e-3)


@pytest.mark.parametrize("shape", [(2, 5), (1, 4, 7), (1, 3, 4, 5)])
def test_batch_norm_that_no_fold_took_is_a_scale_and_shift(shape):
    checked = check(batch_norm_model(shape), shape, 16)
    assert [n.op for n in checked.compiled.graph.nodes] == ["mul_const", "add_const"]


PADS = [((2, 5), [1, 2, 0, 3], None, 0.0, 11), ((1, 3, 4), [0, 0, 2, 0, 1, 0], None, 0.5, 18),
        ((1, 2, 3, 4), [1, 2, 1, 0], [2, 3], 0.0, 18), ((1, 2, 6), [0, -1, 0, 0, 2, 0], None, 0.0, 13)]


@pytest.mark.parametrize("shape, pads, axes, value, opset", PADS)
def test_pad_with_a_constant_is_a_copy_around_a_fill(shape, pads, axes, value, opset):
    inits = {"pads": np.array(pads, np.int64), "value": np.array(value, np.float32)}
    names = ["pads", "value"]
    if axes is not None:
        inits["axes"] = np.array(axes, np.int64)
        names.append("axes")
    checked = check(op_model("Pad", shape, None, opset, inits, names), shape)
    assert [n.op for n in checked.compiled.graph.nodes if n.op != "rescale"] == ["constant", "gather"]


def test_pad_before_opset_11_reads_its_attributes():
    model = op_model("Pad", (2, 3), None, 7, pads=[0, 1, 1, 2], value=-0.25)
    check(model, (2, 3))


def layer_norm_model(shape, axis: int = -1, bias: bool = True, seed: int = 3, opset: int = 17) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    block = shape[axis % len(shape):]
    inits = {"scale": rng.uniform(0.5, 1.5, block).astype(np.float32)}
    if bias:
        inits["B"] = (rng.standard_normal(block) * 0.5).astype(np.float32)
    return op_model("LayerNormalization", shape, None, opset, inits, list(inits), axis=axis, epsilon=1e-5)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("shape, axis, bias", [((3, 16), -1, True), ((2, 4, 10), -1, False), ((2, 3, 5), 1, True),
                                               ((5, 64), -1, True)])
def test_layer_norm(shape, axis, bias, bits):
    checked = check(layer_norm_model(shape, axis, bias), shape, bits, scale=3.0)
    ops = [n.op for n in checked.compiled.graph.nodes]
    assert ops == ["normalize", "mul_const"] + (["add_const"] if bias else [])
    assert "VRSS" in {i.mnemonic for i in checked.compiled.program.code}


def test_layer_norm_of_rows_far_apart_in_level_and_spread():
    """Rows whose levels differ by 12 and spreads by 20x: each is normalised by its own statistics."""
    x = np.random.default_rng(4).standard_normal((4, 32)).astype(np.float32)
    x = x * np.array([[0.25], [1.0], [5.0], [0.5]], np.float32) + np.array([[3.0], [-2.0], [0.0], [10.0]], np.float32)
    model = layer_norm_model((4, 32))
    assert_close(model, {"x": x}, 16, {"x": x[None]})


@pytest.mark.parametrize("shape", [(1, 3, 12), (2, 2, 4, 5)])
def test_instance_norm(shape):
    rng = np.random.default_rng(5)
    inits = {"scale": rng.uniform(0.5, 1.5, shape[1]).astype(np.float32),
             "B": rng.standard_normal(shape[1]).astype(np.float32)}
    checked = check(op_model("InstanceNormalization", shape, None, 17, inits, ["scale", "B"]), shape, 16)
    assert [n.op for n in checked.compiled.graph.nodes] == ["normalize", "mul_const", "add_const"]


EXPORTED = {"ln-lstm": {"normalize"}, "pool-bn-gru": {"reduce", "mul_const", "add_const"}}


@pytest.mark.parametrize("exporter", ["script", "dynamo"])
@pytest.mark.parametrize("name", EXPORTED)
def test_an_exported_front_end_and_recurrent_core_runs_chip_only(name, exporter):
    """PyTorch's LayerNorm -> LSTM -> Linear and AvgPool1d -> BatchNorm1d -> MaxPool1d -> GRU ->
    Linear (tests/data/make_normpool.py) compile with chip_only: no host part at all."""
    samples = np.load(EXPORTS / f"{name}-{exporter}.npz")
    compiled = compile_model(EXPORTS / f"{name}-{exporter}.onnx", calibration={"x": samples["x"]}, chip_only=True)
    assert EXPORTED[name] <= {n.op for n in compiled.graph.nodes}
    result = Simulator(compiled.program).run({"x": samples["x"]}, batch=True)
    np.testing.assert_array_equal(result.raw_outputs["y"],
                                  reference_outputs(compiled.graph, {"x": samples["x"]})["y"])
    error = float(np.max(np.abs(result.outputs["y"] - samples["y"])))
    assert error <= TOLERANCE[8] * max(1.0, float(np.max(np.abs(samples["y"])))), error

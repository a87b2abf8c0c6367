"""Element-wise Add, Sub and Mul of computed data and a constant: every operand order and
broadcast shape, bit-exact against the golden reference and within tolerance of ONNX Runtime;
the bias fusion where it applies; and the user errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.frontend.onnx_import import import_model
from compiler.pipeline import compile_model
from isa.errors import RnnaccelError

from toolchain import assert_close

SHAPE = (3, 8)
CONSTANTS = {"scalar": (), "vector": (8,), "row": (1, 8), "column": (3, 1), "full": SHAPE}


def _model(nodes, x_shape, y_shape, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                              [numpy_helper.from_array(_tensor(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _tensor(value) -> np.ndarray:
    """Integers (Slice bounds) as int64, everything else as float32."""
    value = np.asarray(value)
    return value.astype(np.int64) if value.dtype.kind in "iu" else value.astype(np.float32)


def binary_model(op: str, const_shape, data_first: bool, x_shape=SHAPE, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    const = rng.uniform(-2, 2, const_shape)
    y_shape = np.broadcast_shapes(x_shape, const_shape)
    node = helper.make_node(op, ["x", "c"] if data_first else ["c", "x"], ["y"], name="ew")
    return _model([node], x_shape, y_shape, {"c": const})


def _inputs(shape=SHAPE, seed: int = 1) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    calibration = rng.standard_normal((16, *shape)).astype(np.float32)
    return {"x": calibration[0]}, {"x": calibration}


@pytest.mark.parametrize("const", CONSTANTS)
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul"])
@pytest.mark.parametrize("data_first", [True, False])
def test_every_operand_order_and_broadcast(op, const, data_first):
    model = binary_model(op, CONSTANTS[const], data_first, seed=len(const))
    inputs, calibration = _inputs()
    checked = assert_close(model, inputs, calibration=calibration)
    assert [n.op for n in checked.compiled.graph.nodes] == ["mul_const" if op == "Mul" else "add_const"]
    negates = op == "Sub" and not data_first  # c - x: VMUL by a vector of -mult
    assert ("VMUL" in {i.mnemonic for i in checked.compiled.program.code}) == (op == "Mul" or negates)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul"])
def test_data_broadcast_to_the_constants_shape(op):
    model = binary_model(op, (4, 2, 8), data_first=False, x_shape=(1, 8))
    inputs, calibration = _inputs((1, 8))
    checked = assert_close(model, inputs, calibration=calibration)
    assert [n.op for n in checked.compiled.graph.nodes][0] == "gather"


@pytest.mark.parametrize("bits", [8, 16])
def test_a_chain_after_a_layer_with_a_fixed_format_consumer(bits):
    """Gemm -> *c -> c- -> Tanh: the product's scale is derived, the difference's serves Tanh's Q3.12."""
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["g"], name="fc"),
             helper.make_node("Mul", ["g", "s"], ["m"], name="scale"),
             helper.make_node("Sub", ["o", "m"], ["d"], name="shift"),
             helper.make_node("Tanh", ["d"], ["y"], name="act")]
    inits = {"W": rng.standard_normal((8, 5)) / 3, "b": rng.standard_normal(5), "s": rng.uniform(0.2, 3, 5),
             "o": rng.uniform(-1, 1, (3, 5))}
    model = _model(nodes, SHAPE, (3, 5), inits)
    inputs, calibration = _inputs()
    checked = assert_close(model, inputs, bits, calibration)
    assert [n.op for n in checked.compiled.graph.nodes][:3] == ["fc", "mul_const", "add_const"]


def test_add_after_a_bias_less_layer_is_its_bias():
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["b", "m"], ["y"])]
    graph = import_model(_model(nodes, SHAPE, (3, 4), {"W": np.ones((8, 4)), "b": np.ones((3, 4))}))
    assert [n.op for n in graph.nodes] == ["fc"] and graph.nodes[0].attrs.bias.shape == (4,)


def test_add_after_a_layer_with_a_bias_is_element_wise():
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["g"]), helper.make_node("Add", ["g", "b"], ["y"])]
    model = _model(nodes, SHAPE, (3, 4), {"W": np.ones((8, 4)) / 8, "b": np.arange(4.0)})
    assert [n.op for n in import_model(model).nodes] == ["fc", "add_const"]
    inputs, calibration = _inputs()
    assert_close(model, inputs, calibration=calibration)


def test_constants_only_fold():
    nodes = [helper.make_node("Sub", ["p", "q"], ["d"]), helper.make_node("Mul", ["d", "q"], ["e"]),
             helper.make_node("Add", ["x", "e"], ["y"])]
    graph = import_model(_model(nodes, SHAPE, SHAPE, {"p": np.full(8, 3.0), "q": np.full(8, 2.0)}))
    assert [n.op for n in graph.nodes] == ["add_const"]
    np.testing.assert_array_equal(graph.nodes[0].attrs.value, np.full(SHAPE, 2.0))


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul"])
@pytest.mark.parametrize("second", ["same", "row"])
def test_two_computed_operands(op, second):
    """x op f(x): the second operand computed too, of the same shape or a row broadcast down."""
    nodes = [helper.make_node("Gemm", ["x", "w"], ["g"], name="proj"), helper.make_node("Tanh", ["g"], ["t"])]
    if second == "row":
        nodes.append(helper.make_node("Slice", ["t", "zero", "one", "zero"], ["s"], name="first_row"))
    nodes.append(helper.make_node(op, ["x", "s" if second == "row" else "t"], ["y"], name="both"))
    inits = {"w": np.random.default_rng(3).uniform(-1, 1, (8, 8)), "zero": np.array([0]), "one": np.array([1])}
    model = _model(nodes, SHAPE, SHAPE, inits)
    inputs, calibration = _inputs()
    checked = assert_close(model, inputs, calibration=calibration)
    assert op.lower() in [n.op for n in checked.compiled.graph.nodes]


def test_a_nan_constant_names_the_tensor():
    model = binary_model("Mul", (8,), True)
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.full(8, np.nan, np.float32), "c"))
    with pytest.raises(RnnaccelError, match=r"node 'ew' \(Mul\): Mul constant 'c' contains NaN or Inf"):
        compile_model(model)


def test_a_constant_that_does_not_broadcast_is_refused():
    model = _model([helper.make_node("Add", ["x", "c"], ["y"], name="ew")], SHAPE, SHAPE, {"c": np.ones(5)})
    with pytest.raises(RnnaccelError, match=r"node 'ew' \(Add\): operands of shapes \[3, 8\] and \[5\].*not supported"):
        compile_model(model)

"""Gemm with every attribute, and MatMul over batch and time dims: bit-exact against the golden
reference and within tolerance of ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.frontend.onnx_import import import_model
from isa.errors import RnnaccelError

from toolchain import assert_close

M, K, N = 3, 6, 5


def _model(nodes, inputs, output_shape, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _random(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def gemm_model(bias_shape, alpha=1.0, beta=1.0, trans_a=0, trans_b=0) -> onnx.ModelProto:
    inits = {"B": _random((N, K) if trans_b else (K, N), 1)}
    names = ["a", "B"]
    if bias_shape is not None:
        inits["C"], names = _random(bias_shape, 2), names + ["C"]
    node = helper.make_node("Gemm", names, ["y"], alpha=alpha, beta=beta, transA=trans_a, transB=trans_b, name="gemm")
    return _model([node], [("a", (K, M) if trans_a else (M, K))], (M, N), inits)


@pytest.mark.parametrize("bias_shape", [None, (), (1,), (N,), (1, N), (M, 1), (M, N)])
@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_gemm_every_bias_shape_and_transposition(bias_shape, trans_a, trans_b):
    model = gemm_model(bias_shape, alpha=0.7, beta=-1.5, trans_a=trans_a, trans_b=trans_b)
    shape = (K, M) if trans_a else (M, K)
    assert_close(model, {"a": _random(shape, 3)}, calibration={"a": _random((16, *shape), 4)})


def test_matrix_bias_gives_each_row_its_own_vector():
    graph = import_model(gemm_model((M, N)))
    assert graph.nodes[-1].attrs.bias.shape == (M, N)
    assert import_model(gemm_model((1, N))).nodes[-1].attrs.bias.shape == (N,)


def test_trans_a_on_data_is_a_gather_before_the_layer():
    graph = import_model(gemm_model((N,), trans_a=1))
    assert [n.op for n in graph.nodes] == ["gather", "fc"]
    np.testing.assert_array_equal(graph.nodes[0].attrs.index, np.arange(K * M).reshape(K, M).T.ravel())


def test_gemm_of_constants_folds_into_a_weight():
    nodes = [helper.make_node("Gemm", ["P", "Q", "R"], ["W"], alpha=2.0, beta=0.5, transA=1),
             helper.make_node("MatMul", ["a", "W"], ["y"])]
    inits = {"P": _random((4, K), 5), "Q": _random((4, N), 6), "R": _random((N,), 7)}
    model = _model(nodes, [("a", (M, K))], (M, N), inits)
    assert [n.op for n in import_model(model).nodes] == ["fc"]
    assert_close(model, {"a": _random((M, K), 8)})


@pytest.mark.parametrize("bias", [False, True])
def test_matmul_over_batch_and_time_dims(bias):
    """[B, T, K] x [K, N], as sequence models apply a projection to every step."""
    nodes = [helper.make_node("MatMul", ["a", "W"], ["m" if bias else "y"], name="proj")]
    inits = {"W": _random((K, N), 9)}
    if bias:
        nodes.append(helper.make_node("Add", ["m", "b"], ["y"], name="bias"))
        inits["b"] = _random((N,), 10)
    model = _model(nodes, [("a", (2, 7, K))], (2, 7, N), inits)
    checked = assert_close(model, {"a": _random((2, 7, K), 11)})
    assert [n.op for n in checked.compiled.graph.nodes] == ["fc"]


@pytest.mark.parametrize("op, weight, message", [
    ("Gemm", (K,), r"B must be a matrix \(rank 2\); got rank 1"),
    ("Gemm", (2, K, N), r"B must be a matrix \(rank 2\); got rank 3"),
    ("MatMul", (2, K, N), r"B must be a matrix \(rank 2\); got rank 3"),
])
def test_a_weight_that_is_not_a_matrix_is_refused(op, weight, message):
    model = _model([helper.make_node(op, ["a", "B"], ["y"], name="layer")], [("a", (M, K))], (M, N),
                   {"B": _random(weight, 3)})
    with pytest.raises(RnnaccelError, match=f"node 'layer' \\({op}\\): .*{message}"):
        import_model(model)

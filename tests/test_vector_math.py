"""Element-wise math on the vector unit (compiler/frontend/math_ops.py, compiler/ops/piecewise.py):
each operator compiled and simulated, bit-exact against the golden reference (run_checked) and
within the documented tolerance of ONNX Runtime; the new tables within their documented error
bounds; a PyTorch GELU MLP compiled for the chip alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.frontend.math_ops import GELU_GATES, HARDSWISH_GATE
from compiler.pipeline import compile_model
from isa import numerics as nx
from isa.partitioned import PartitionedProgram
from isa.target import Target

from toolchain import assert_close

DATA = Path(__file__).parent / "data" / "vecmath"
SHAPE = [2, 3, 8]
ROOT2 = np.float32(np.sqrt(2.0))


def _scalar(value: float) -> np.ndarray:
    return np.array(value, np.float32)


# name -> (operator, its initialisers after x, attributes, opset)
CASES = {
    "Neg": ("Neg", {}, {}, 17),
    "Abs": ("Abs", {}, {}, 17),
    "Sub c - x": ("Sub", {}, {}, 17),
    "Div by a scalar": ("Div", {"c": _scalar(3.0)}, {}, 17),
    "Div by a row": ("Div", {"c": np.linspace(-4, 4, 8).astype(np.float32) + 0.5}, {}, 17),
    "Pow 2": ("Pow", {"e": _scalar(2.0)}, {}, 17),
    "Clip": ("Clip", {"lo": _scalar(-1.0), "hi": _scalar(0.5)}, {}, 17),
    "Clip below only": ("Clip", {"lo": _scalar(-0.25)}, {}, 17),
    "Clip opset 10": ("Clip", {}, {"min": -0.5, "max": 2.0}, 10),
    "LeakyRelu": ("LeakyRelu", {}, {"alpha": 0.1}, 17),
    "PRelu per channel": ("PRelu", {"s": np.linspace(-1, 1, 8).astype(np.float32)}, {}, 17),
    "PRelu beyond 1": ("PRelu", {"s": np.array([2.5, -3.0, 0.2], np.float32).reshape(3, 1)}, {}, 17),
    "Erf": ("Erf", {}, {}, 17),
    "HardSwish": ("HardSwish", {}, {}, 17),
    "Gelu": ("Gelu", {}, {}, 20),
    "Gelu tanh": ("Gelu", {}, {"approximate": "tanh"}, 20),
}


def _model(op: str, inits: dict[str, np.ndarray], opset: int, **attrs) -> onnx.ModelProto:
    inputs = ["x", *inits] if op != "Sub" else ["c", "x"]
    inits = inits if op != "Sub" else {"c": np.linspace(-1, 1, 8).astype(np.float32)}
    if op == "Clip" and "hi" not in inits and "lo" in inits:
        inputs = ["x", "lo"]
    node = helper.make_node(op, inputs, ["y"], name="n", **attrs)
    return _graph([node], inits, opset)


def _graph(nodes: list, inits: dict[str, np.ndarray], opset: int) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, SHAPE)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _feed(seed: int, scale: float) -> dict[str, np.ndarray]:
    return {"x": (np.random.default_rng(seed).standard_normal(SHAPE) * scale).astype(np.float32)}


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("scale", [1.0, 5.0])
@pytest.mark.parametrize("case", CASES)
def test_an_operator_runs_on_the_chip_close_to_onnx_runtime(case, scale, bits):
    op, inits, attrs, opset = CASES[case]
    model = _model(op, inits, opset, **attrs)
    checked = assert_close(model, _feed(1, scale), bits=bits)
    assert not isinstance(checked.compiled.program, PartitionedProgram)


def test_the_erf_form_exporters_write_for_gelu():
    """x · 0.5 · (1 + Erf(x / √2)), node by node: Div, Erf, Add, Mul, Mul."""
    nodes = [helper.make_node("Div", ["x", "root2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["a"]), helper.make_node("Mul", ["x", "a"], ["m"]),
             helper.make_node("Mul", ["m", "half"], ["y"])]
    model = _graph(nodes, {"root2": ROOT2, "one": _scalar(1.0), "half": _scalar(0.5)}, 17)
    for bits in (8, 16):
        assert_close(model, _feed(3, 2.0), bits=bits)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_exp_by_a_table_over_the_calibrated_range(scale, bits):
    """Within the tolerance for calibrated ranges up to ±8 (docs/numerics.md, "Element-wise math")."""
    checked = assert_close(_model("Exp", {}, 17), _feed(6, scale), bits=bits)
    assert [n.op for n in checked.compiled.graph.nodes] == ["scaled_table"]


@pytest.mark.parametrize("case", [*CASES, "Exp"])
def test_an_operator_on_a_constant_folds(case):
    """Each operator applied to an initialiser folds at compile time: only the Add is left."""
    op, inits, attrs, opset = CASES.get(case, ("Exp", {}, {}, 17))
    inner = _model(op, inits, opset, **attrs)
    node = inner.graph.node[0]
    node.input[list(node.input).index("x")] = "k"
    node.output[0] = "f"
    constants = dict(inits) if op != "Sub" else {"c": np.linspace(-1, 1, 8).astype(np.float32)}
    constants["k"] = np.linspace(-3, 3, int(np.prod(SHAPE))).reshape(SHAPE).astype(np.float32)
    model = _graph([node, helper.make_node("Add", ["x", "f"], ["y"])], constants, opset)
    checked = assert_close(model, _feed(4, 1.0), bits=16)
    assert [n.op for n in checked.compiled.graph.nodes] == ["add_const"]


def _table_error(name: str, func) -> float:
    codes = np.arange(nx.ACT_MIN, nx.ACT_MAX + 1)
    got = nx.table_lookup(nx.activation_table(name), codes) / 2.0 ** nx.UNIT_FRAC
    return float(np.max(np.abs(got - func(codes / 2.0 ** nx.GATE_FRAC))))


# table -> its largest error over all 65536 inputs, as docs/numerics.md states it
TABLE_BOUNDS = {"erf": 4.92e-4, GELU_GATES["none"]: 1.41e-4, GELU_GATES["tanh"]: 1.40e-4, HARDSWISH_GATE: 4.07e-5}


@pytest.mark.parametrize("name", TABLE_BOUNDS)
def test_a_table_is_within_its_documented_bound(name):
    func, params = nx.parse_table_name(name)
    error = _table_error(name, lambda x: nx.TABLE_FUNCTIONS[func](x, *params))
    assert error <= TABLE_BOUNDS[name]
    assert error > TABLE_BOUNDS[name] / 4, "the documented bound is far from the measured error"


@pytest.mark.parametrize("largest", [1.0, 4.0, 8.0])
def test_the_exp_table_is_within_its_documented_bound(largest):
    """Data calibrated to |x| <= R spans [-2R, 2R] (the headroom), its output e^R at half the table's
    range: over x <= R the error is at most (R/64)² / 8 of e^R, plus the knots' and the
    interpolation's rounding, half an LSB each (an LSB of the table is 2^-14 of e^R)."""
    a, b = 2 * largest / 8, 2 * np.exp(largest)
    codes = np.arange(nx.ACT_MIN, nx.ACT_MAX + 1)
    codes = codes[codes * a / 2 ** nx.GATE_FRAC <= largest]
    got = nx.table_lookup(nx.activation_table(nx.table_name("scaled_exp", a, b)), codes) * b / 2 ** nx.UNIT_FRAC
    error = np.max(np.abs(got - np.exp(codes * a / 2 ** nx.GATE_FRAC))) / np.exp(largest)
    assert error <= (largest / 64) ** 2 / 8 + 2.0 ** -14


def test_abs_and_neg_are_exact_on_the_grid():
    """Both only move values on x's own grid (x's scale is kept): every output is |x| or -x exactly."""
    feed = _feed(5, 2.0)
    for op, want in (("Abs", np.abs), ("Neg", np.negative)):
        checked = assert_close(_model(op, {}, 17), feed, bits=16)
        scale = checked.compiled.program.inputs[0].scale
        grid = np.floor(feed["x"] / scale + 0.5) * scale
        np.testing.assert_allclose(checked.outputs["y"], want(grid), atol=scale * 1.01)


@pytest.mark.parametrize("tag", ["script", "dynamo", "dynamo-opset20"])
def test_an_exported_gelu_mlp_runs_on_the_chip_alone(tag):
    model = onnx.load(str(DATA / f"gelu-mlp-{tag}.onnx"))
    samples = np.load(DATA / "gelu-mlp.npz")["x"]
    compiled = compile_model(model, Target(), {"x": samples}, chip_only=True)
    assert not isinstance(compiled.program, PartitionedProgram)
    for sample in samples[:4]:
        assert_close(model, {"x": sample}, bits=8, calibration={"x": samples})

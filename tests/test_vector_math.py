"""Element-wise math on the vector unit (compiler/frontend/math_ops.py, compiler/ops/piecewise.py):
each operator compiled and simulated, bit-exact against the golden reference (run_checked) and
within the documented tolerance of ONNX Runtime; the new tables within their documented error
bounds; a PyTorch GELU MLP and a PyTorch log-power, RMSNorm and GRU front end compiled for the chip
alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.frontend.math_ops import GELU_GATES, HARDSWISH_GATE
from compiler.ops.mantissa import POWERS as VPOW_POWERS
from compiler.pipeline import compile_model
from isa import numerics as nx
from isa.errors import RnnaccelError
from isa.partitioned import PartitionedProgram
from isa.target import Target

from models import recurrent_model
from toolchain import assert_close, run_checked

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


# Powers and logarithms of data (VPOW, compiler/ops/mantissa.py): operator -> (its initialisers, float meaning)
POWER_CASES = {"Sqrt": ({}, np.sqrt), "Reciprocal": ({}, np.reciprocal), "Log": ({}, np.log),
               **{f"Pow {p:g}": ({"e": _scalar(p)}, lambda x, p=p: x ** p) for p in VPOW_POWERS}}
SIGNED = {"Reciprocal", "Pow -1", "Pow -2"}  # integer powers: defined for x < 0 as well


def _power_model(case: str) -> onnx.ModelProto:
    inits = POWER_CASES[case][0]
    return _graph([helper.make_node(case.split()[0], ["x", *inits], ["y"])], inits, 17)


def _model(op: str, inits: dict[str, np.ndarray], opset: int, **attrs) -> onnx.ModelProto:
    inputs = ["x", *inits] if op != "Sub" else ["c", "x"]
    inits = inits if op != "Sub" else {"c": np.linspace(-1, 1, 8).astype(np.float32)}
    if op == "Clip" and "hi" not in inits and "lo" in inits:
        inputs = ["x", "lo"]
    node = helper.make_node(op, inputs, ["y"], name="n", **attrs)
    return _graph([node], inits, opset)


def _graph(nodes: list, inits: dict[str, np.ndarray], opset: int) -> onnx.ModelProto:
    return _front_end(nodes, inits, {"x": SHAPE}, SHAPE, opset)


def _front_end(nodes: list, inits: dict[str, np.ndarray], inputs: dict[str, list[int]], out: list[int],
               opset: int = 17) -> onnx.ModelProto:
    """A graph of float inputs `inputs` (name: shape) and one output y."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
                                           for n, s in inputs.items()],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
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


@pytest.mark.parametrize("case", [*CASES, "Exp", *POWER_CASES])
def test_an_operator_on_a_constant_folds(case):
    """Each operator applied to an initialiser folds at compile time: only the Add is left."""
    positive, (op, inits, attrs, opset) = case in POWER_CASES, CASES.get(case, ("Exp", {}, {}, 17))
    inner = _power_model(case) if positive else _model(op, inits, opset, **attrs)
    node = inner.graph.node[0]
    node.input[list(node.input).index("x")] = "k"
    node.output[0] = "f"
    constants = {i.name: numpy_helper.to_array(i) for i in inner.graph.initializer}
    constants["k"] = np.linspace(0.5 if positive else -3, 3, int(np.prod(SHAPE))).reshape(SHAPE).astype(np.float32)
    model = _graph([node, helper.make_node("Add", ["x", "f"], ["y"])], constants, inner.opset_import[0].version)
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


# exported PyTorch models (tests/data/vecmath/make_*.py): a GELU MLP, and a spectral front end whose
# log power and RMSNorm (Sqrt, then Div of 1 by it or Reciprocal) feed a GRU, on samples over three decades
EXPORTED = [*(("gelu-mlp", tag) for tag in ("script", "dynamo", "dynamo-opset20")),
            *(("power-front-end", tag) for tag in ("script", "dynamo"))]


@pytest.mark.parametrize(("name", "tag"), EXPORTED)
def test_an_exported_model_runs_on_the_chip_alone(name, tag):
    model = onnx.load(str(DATA / f"{name}-{tag}.onnx"))
    samples = np.load(DATA / f"{name}.npz")["x"]
    compiled = compile_model(model, Target(), {"x": samples}, chip_only=True)
    assert not isinstance(compiled.program, PartitionedProgram)
    for bits in (8, 16):
        for sample in samples[:3]:
            assert_close(model, {"x": sample}, bits=bits, calibration={"x": samples})


def _decades(seed: int, low: float, high: float, signed: bool, shape=SHAPE) -> np.ndarray:
    """Magnitudes spread evenly over the decades from 10^low to 10^high, of random sign if `signed`."""
    rng = np.random.default_rng(seed)
    sign = rng.choice([-1.0, 1.0], shape) if signed else 1.0
    return (sign * 10.0 ** rng.uniform(low, high, shape)).astype(np.float32)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("case", POWER_CASES)
def test_a_power_or_log_of_data_runs_on_the_chip_close_to_onnx_runtime(case, bits):
    """Over two decades, one for |p| = 2 (beyond, the input's 16-bit grid itself errs by more than the
    tolerance near 0: |p| / 2u relatively for a code u)."""
    p = abs(float(case.split()[1])) if case.startswith("Pow") else 1.0
    checked = assert_close(_power_model(case), {"x": _decades(7, 0.5 - 2 / max(p, 1), 0.5, case in SIGNED)},
                           bits=bits)
    assert [n.op for n in checked.compiled.graph.nodes] == ["log" if case == "Log" else "power"]


@pytest.mark.parametrize("case", POWER_CASES)
def test_a_power_or_log_keeps_the_tables_error_over_four_decades(case):
    """Against the function of the input as the chip holds it (its 16-bit code), each output errs by
    at most the table's bound -- relative for a power, absolute for the log -- plus one LSB of the
    output (its rounding, and the requantisation multiplier's 2^-15)."""
    x = _decades(8, -3.5, 0.5, case in SIGNED)
    checked = run_checked(_power_model(case), {"x": x}, Target(weight_bits=16))
    program = checked.compiled.program
    held = nx.dequantize(nx.quantize(x, program.inputs[0].scale), program.inputs[0].scale).astype(np.float64)
    want = POWER_CASES[case][1](held)
    bound = MANTISSA_BOUNDS[TABLE_OF[case]] * (1.0 if case == "Log" else np.abs(want))
    assert np.all(np.abs(checked.outputs["y"] - want) <= bound + program.outputs[0].scale)


# VPOW's tables -> their largest error over all 65536 input codes, as docs/numerics.md states it
# (relative for a power, absolute for the log)
MANTISSA_BOUNDS = {**{nx.table_name("powmant", p): bound for p, bound in (
    (1.5, 3.91e-4), (0.5, 1.10e-4), (-0.5, 1.11e-4), (-1.0, 2.24e-4), (-1.5, 4.41e-4), (-2.0, 8.21e-4))},
                   "lnquad": 9.84e-5}


TABLE_OF = {"Log": "lnquad", "Sqrt": nx.table_name("powmant", 0.5), "Reciprocal": nx.table_name("powmant", -1.0),
            **{f"Pow {p:g}": nx.table_name("powmant", p) for p in VPOW_POWERS}}


@pytest.mark.parametrize("name", MANTISSA_BOUNDS)
def test_a_mantissa_table_is_within_its_documented_bound(name):
    """The table with the exponent applied exactly: every positive code u, read as u = m · 4^h, against u^p or ln u."""
    func, params = nx.parse_table_name(name)
    codes = np.arange(1, nx.ACT_MAX + 1)
    h = (np.frexp(codes.astype(np.float64))[1] - 1) // 2
    t = nx.table_lookup(nx.activation_table(name), np.left_shift(codes, 14 - 2 * h) - (1 << 15))
    if func == "lnquad":
        error = np.abs((t + h * nx.LN2_Q15) * 2.0 ** (1 - nx.UNIT_FRAC) - np.log(codes))
    else:
        p = params[0]
        got = t * 2.0 ** (1 - nx.UNIT_FRAC) * 4.0 ** max(p, 0.0) * 4.0 ** (p * h)
        error = np.abs(got / codes ** p - 1.0)
    assert MANTISSA_BOUNDS[name] / 4 < error.max() <= MANTISSA_BOUNDS[name]


def _vpow(power: int, codes: list[int]) -> np.ndarray:
    """VPOW with its own power's table, scaled so that the code 1 gives T(1) (no output saturates)."""
    table = nx.table_name("powmant", power / 2) if power else "lnquad"
    shift = 18 if power == 0 else 14 + power * -nx.TOP_OCTAVES
    result = nx.mantissa_power(nx.activation_table(table), np.array(codes), power, 1 << 14, shift, 0)
    assert np.all(np.abs(result) < nx.ACT_MAX)
    return result


def test_vpow_s_rule_for_codes_at_and_below_zero():
    """An odd power is odd, an even one even; a positive power of a code <= 0 is 0; ln and a negative
    half-integer power read a code below 1 as 1, an integer one reads 0 as 1."""
    assert _vpow(1, [0, -9]).tolist() == [0, 0] and _vpow(1, [9])[0] > 0
    np.testing.assert_array_equal(_vpow(-2, [-1, -7, -300]), -_vpow(-2, [1, 7, 300]))
    np.testing.assert_array_equal(_vpow(-2, [0]), _vpow(-2, [1]))
    np.testing.assert_array_equal(_vpow(-4, [0, -1, -7, -300]), _vpow(-4, [1, 1, 7, 300]))
    np.testing.assert_array_equal(_vpow(-1, [0, -5]), _vpow(-1, [1, 1]))
    np.testing.assert_array_equal(_vpow(0, [0, -5]), _vpow(0, [1, 1]))
    assert len(set(_vpow(-2, [1, 7, 300]).tolist())) == 3


@pytest.mark.parametrize(("case", "x"), [("Log", 0.0), ("Sqrt", -1.0), ("Reciprocal", 0.0), ("Pow -0.5", -2.0)])
def test_calibration_where_the_function_is_not_finite_is_refused(case, x):
    samples = np.abs(_decades(9, -1, 1, False))
    samples[0, 0, 0] = x
    refusal = f"{case.split()[0]} 'n': calibration gives it an input where it is not finite"
    with pytest.raises(RnnaccelError, match=refusal):
        compile_model(_named(_power_model(case)), Target(), {"x": samples[None]})


def _named(model: onnx.ModelProto) -> onnx.ModelProto:
    model.graph.node[0].name = "n"
    return model


def test_division_by_data_is_a_reciprocal_and_a_product():
    model = _front_end([helper.make_node("Div", ["x", "d"], ["y"])], {}, {"x": SHAPE, "d": SHAPE}, SHAPE)
    for bits in (8, 16):
        checked = assert_close(model, {**_feed(10, 1.0), "d": _decades(11, -1.0, 0.5, True)}, bits=bits)
        assert [n.op for n in checked.compiled.graph.nodes] == ["power", "mul"]


def test_a_constant_divided_by_data_and_pow_one():
    """c / x is c · x^-1 (mul_const after VPOW); Pow by 1 is x itself."""
    nodes = [helper.make_node("Div", ["c", "x"], ["q"]), helper.make_node("Pow", ["q", "one"], ["y"])]
    model = _graph(nodes, {"c": np.linspace(1, 2, 8).astype(np.float32), "one": _scalar(1.0)}, 17)
    checked = assert_close(model, {"x": _decades(12, -1.0, 0.5, True)}, bits=16)
    assert [n.op for n in checked.compiled.graph.nodes][:2] == ["power", "mul_const"]


def test_a_log_power_front_end_feeding_a_gru():
    """ln(x² + eps) of a signal spanning four decades (its small values under eps), then a GRU."""
    gru = recurrent_model("GRU", 6, 1, 8, 8, outputs=["Y_h"])
    weights = {i.name: numpy_helper.to_array(i) for i in gru.graph.initializer}
    nodes = [helper.make_node("Mul", ["x", "x"], ["power"]), helper.make_node("Add", ["power", "eps"], ["floor"]),
             helper.make_node("Log", ["floor"], ["X"]), *gru.graph.node]
    nodes[-1].output[1] = "y"
    model = _front_end(nodes, {**weights, "eps": _scalar(0.1)}, {"x": [6, 1, 8]}, [1, 1, 8])
    for bits in (8, 16):
        checked = assert_close(model, {"x": _decades(13, -3.0, 0.5, True, [6, 1, 8])}, bits=bits)
        assert not isinstance(checked.compiled.program, PartitionedProgram)


def test_a_magnitude_sqrt_of_a_sum_of_squares():
    nodes = [helper.make_node("Mul", ["re", "re"], ["re2"]), helper.make_node("Mul", ["im", "im"], ["im2"]),
             helper.make_node("Add", ["re2", "im2"], ["sum"]), helper.make_node("Sqrt", ["sum"], ["y"])]
    model = _front_end(nodes, {}, {"re": SHAPE, "im": SHAPE}, SHAPE)
    feed = {"re": _decades(14, -2.0, 0.5, True), "im": _decades(15, -2.0, 0.5, True)}
    for bits in (8, 16):
        assert [n.op for n in assert_close(model, feed, bits=bits).compiled.graph.nodes][-1] == "power"


def test_rmsnorm_by_pow_minus_a_half():
    """x · (mean(x²) + eps)^-0.5 over rows a decade apart in size."""
    nodes = [helper.make_node("Mul", ["x", "x"], ["square"]),
             helper.make_node("ReduceMean", ["square"], ["mean"], axes=[-1]),
             helper.make_node("Add", ["mean", "eps"], ["floor"]),
             helper.make_node("Pow", ["floor", "half"], ["inverse"]), helper.make_node("Mul", ["x", "inverse"], ["y"])]
    model = _front_end(nodes, {"eps": _scalar(1e-5), "half": _scalar(-0.5)}, {"x": SHAPE}, SHAPE)
    rng = np.random.default_rng(16)
    x = (rng.standard_normal(SHAPE) * 10.0 ** rng.uniform(-1.0, 0.0, [2, 3, 1])).astype(np.float32)
    for bits in (8, 16):
        assert "power" in [n.op for n in assert_close(model, {"x": x}, bits=bits).compiled.graph.nodes]

"""Element-wise math on the vector unit: Neg, Div, Pow, Sqrt, Reciprocal, Log, Abs, Clip, LeakyRelu,
PRelu, Erf, Gelu, HardSwish and Exp.

Each becomes ops that exist for other operators, or one of the two piecewise-linear ops
(compiler/ops/piecewise.py): Neg is `add_const` of 0 negated (c - x); Div by a constant is
`mul_const` by its reciprocal; Pow by 2 is `mul` of x by itself; Abs, LeakyRelu and PRelu are
`leaky` with slopes -1, alpha and the constant slope; Clip is `clip`; Erf is the "erf" table;
Gelu and HardSwish are x times a bounded factor -- the normal CDF ("phi", or "phitanh" for the
tanh approximation) or hardsigmoid(1/6, 1/2) -- a table (Q0.15) and then `mul`, so no table needs
an output beyond ±1. Exp is unbounded: its table (`scaled_table`) reads the data at its own scale
and writes the output at the output's calibrated one. Sqrt, Reciprocal, Pow by ±1.5, ±0.5, -1 and
-2, and Log on data are `power` and `log` (compiler/ops/mantissa.py: one VPOW, a float-style table
exact in the exponent); Div by data is `mul` by the divisor's reciprocal. Nodes whose inputs are
all constant fold, as shape arithmetic needs.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from compiler.frontend.capability import Constraint, NodeView, constant, constants_from, declare
from compiler.frontend.compute_ops import constant_weight
from compiler.frontend.elementwise_ops import emit_with_constant
from compiler.frontend.registry import OPERATORS, fold, operator, padded, unsupported
from compiler.ir import Node
from compiler.ops import mantissa
from compiler.ops.activation import ScaledTableAttrs, TableAttrs, float_activation
from compiler.ops.elementwise import MulAttrs
from compiler.ops.mantissa import LogAttrs, PowerAttrs
from compiler.ops.piecewise import ClipAttrs, LeakyAttrs
from isa.numerics import TABLE_FUNCTIONS, table_name

HARDSWISH_GATE = table_name("hardsigmoid", 1.0 / 6.0, 0.5)
GELU_GATES = {"none": "phi", "tanh": "phitanh"}
POWERS = (2.0, 1.0, *mantissa.POWERS)  # the constant exponents Pow takes on data
_VPOW_POWERS = ", ".join(f"{p:g}" for p in mantissa.POWERS)


def _divide(a, b):
    return a // b if np.issubdtype(np.asarray(a).dtype, np.integer) else a / b


@operator
def Neg(b, node, name: str) -> None:
    """-x is 0 - x: the negation add_const already does for c - x."""
    if b.is_const(node.input[0]):
        return fold(b, node, np.negative)
    emit_with_constant(b, name, "add_const", node.input[0], np.zeros(1, np.float32), node.output[0], negate=True)


@operator
def Div(b, node, name: str) -> None:
    """x / c is x · (1/c); a / b for a computed b is a · b^-1 (VPOW, then VMUL; calibration must
    not see b = 0); a division of constants folds (integer shape arithmetic included)."""
    if all(b.is_const(n) for n in node.input):
        return fold(b, node, _divide)
    if not b.is_const(node.input[1]):
        return _times_reciprocal(b, node, name)
    divisor = constant_weight(b, node.input[1], "Div divisor")
    emit_with_constant(b, name, "mul_const", node.input[0], (1.0 / divisor).astype(np.float32), node.output[0])


def _times_reciprocal(b, node, name: str) -> None:
    """a · (1 / b): VPOW with power -1, then Mul (VMUL, or mul_const for a constant a)."""
    dividend, divisor = node.input
    reciprocal = f"{name}/reciprocal"
    _emit_power(b, f"{name}/reciprocal", divisor, reciprocal, -1.0, "Div")
    OPERATORS["Mul"](b, helper.make_node("Mul", [dividend, reciprocal], [node.output[0]]), name)


@operator
def Pow(b, node, name: str) -> None:
    """x² is x · x (VMUL), x¹ is x, x^±1.5, x^±0.5, x^-1 and x^-2 are `power` (VPOW); the exponent is a
    constant the CONSTRAINTS restrict to POWERS."""
    if all(b.is_const(n) for n in node.input):
        return fold(b, node, np.power)
    x, out = node.input[0], node.output[0]
    exponent = float(np.asarray(b.const(node.input[1])).ravel()[0])
    if exponent == 1.0:
        return OPERATORS["Identity"](b, helper.make_node("Identity", [x], [out]), name)
    if exponent != 2.0:
        return _emit_power(b, name, x, out, exponent, "Pow")
    b.emit(Node("mul", name, (x, x), (out,), MulAttrs()), {out: b.shape(x)})


@operator
def Sqrt(b, node, name: str) -> None:
    """x^0.5 by VPOW, its relative error the table's over the whole 16-bit range; 0 below 0 (calibration
    must not see x < 0, where the float result is NaN: the compiler refuses)."""
    _unary_power(b, node, name, 0.5)


@operator
def Reciprocal(b, node, name: str) -> None:
    """x^-1 by VPOW, odd in x, its relative error the table's over the whole 16-bit range (calibration
    must not see x = 0: the compiler refuses)."""
    _unary_power(b, node, name, -1.0)


@operator
def Log(b, node, name: str) -> None:
    """ln x by VPOW's log form, its absolute error the table's over the whole 16-bit range (calibration
    must see x > 0 only: the compiler refuses otherwise)."""
    x, out = node.input[0], node.output[0]
    if b.is_const(x):
        return fold(b, node, np.log)
    b.emit(Node("log", name, (x,), (out,), LogAttrs()), {out: b.shape(x)})


def _unary_power(b, node, name: str, p: float) -> None:
    x, out = node.input[0], node.output[0]
    if b.is_const(x):
        return fold(b, node, lambda v: np.power(v.astype(np.float64), p).astype(v.dtype))
    _emit_power(b, name, x, out, p, node.op_type)


def _emit_power(b, name: str, x: str, out: str, p: float, what: str) -> None:
    b.emit(Node("power", name, (x,), (out,), PowerAttrs(p=p, what=what)), {out: b.shape(x)})


@operator
def Exp(b, node, name: str) -> None:
    """A table over the data's calibrated range, its output scaled by the output's (a VACT)."""
    func, x, out = "scaled_exp", node.input[0], node.output[0]
    if b.is_const(x):
        return fold(b, node, lambda v, *_: TABLE_FUNCTIONS[func](v).astype(v.dtype))
    b.emit(Node("scaled_table", name, (x,), (out,), ScaledTableAttrs(func=func)), {out: b.shape(x)})


@operator
def Abs(b, node, name: str) -> None:
    """|x| as the piecewise-linear `leaky` with slope -1: VRELU, VSUB, VMUL, VADD, exact."""
    _leaky(b, node, name, np.float32(-1.0), np.abs)


@operator
def LeakyRelu(b, node, name: str, *, alpha=0.01) -> None:
    """x, or alpha · x below 0 (`leaky`); an |alpha| above 1 makes the output's scale coarser by it."""
    _leaky(b, node, name, np.float32(alpha), lambda x: np.where(x >= 0, x, alpha * x))


@operator
def PRelu(b, node, name: str) -> None:
    """LeakyRelu with a constant slope per element, broadcast to the data's shape (`leaky`)."""
    if all(b.is_const(n) for n in node.input):
        return fold(b, node, lambda x, s: np.where(x >= 0, x, s * x))
    slope = constant_weight(b, node.input[1], "PRelu slope")
    _leaky(b, node, name, slope, None)


def _leaky(b, node, name: str, slope: np.ndarray, folded) -> None:
    """y = x above 0 and slope · x below, the slope broadcast to the output's shape."""
    x, out = node.input[0], node.output[0]
    if folded is not None and b.is_const(x):
        return fold(b, node, folded)
    shape = tuple(np.broadcast_shapes(b.shape(x), np.shape(slope)))
    if shape != b.shape(x):
        raise unsupported(f"a slope of shape {list(np.shape(slope))} for data of shape {list(b.shape(x))}")
    full = np.array(np.broadcast_to(slope, shape), dtype=np.float32)
    b.emit(Node("leaky", name, (x,), (out,), LeakyAttrs(slope=full)), {out: shape})


@operator
def Clip(b, node, name: str, *, min=None, max=None) -> None:  # noqa: A002  (ONNX's attribute names)
    """min(max(x, lo), hi): bounds from the attributes (opset < 11) or constant inputs."""
    given = padded(node.input, 3)[1:]
    lo, hi = (_bound(b, n, attribute, end) for n, attribute, end in zip(given, (min, max), (-np.inf, np.inf)))
    if b.is_const(node.input[0]):
        return fold(b, node, lambda x, *_: np.clip(x, lo, hi).astype(x.dtype))
    x, out = node.input[0], node.output[0]
    b.emit(Node("clip", name, (x,), (out,), ClipAttrs(lo=lo, hi=hi)), {out: b.shape(x)})


def _bound(b, tensor: str, attribute: float | None, end: float) -> float:
    """A bound from its input (opset 11 on), else its attribute, else the end of the line."""
    value = b.const(tensor) if tensor else attribute
    return end if value is None else float(np.asarray(value))


@operator
def Erf(b, node, name: str) -> None:
    """The "erf" table (VACT): Q3.12 in, Q0.15 out, saturating beyond ±8 where erf is ±1."""
    x, out = node.input[0], node.output[0]
    if b.is_const(x):
        return fold(b, node, lambda v: float_activation("erf", v).astype(v.dtype))
    b.emit(Node("table", name, (x,), (out,), TableAttrs(spec="erf")), {out: b.shape(x)})


@operator
def Gelu(b, node, name: str, *, approximate="none") -> None:
    """x · Φ(x): the normal CDF by table ("phi", or "phitanh" for approximate="tanh"), then VMUL by x."""
    _times_gate(b, node, name, GELU_GATES[approximate])


@operator
def HardSwish(b, node, name: str) -> None:
    """x · hardsigmoid(x; 1/6, 1/2): the table, then VMUL by x."""
    _times_gate(b, node, name, HARDSWISH_GATE)


def _times_gate(b, node, name: str, gate: str) -> None:
    """x · g(x) for a table g bounded by 1: VACT into Q0.15, then VMUL by x."""
    x, out = node.input[0], node.output[0]
    if b.is_const(x):
        return fold(b, node, lambda v: (v * float_activation(gate, v)).astype(v.dtype))
    factor = f"{name}/{gate.partition('(')[0]}"
    b.emit(Node("table", f"{name}/gate", (x,), (factor,), TableAttrs(spec=gate)), {factor: b.shape(x)})
    b.emit(Node("mul", name, (x, factor), (out,), MulAttrs()), {out: b.shape(x)})


def _power(view: NodeView) -> bool:
    exponent = view.input(1).value
    return exponent is not None and exponent.size == 1 and float(exponent.ravel()[0]) in POWERS


def _exponent(view: NodeView) -> object:
    exponent = view.input(1).value
    return "a computed exponent" if exponent is None else exponent.ravel().tolist()



def _nonzero(view: NodeView) -> bool:
    divisor = view.input(1).value
    return divisor is None or bool(np.all(divisor != 0))


CONSTRAINTS = {
    "Div": (Constraint("a constant B must not be 0 anywhere", lambda v: v.all_const or _nonzero(v)),),
    "Pow": (constant(1, "Y"), Constraint(f"on computed data, Y must be 2 (x · x), 1 or {_VPOW_POWERS} (VPOW)",
                                         lambda v: v.all_const or _power(v), _exponent)),
    "PRelu": (constant(1, "slope"),),
    "Clip": (constants_from(1, ["min", "max"]),),
    "Gelu": (Constraint("approximate must be 'none' or 'tanh'", lambda v: v.attr("approximate", "none") in GELU_GATES,
                        lambda v: repr(v.attr("approximate"))),),
}
declare(CONSTRAINTS)

"""relu and table: the activations. Relu is exact (VRELU) and keeps its input's scale; every
bounded function (sigmoid, tanh, hardsigmoid with its alpha and beta) is a table of the vector
unit (VACT), which reads Q3.12 and writes Q0.15.

An activation is named by a *spec*: "relu", or a table name from isa.numerics ("sigmoid",
"tanh", "hardsigmoid(0.2,0.5)"). The recurrent layers name their cells' activations the same way.

`scaled_table` is an unbounded function (Exp) of data at the data's own scale s_x: its table
("scaled_exp(a,b)") reads each code u as x = u · a with a = s_x · 2^12, and writes f(x) / b
with b = s_y · 2^15 for the output's calibrated scale s_y. One VACT, no rescale before or after;
the 256 segments span the data's calibrated range (docs/numerics.md, "Element-wise math").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from compiler.ir import Node
from compiler.kernel import Where
from compiler.ops.integer import activation
from compiler.ops.registry import OpDef, free_scale, register, same_as_inputs
from compiler.passes.lowering import Lowering
from compiler.passes.weights import GATE_SCALE, UNIT_SCALE
from isa import numerics as nx
from isa.numerics import TABLE_FUNCTIONS, WRITES_INTO, parse_table_name


@dataclass(frozen=True, kw_only=True)
class ReluAttrs:
    pass


@dataclass(frozen=True, kw_only=True)
class TableAttrs:
    spec: str  # an isa.numerics table name


@dataclass(frozen=True, kw_only=True)
class ScaledTableAttrs:
    func: str  # a "scaled_*" function of isa.numerics


@dataclass(frozen=True, kw_only=True)
class QuantScaledTableAttrs(ScaledTableAttrs):
    spec: str  # the table: the function with its input and output scales


def float_activation(spec: str, x: np.ndarray) -> np.ndarray:
    """What an activation spec computes, in float."""
    return activation_function(spec)(x)


def activation_function(spec: str) -> Callable[..., np.ndarray]:
    """The float function of an activation spec, its name parsed once (a recurrent layer applies
    it at every step): f(x), or f(x, out=array) to have the values in that array (a layer's float
    run keeps its buffers; the ufuncs and sigmoid compute in it, any other function is copied in)."""
    if spec == "relu":
        return lambda x, out=None: np.maximum(x, 0.0, out=out)
    func, params = parse_table_name(spec)
    function = TABLE_FUNCTIONS[func]
    if func in WRITES_INTO and not params:  # f(x, out=...) itself
        return function
    return lambda x, out=None: _written(function(x, *params), out)


def _written(values: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if out is None:
        return values
    out[...] = values
    return out


def activation_node(spec: str, name: str, x: str, y: str) -> Node:
    if spec == "relu":
        return Node("relu", name, (x,), (y,), ReluAttrs())
    return Node("table", name, (x,), (y,), TableAttrs(spec=spec))


def lower_relu(ctx: Lowering, node: Node, where: Where) -> None:
    _lower(ctx, node, where, "relu")


def lower_table(ctx: Lowering, node: Node, where: Where) -> None:
    _lower(ctx, node, where, node.attrs.spec)


def _quantize_scaled(node: Node, scales: dict[str, float], policy: object) -> Node:
    a = scales[node.inputs[0]] * 2.0 ** nx.GATE_FRAC
    b = scales[node.outputs[0]] * 2.0 ** nx.UNIT_FRAC
    return node.quantized(QuantScaledTableAttrs, spec=nx.table_name(node.attrs.func, a, b))


def _lower(ctx: Lowering, node: Node, where: Where, spec: str) -> None:
    ctx.activation(spec, where, ctx.graph.size(node.outputs[0]), ctx.place(node.outputs[0]), ctx.places[node.inputs[0]])


register(
    OpDef("relu", "vector", ReluAttrs, lambda node, x: np.maximum(x, 0.0), lambda node, x: nx.relu(x), same_as_inputs,
          lower_relu, pointwise=True),
    OpDef("table", "vector", TableAttrs, lambda node, x: float_activation(node.attrs.spec, x),
          lambda node, x: activation(node.attrs.spec, x), lambda node, scales: (UNIT_SCALE,), lower_table,
          input_scales=lambda node: (GATE_SCALE,), pointwise=True),
    OpDef("scaled_table", "vector", ScaledTableAttrs, lambda node, x: TABLE_FUNCTIONS[node.attrs.func](x),
          lambda node, x: activation(node.attrs.spec, x), free_scale, lower_table, QuantScaledTableAttrs,
          _quantize_scaled, pointwise=True),
)

"""relu and table: the activations. Relu is exact (VRELU) and keeps its input's scale; every
bounded function (sigmoid, tanh, hardsigmoid with its alpha and beta) is a table of the vector
unit (VACT), which reads Q3.12 and writes Q0.15.

An activation is named by a *spec*: "relu", or a table name from isa.numerics ("sigmoid",
"tanh", "hardsigmoid(0.2,0.5)"). The recurrent layers name their cells' activations the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.ir import Node
from compiler.kernel import Where
from compiler.ops.integer import activation
from compiler.ops.registry import OpDef, register, same_as_inputs
from compiler.passes.lowering import Lowering
from compiler.passes.weights import GATE_SCALE, UNIT_SCALE
from isa import numerics as nx
from isa.numerics import TABLE_FUNCTIONS, parse_table_name


@dataclass(frozen=True, kw_only=True)
class ReluAttrs:
    pass


@dataclass(frozen=True, kw_only=True)
class TableAttrs:
    spec: str  # an isa.numerics table name


def float_activation(spec: str, x: np.ndarray) -> np.ndarray:
    """What an activation spec computes, in float."""
    if spec == "relu":
        return np.maximum(x, 0.0)
    func, params = parse_table_name(spec)
    return TABLE_FUNCTIONS[func](x, *params)


def activation_node(spec: str, name: str, x: str, y: str) -> Node:
    if spec == "relu":
        return Node("relu", name, (x,), (y,), ReluAttrs())
    return Node("table", name, (x,), (y,), TableAttrs(spec=spec))


def lower_relu(ctx: Lowering, node: Node, where: Where) -> None:
    _lower(ctx, node, where, "relu")


def lower_table(ctx: Lowering, node: Node, where: Where) -> None:
    _lower(ctx, node, where, node.attrs.spec)


def _lower(ctx: Lowering, node: Node, where: Where, spec: str) -> None:
    ctx.activation(spec, where, ctx.graph.size(node.outputs[0]), ctx.place(node.outputs[0]), ctx.places[node.inputs[0]])


register(
    OpDef("relu", "vector", ReluAttrs, lambda node, x: np.maximum(x, 0.0), lambda node, x: nx.relu(x), same_as_inputs,
          lower_relu),
    OpDef("table", "vector", TableAttrs, lambda node, x: float_activation(node.attrs.spec, x),
          lambda node, x: activation(node.attrs.spec, x), lambda node, scales: (UNIT_SCALE,), lower_table,
          input_scales=lambda node: (GATE_SCALE,)),
)

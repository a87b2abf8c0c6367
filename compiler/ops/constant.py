"""constant: a computed-looking value that is known at compile time (a non-zero initial state).
Quantised at its calibrated scale, kept in weight memory and copied to activation memory (LDC)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.ir import Node
from compiler.kernel import Where
from compiler.ops.registry import OpDef, free_scale, register
from compiler.passes.lowering import Lowering
from isa.numerics import quantize


@dataclass(frozen=True, kw_only=True)
class ConstantAttrs:
    value: np.ndarray  # float32


@dataclass(frozen=True, kw_only=True)
class QuantConstantAttrs(ConstantAttrs):
    q: np.ndarray  # int64 at the output's scale


def quantize_constant(node: Node, scales: dict[str, float], policy: object) -> Node:
    q = quantize(node.attrs.value, scales[node.outputs[0]])
    return node.quantized(QuantConstantAttrs, q=q)


def lower_constant(ctx: Lowering, node: Node, where: Where) -> None:
    ctx.places[node.outputs[0]] = ctx.constant(f"t:{node.outputs[0]}", node.attrs.q, where)


register(OpDef("constant", "constant", ConstantAttrs, lambda node: node.attrs.value[None],
               lambda node: node.attrs.q[None], free_scale, lower_constant, QuantConstantAttrs, quantize_constant))

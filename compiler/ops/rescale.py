"""rescale: y = x at another scale, made by quantisation wherever a consumer needs its input at
a scale the producer does not have. The multiplier and shift are isa.numerics'
quantize_multiplier of the ratio of the scales; VSCALE applies them."""

from __future__ import annotations

from dataclasses import dataclass

from compiler.ir import Node
from compiler.kernel import Where
from compiler.ops.registry import OpDef, register
from compiler.passes.lowering import Lowering
from isa import numerics as nx


@dataclass(frozen=True, kw_only=True)
class RescaleAttrs:
    scale: float  # the output's
    mult: int
    shift: int


def lower_rescale(ctx: Lowering, node: Node, where: Where) -> None:
    ctx.emit_elementwise("VSCALE", Where(where.node, where.layer, what="rescale"), ctx.graph.size(node.outputs[0]),
                         dst=ctx.place(node.outputs[0]), src=ctx.places[node.inputs[0]],
                         mult=node.attrs.mult, shift=node.attrs.shift)


register(OpDef("rescale", "vector", RescaleAttrs, lambda node, x: x,
               lambda node, x: nx.multiply(x, node.attrs.mult, node.attrs.shift),
               lambda node, scales: (node.attrs.scale,), lower_rescale))

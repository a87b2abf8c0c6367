"""Lowering of the element-wise ops with a constant operand (quantize_elementwise has the maths).

    add_const  y = ±x + c:  [VSCALE x to y's scale | VMUL by a vector of -mult, for c - x]
                            LDC c;  VADD y = x' + c
    mul_const  y = x · c:   LDC c;  VMUL y = x · c >> shift
    add, sub   y = x ± z:   VADD / VSUB (quantize gave both operands the output's scale)
    mul        y = x · z:   VMUL y = x · z >> shift

The constant was broadcast to the data's full shape by the frontend, so it costs one activation
element per output element; weight memory keeps only the run it repeats, 2 bytes an element,
which LDC copies as often as it repeats (Lowering.constant, docs/numerics.md).
"""

from __future__ import annotations

import numpy as np

from compiler.ir import Node
from compiler.kernel import Ref, Where
from compiler.passes.lowering import Lowering
from isa.numerics import IDENTITY


def lower_add_const(ctx: Lowering, node: Node, where: Where) -> None:
    x = _scaled_input(ctx, node, where)
    c = _load(ctx, node, "addend", node.attrs["q"], where)
    out = node.outputs[0]
    ctx.emit_elementwise("VADD", where, ctx.graph.size(out), dst=ctx.place(out), a=x, b=c)


def lower_mul_const(ctx: Lowering, node: Node, where: Where) -> None:
    c = _load(ctx, node, "factor", node.attrs["q"], where)
    out = node.outputs[0]
    ctx.emit_elementwise("VMUL", where, ctx.graph.size(out), dst=ctx.place(out), a=ctx.places[node.inputs[0]],
                         b=c, shift=node.attrs["shift"])


def lower_pair(ctx: Lowering, node: Node, where: Where) -> None:
    """Two computed operands of the output's shape."""
    out = node.outputs[0]
    x, z = (ctx.places[n] for n in node.inputs)
    mnemonic, extra = PAIR_OPS[node.op], {"shift": node.attrs["shift"]} if node.op == "mul" else {}
    ctx.emit_elementwise(mnemonic, where, ctx.graph.size(out), dst=ctx.place(out), a=x, b=z, **extra)


PAIR_OPS = {"add": "VADD", "sub": "VSUB", "mul": "VMUL"}


def _scaled_input(ctx: Lowering, node: Node, where: Where) -> Ref:
    """The data at the output's scale (and negated for c - x): itself, or VSCALE/VMUL into a temporary."""
    mult, shift = node.attrs["mult"], node.attrs["shift"]
    x, n = ctx.places[node.inputs[0]], ctx.graph.size(node.inputs[0])
    if (mult, shift) == IDENTITY:  # the data is already at the output's scale
        return x
    scaled = ctx.buffer(f"{node.source}/scaled", "amem", n)
    step = Where(where.node, where.layer, what="negate" if mult < 0 else "rescale")
    if mult > 0:
        ctx.emit_elementwise("VSCALE", step, n, dst=scaled, src=x, mult=mult, shift=shift)
    else:
        factor = _load(ctx, node, "negation", np.full(n, mult), where)
        ctx.emit_elementwise("VMUL", step, n, dst=scaled, a=x, b=factor, shift=shift)
    return scaled


def _load(ctx: Lowering, node: Node, what: str, values: np.ndarray, where: Where) -> Ref:
    """A constant vector in weight memory, copied to activation memory by LDC."""
    return ctx.constant(f"{node.source}/{what}", values, Where(where.node, where.layer, what=what))

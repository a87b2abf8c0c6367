"""Lowering of softmax and logsoftmax (quantize_softmax has the scales, docs/numerics.md the maths).

Element-wise steps run over the whole tensor in one instruction; the steps that reduce a row or
use a row's scalar run one instruction per row, phase by phase, so that the vector unit's latency
between a row's reduction and its use is covered by the other rows' work:

    [VSCALE  x -> working scale]       whole tensor, skipped when the identity
    VRMAX    m[r] = max(x_r)           per row
    VSUBS    d_r = x_r - m[r]          per row
    [VSCALE  d -> Q3.12]               whole tensor
    VACT     e = exp(d)                whole tensor, the "exp" table
    VRSUM    acc[r] = sum(e_r)         per row, into accumulator memory
  softmax:
    VNORM    y_r = e_r / acc[r]        per row, Q0.15
  logsoftmax:
    VLOG     l[r] = ln(acc[r] / 2^15)  per row, the "lnmant" table, Q4.11
    [VSCALE  d -> Q4.11]               whole tensor
    VSUBS    y_r = d_r - l[r]          per row
"""

from __future__ import annotations

from compiler.ir import Node
from compiler.kernel import Ref, Where
from compiler.passes.lowering import Lowering
from isa.numerics import IDENTITY, LOG_TABLE


def lower_softmax(ctx: Lowering, node: Node, where: Where) -> None:
    n, row = ctx.graph.size(node.inputs[0]), node.attrs["row"]
    rows = n // row
    x = _rescaled(ctx, node, "pre", ctx.places[node.inputs[0]], n, where)
    peak, diff = _buffer(ctx, node, "max", rows), _buffer(ctx, node, "diff", n)
    _per_row(ctx, "VRMAX", where, rows, n=row, dst=(peak, 1), src=(x, row))
    _per_row(ctx, "VSUBS", where, rows, n=row, dst=(diff, row), a=(x, row), s=(peak, 1))
    e = _buffer(ctx, node, "exp", n)
    ctx.activation("exp", Where(where.node, where.layer, what="exp"), n, e,
                   _rescaled(ctx, node, "to_exp", diff, n, where))
    sums = ctx.buffer(f"{node.source}/sum", "acc", rows)
    _per_row(ctx, "VRSUM", where, rows, n=row, dst=(sums, 1), src=(e, row))
    y = ctx.place(node.outputs[0])
    if node.op == "softmax":
        _per_row(ctx, "VNORM", where, rows, n=row, dst=(y, row), src=(e, row), s=(sums, 1))
        return
    logs = _buffer(ctx, node, "log", rows)
    _per_row(ctx, "VLOG", where, rows, dst=(logs, 1), src=(sums, 1), table=ctx.table(LOG_TABLE))
    out = _rescaled(ctx, node, "to_out", diff, n, where)
    _per_row(ctx, "VSUBS", where, rows, n=row, dst=(y, row), a=(out, row), s=(logs, 1))


def _buffer(ctx: Lowering, node: Node, what: str, size: int) -> Ref:
    return ctx.buffer(f"{node.source}/{what}", "amem", size)


def _rescaled(ctx: Lowering, node: Node, key: str, src: Ref, n: int, where: Where) -> Ref:
    """src brought to another scale by the node's multiplier `key`: itself if that is the identity."""
    mult, shift = node.attrs[key]
    if (mult, shift) == IDENTITY:
        return src
    dst = _buffer(ctx, node, key, n)
    ctx.emit_elementwise("VSCALE", Where(where.node, where.layer, what=key), n, dst=dst, src=src, mult=mult,
                         shift=shift)
    return dst


def _per_row(ctx: Lowering, mnemonic: str, where: Where, rows: int, **operands: tuple[Ref, int] | int) -> None:
    """One instruction per row; an operand (ref, stride) moves on by `stride` each row, an int stays."""
    step = Where(where.node, where.layer, what=mnemonic.lower())
    for r in range(rows):
        ctx.emit(mnemonic, step, **{k: v[0] + r * v[1] if isinstance(v, tuple) else v for k, v in operands.items()})

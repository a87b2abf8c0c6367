"""softmax and logsoftmax over consecutive rows of `row` elements, on the vector unit.

Scales. The outputs have fixed formats: softmax Q0.15 (VNORM's), logsoftmax Q4.11 (VLOG's). The
input keeps its calibrated scale s_x -- a Q3.12 input would saturate logits beyond +-8 before
the max is taken. The difference x - max runs at a working scale w = max(s_x, floor), where the
floor is the finest format a path needs (Q3.12 for exp's input; Q4.11 for logsoftmax's output).
Then the difference, which is <= 0, saturates only below -32768 w <= -8 (or -16), where exp is
below 3.4e-4 (or the output saturates anyway). Three multipliers (isa.numerics.quantize_multiplier):

    pre     x -> w          (identity unless s_x is finer than the floor)
    to_exp  w -> Q3.12      the exp table's input
    to_out  w -> Q4.11      logsoftmax only: x - max at the output's format

Lowering. Element-wise steps run over the whole tensor in one instruction; the steps that reduce
a row or use a row's scalar run one instruction per row, phase by phase, so that the vector
unit's latency between a row's reduction and its use is covered by the other rows' work:

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

The golden reference (`softmax`, `logsoftmax` below) is written from the formats with
isa.numerics' primitives, not from these instructions; docs/numerics.md gives the maths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.ir import Node
from compiler.kernel import Ref, Where
from compiler.ops.integer import table
from compiler.ops.registry import OpDef, one_row, register
from compiler.passes.lowering import Lowering
from isa import numerics as nx
from isa.numerics import GATE_FRAC, IDENTITY, LOG_FRAC, LOG_TABLE, UNIT_FRAC, quantize_multiplier

EXP_SCALE = 2.0 ** -GATE_FRAC
LOG_SCALE = 2.0 ** -LOG_FRAC
OUTPUT_SCALE = {"softmax": 2.0 ** -UNIT_FRAC, "logsoftmax": LOG_SCALE}
FLOOR_SCALE = {"softmax": EXP_SCALE, "logsoftmax": LOG_SCALE}


@dataclass(frozen=True, kw_only=True)
class SoftmaxAttrs:
    row: int  # the length of each normalised run


@dataclass(frozen=True, kw_only=True)
class QuantSoftmaxAttrs(SoftmaxAttrs):
    pre: tuple[int, int]  # (multiplier, shift): x to the working scale
    to_exp: tuple[int, int]  # the working scale to Q3.12
    to_out: tuple[int, int] | None = None  # logsoftmax: the working scale to Q4.11


def float_softmax(x: np.ndarray, row: int, log: bool = False) -> np.ndarray:
    """Softmax (or its log) over consecutive runs of `row` elements, in float64."""
    rows = np.asarray(x, np.float64).reshape(-1, row)
    shifted = rows - rows.max(axis=1, keepdims=True)
    logs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return (logs if log else np.exp(logs)).reshape(np.shape(x))


def quantize_softmax(node: Node, scales: dict[str, float], policy: object) -> Node:
    x = scales[node.inputs[0]]
    work = max(x, FLOOR_SCALE[node.op])
    to_out = quantize_multiplier(work / LOG_SCALE) if node.op == "logsoftmax" else None
    return node.quantized(QuantSoftmaxAttrs, pre=quantize_multiplier(x / work),
                          to_exp=quantize_multiplier(work / EXP_SCALE), to_out=to_out)


def _rows(node: Node, x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.int64).reshape(-1, node.attrs.row)


def _shifted(node: Node, x: np.ndarray) -> np.ndarray:
    """x - max(x) per row, at the working scale (after the `pre` rescale)."""
    x = nx.multiply(_rows(node, x), *node.attrs.pre)
    return nx.subtract(x, nx.reduce_max(x))


def _exp(node: Node, shifted: np.ndarray) -> np.ndarray:
    """exp(x - max) in Q0.15, from the difference brought to Q3.12."""
    return nx.table_lookup(table("exp"), nx.multiply(shifted, *node.attrs.to_exp))


def softmax(node: Node, x: np.ndarray) -> np.ndarray:
    e = _exp(node, _shifted(node, x))
    return nx.divide(e, nx.reduce_sum(e)).reshape(x.shape)


def logsoftmax(node: Node, x: np.ndarray) -> np.ndarray:
    shifted = _shifted(node, x)
    log_sum = nx.log_sum(table(nx.LOG_TABLE), nx.reduce_sum(_exp(node, shifted)))
    return nx.subtract(nx.multiply(shifted, *node.attrs.to_out), log_sum).reshape(x.shape)


def lower_softmax(ctx: Lowering, node: Node, where: Where) -> None:
    n, row = ctx.graph.size(node.inputs[0]), node.attrs.row
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
    mult, shift = getattr(node.attrs, key)
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


def _float(node: Node, x: np.ndarray) -> np.ndarray:
    return float_softmax(x, node.attrs.row, log=node.op == "logsoftmax")


register(*(OpDef(op, "vector", SoftmaxAttrs, _float, reference, lambda node, scales: (OUTPUT_SCALE[node.op],),
                 lower_softmax, QuantSoftmaxAttrs, quantize_softmax, rows=one_row)
           for op, reference in (("softmax", softmax), ("logsoftmax", logsoftmax))))

"""normalize: z = (x - mean) / sqrt(var + epsilon) over consecutive rows of `row` elements, on the
vector unit (LayerNormalization over the block from its axis on; InstanceNormalization over each
channel's spatial block). The frontend follows it with mul_const and add_const for the scale and
bias, which quantise themselves.

Scales. x keeps its scale s_x. The mean is taken at s_x (rounded: half an LSB), the difference
d = x - mean too. VRSS sums the row's squares exactly and adds the integer E = epsilon · row / s_x²
(epsilon in units of d², times the row: var = Σd² · s_x² / row), and takes the rounded root
R = round(sqrt(Σd² + E)). VNORM's d · 2^15 / R is then the normalised value at the fixed scale
s_z = sqrt(row) · 2^-15: a row can hold no |z| above sqrt(row - 1), so nothing saturates for rows
up to 2^14 elements (ROW_LIMIT). The only roundings are the mean's, the root's and VNORM's.

Lowering, rows in chunks of at most CHUNK accumulator entries:

    VRSUM   acc[r] = sum(x_r)                  per row
    VRQ     mean[r] = acc[r] / row             per chunk (reduce.py's sums)
    VSUBS   d_r = x_r - mean[r]                per row
    VRSS    acc[r] = round(sqrt(sum(d_r²) + E))    per row (isa/table.py)
    VNORM   z_r = d_r · 2^15 / acc[r]          per row
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compiler.ir import Node
from compiler.kernel import Where
from compiler.ops.reduce import CHUNK, sum_runs
from compiler.ops.registry import OpDef, one_row, register
from compiler.passes.lowering import Lowering
from isa import numerics as nx
from isa.numerics import UNIT_FRAC, quantize_multiplier
from isa.table import BY_MNEMONIC

EPSILON_LIMIT = BY_MNEMONIC["VRSS"].field("add").high
ROW_LIMIT = 1 << 14  # sqrt(row - 1) < 32767 · 2^-15 · sqrt(row): z never saturates


@dataclass(frozen=True, kw_only=True)
class NormalizeAttrs:
    row: int  # the length of each normalised run
    epsilon: float


@dataclass(frozen=True, kw_only=True)
class QuantNormalizeAttrs(NormalizeAttrs):
    mean: tuple[int, int]  # (multiplier, shift): a row's sum at s_x to its mean at s_x
    add: int  # epsilon · row in units of d² (VRSS's `add`)


def float_normalize(node: Node, x: np.ndarray) -> np.ndarray:
    rows = np.asarray(x, np.float64).reshape(-1, node.attrs.row)
    d = rows - rows.mean(axis=1, keepdims=True)
    return (d / np.sqrt((d * d).mean(axis=1, keepdims=True) + node.attrs.epsilon)).reshape(np.shape(x))


def output_scale(node: Node, scales: object = None) -> tuple[float, ...]:
    return (math.sqrt(node.attrs.row) * 2.0 ** -UNIT_FRAC,)


def quantize_normalize(node: Node, scales: dict[str, float], policy: object) -> Node:
    s_x, row = scales[node.inputs[0]], node.attrs.row
    add = min(round(node.attrs.epsilon * row / (s_x * s_x)), EPSILON_LIMIT)
    return node.quantized(QuantNormalizeAttrs, mean=quantize_multiplier(1.0 / row), add=add)


def reference_normalize(node: Node, x: np.ndarray) -> np.ndarray:
    rows = np.asarray(x, np.int64).reshape(-1, node.attrs.row)
    d = nx.subtract(rows, nx.requantize(nx.reduce_sum(rows), *node.attrs.mean))
    return nx.divide(d, nx.root_sum_squares(d, node.attrs.add)).reshape(x.shape)


def lower_normalize(ctx: Lowering, node: Node, where: Where) -> None:
    row, n = node.attrs.row, ctx.graph.size(node.inputs[0])
    rows = n // row
    x, z = ctx.places[node.inputs[0]], ctx.place(node.outputs[0])
    mean, d = (ctx.buffer(f"{node.source}/{what}", "amem", size) for what, size in (("mean", rows), ("diff", n)))
    starts = np.arange(rows, dtype=np.int64) * row
    sum_runs(ctx, node, where, x, starts, np.full(rows, row, np.int64), np.full((rows, 2), node.attrs.mean), mean)
    step = {m: Where(where.node, where.layer, what=m.lower()) for m in ("VSUBS", "VRSS", "VNORM")}
    for r in range(rows):
        ctx.emit("VSUBS", step["VSUBS"], dst=d + r * row, a=x + r * row, s=mean + r, n=row)
    roots = ctx.buffer(f"{node.source}/roots", "acc", min(CHUNK, rows))
    for first in range(0, rows, CHUNK):
        chunk = range(first, min(first + CHUNK, rows))
        for r in chunk:
            ctx.emit("VRSS", step["VRSS"], dst=roots + (r - first), src=d + r * row, n=row, add=node.attrs.add)
        for r in chunk:
            ctx.emit("VNORM", step["VNORM"], dst=z + r * row, src=d + r * row, s=roots + (r - first), n=row)


register(OpDef("normalize", "vector", NormalizeAttrs, float_normalize, reference_normalize, output_scale,
               lower_normalize, QuantNormalizeAttrs, quantize_normalize, rows=one_row))

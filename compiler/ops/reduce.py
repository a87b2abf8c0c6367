"""reduce: each run of consecutive input elements becomes one output element, its sum divided by
a constant (ReduceSum, ReduceMean, GlobalAveragePool, AveragePool) or its maximum (MaxPool).

The runs lie end to end over the (flattened) input and may differ in length: a pooling window
clipped at the edge of its input is a shorter run, which is how padding is handled without a
padded copy (a max ignores padding; an average divides by the count ONNX's count_include_pad
asks for, whatever the run's length). The frontend lays the windows out as runs with a
`gather`, and reduced axes that are not the last ones too.

Scales. `max` keeps its input's scale and is exact. `sum` adds a run exactly in an accumulator
(VRSUM), then one requantisation per output element brings sum · s_x / divisor to the output's
scale s_y: multiplier s_x / (divisor · s_y), so the only rounding is the final one (half an
output step). s_y is the calibrated one, but never so fine that the multiplier leaves the
15-bit range: s_y >= s_x / (divisor · 2^14).

Lowering, outputs in chunks of at most CHUNK accumulator entries:

    max:  VRMAX   y[r] = max(run r)                       one per run
    sum:  VRSUM   acc[r] = sum(run r)                     one per run
          VRQ     y[r] = requantize(acc[r], mult[r], shift[r])   one per chunk
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.ir import Node
from compiler.kernel import Ref, Where, pack_ints
from compiler.ops.registry import OpDef, Scales, register, same_as_inputs
from compiler.passes.lowering import Lowering
from isa import numerics as nx
from isa.numerics import MULT_BITS, quantize_multiplier
from isa.table import stride

CHUNK = 256  # outputs per accumulator buffer: a small share of accumulator memory
REDUCE_UFUNCS = {"sum": np.add, "max": np.maximum}


@dataclass(frozen=True, kw_only=True)
class ReduceAttrs:
    kind: str  # "sum" or "max"
    runs: np.ndarray  # int64, the length of each run, in input order: one output element each
    divisors: np.ndarray | None = None  # float64 per run, sum only: what the run's sum is divided by


@dataclass(frozen=True, kw_only=True)
class QuantReduceAttrs(ReduceAttrs):
    mult: np.ndarray | None = None  # sum only: int64 per run, sum at s_x to the output's scale
    shift: np.ndarray | None = None


def _reduced(node: Node, x: np.ndarray) -> np.ndarray:
    """Each run's sum (exact in int64) or maximum, per sample: (samples, runs)."""
    flat = np.asarray(x).reshape(x.shape[0], -1)
    starts = np.concatenate([[0], np.cumsum(node.attrs.runs)[:-1]])
    return REDUCE_UFUNCS[node.attrs.kind].reduceat(flat, starts, axis=1)


def float_reduce(node: Node, x: np.ndarray) -> np.ndarray:
    out = _reduced(node, np.asarray(x, np.float64))
    return out / node.attrs.divisors if node.attrs.kind == "sum" else out


def reference_reduce(node: Node, x: np.ndarray) -> np.ndarray:
    out = _reduced(node, np.asarray(x, np.int64))
    return nx.requantize(out, node.attrs.mult, node.attrs.shift) if node.attrs.kind == "sum" else out


def reduce_scales(node: Node, scales: Scales) -> tuple[float, ...]:
    if node.attrs.kind == "max":
        return same_as_inputs(node, scales)
    floor = scales.inputs[0] / (float(np.max(node.attrs.divisors)) * (1 << (MULT_BITS - 1)))
    return (max(scales.free(), floor),)


def quantize_reduce(node: Node, scales: dict[str, float], policy: object) -> Node:
    if node.attrs.kind == "max":
        return node.quantized(QuantReduceAttrs)
    ratio = scales[node.inputs[0]] / scales[node.outputs[0]]
    pairs = np.array([quantize_multiplier(ratio / d) for d in node.attrs.divisors], np.int64).reshape(-1, 2)
    return node.quantized(QuantReduceAttrs, mult=pairs[:, 0], shift=pairs[:, 1])


def lower_reduce(ctx: Lowering, node: Node, where: Where) -> None:
    x, y, runs = ctx.places[node.inputs[0]], ctx.place(node.outputs[0]), node.attrs.runs
    starts = np.concatenate([[0], np.cumsum(runs)[:-1]])
    if node.attrs.kind == "max":
        step = Where(where.node, where.layer, what="vrmax")
        for r, (start, n) in enumerate(zip(starts.tolist(), runs.tolist())):
            ctx.emit("VRMAX", step, dst=y + r, src=x + start, n=n)
        return
    sum_runs(ctx, node, where, x, starts, runs, np.stack([node.attrs.mult, node.attrs.shift], axis=1), y)


def sum_runs(ctx: Lowering, node: Node, where: Where, x: Ref, starts: np.ndarray, lengths: np.ndarray,
             requant: np.ndarray, dst: Ref) -> None:
    """dst[r] = requantize(sum of the run of lengths[r] at x + starts[r], *requant[r]): VRSUM per run
    into a chunk of accumulator entries, one VRQ per chunk."""
    q = ctx.data(f"{node.source}/requant", pack_ints(requant.ravel(), "<i2"), "biases")
    acc = ctx.buffer(f"{node.source}/sum", "acc", min(CHUNK, len(lengths)))
    for first in range(0, len(lengths), CHUNK):
        chunk = range(first, min(first + CHUNK, len(lengths)))
        for r in chunk:
            ctx.emit("VRSUM", Where(where.node, where.layer, what="vrsum"), dst=acc + (r - first),
                     src=x + int(starts[r]), n=int(lengths[r]))
        ctx.emit("VRQ", Where(where.node, where.layer, what="vrq"), dst=dst + first, src=acc, n=len(chunk),
                 q=q + stride("VRQ", "q") * first)


def reduce_rows(node: Node) -> frozenset[int]:
    """The lengths of the runs it reduces, one output element each."""
    return frozenset(np.unique(node.attrs.runs).tolist())


register(OpDef("reduce", "vector", ReduceAttrs, float_reduce, reference_reduce, reduce_scales, lower_reduce,
               QuantReduceAttrs, quantize_reduce, rows=reduce_rows))

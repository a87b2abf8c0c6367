"""leaky and clip: the piecewise-linear element-wise ops, exact but for one rounding.

`leaky` (y = x for x >= 0, slope · x below) is LeakyRelu, PRelu with a constant slope, and Abs
(slope -1). The chip has no element-wise max, so it splits x into its parts, each exact:

    VRELU  r = max(x, 0)
    VSUB   n = x - r                  (= min(x, 0))
    LDC    q                          (the slopes, Q1.14 of slope · s_x / s_y)
    VMUL   p = n · q >> 14
    [VSCALE r to y's scale]           (only when some |slope| > 1)
    VADD   y = r + p

The output's scale is s_y = s_x · max(1, max|slope|), the smallest at which y cannot saturate;
with |slope| <= 1 it is x's own, and the positive part is copied exactly. The slopes scaled by
s_x / s_y lie in [-1, 1], so Q1.14 holds them: the negative part errs by at most half an LSB of
y plus |n| · 2^-15 of slope rounding (docs/numerics.md, "Piecewise-linear operators").

`clip` (Clip) is VCLAMP with its bounds rounded to x's scale, which it keeps: exact on the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.ir import Node
from compiler.kernel import Ref, Where
from compiler.ops.registry import OpDef, Parameters, Scales, register, same_as_inputs
from compiler.passes.lowering import Lowering
from isa import numerics as nx
from isa.numerics import ACT_MAX, ACT_MIN, IDENTITY, quantize, quantize_multiplier

SLOPE_SHIFT = 14  # the slopes' fraction bits: Q1.14 holds every slope in [-1, 1] exactly enough


@dataclass(frozen=True, kw_only=True)
class LeakyAttrs:
    slope: np.ndarray  # float32, of the output's shape


@dataclass(frozen=True, kw_only=True)
class QuantLeakyAttrs(LeakyAttrs):
    q: np.ndarray  # slope · s_x / s_y in Q1.14
    mult: int  # the positive part to y's scale
    shift: int


@dataclass(frozen=True, kw_only=True)
class ClipAttrs:
    lo: float  # -inf when Clip has no lower bound
    hi: float


@dataclass(frozen=True, kw_only=True)
class QuantClipAttrs(ClipAttrs):
    qlo: int
    qhi: int


def _largest_slope(attrs: LeakyAttrs) -> float:
    return max(1.0, float(np.max(np.abs(attrs.slope)))) if attrs.slope.size else 1.0


def _leaky_scale(node: Node, scales: Scales) -> tuple[float, ...]:
    return (scales.inputs[0] * _largest_slope(node.attrs),)


def _quantize_leaky(node: Node, scales: dict[str, float], policy: object) -> Node:
    ratio = scales[node.inputs[0]] / scales[node.outputs[0]]
    mult, shift = quantize_multiplier(ratio)
    q = quantize(node.attrs.slope * ratio, 2.0 ** -SLOPE_SHIFT)
    return node.quantized(QuantLeakyAttrs, q=q, mult=mult, shift=shift)


def leaky_reference(node: Node, x: np.ndarray) -> np.ndarray:
    """The integer semantics, one primitive per instruction of the lowering."""
    a = node.attrs
    r = nx.relu(x)
    negative = nx.multiply(nx.subtract(x, r), a.q, SLOPE_SHIFT)
    return nx.add(nx.multiply(r, a.mult, a.shift), negative)


def lower_leaky(ctx: Lowering, node: Node, where: Where) -> None:
    a, out = node.attrs, node.outputs[0]
    x, n = ctx.places[node.inputs[0]], ctx.graph.size(out)
    positive = _temporary(ctx, node, "positive", n)
    negative = _temporary(ctx, node, "negative", n)
    ctx.emit_elementwise("VRELU", where, n, dst=positive, src=x)
    ctx.emit_elementwise("VSUB", where, n, dst=negative, a=x, b=positive)
    slope = ctx.constant(f"{node.source}/slope", a.q, Where(where.node, where.layer, what="slope"))
    ctx.emit_elementwise("VMUL", where, n, dst=negative, a=negative, b=slope, shift=SLOPE_SHIFT)
    if (a.mult, a.shift) != IDENTITY:
        ctx.emit_elementwise("VSCALE", where, n, dst=positive, src=positive, mult=a.mult, shift=a.shift)
    ctx.emit_elementwise("VADD", where, n, dst=ctx.place(out), a=positive, b=negative)


def _temporary(ctx: Lowering, node: Node, what: str, n: int) -> Ref:
    return ctx.buffer(f"{node.source}/{what}", "amem", n)


def _quantize_clip(node: Node, scales: dict[str, float], policy: object) -> Node:
    scale = scales[node.inputs[0]]
    return node.quantized(QuantClipAttrs, qlo=_bound(node.attrs.lo, scale, ACT_MIN),
                          qhi=_bound(node.attrs.hi, scale, ACT_MAX))


def _bound(value: float, scale: float, unbounded: int) -> int:
    """A bound on the activation grid; an infinite one is the grid's end."""
    return unbounded if np.isinf(value) else int(quantize(np.float64(value), scale))


def lower_clip(ctx: Lowering, node: Node, where: Where) -> None:
    out = node.outputs[0]
    ctx.emit_elementwise("VCLAMP", where, ctx.graph.size(out), dst=ctx.place(out), src=ctx.places[node.inputs[0]],
                         lo=node.attrs.qlo, hi=node.attrs.qhi)


register(
    OpDef("leaky", "vector", LeakyAttrs, lambda node, x: np.where(x >= 0, x, node.attrs.slope * x),
          leaky_reference, _leaky_scale, lower_leaky, QuantLeakyAttrs, _quantize_leaky,
          parameters=lambda attrs: Parameters({"slope": attrs.slope})),
    OpDef("clip", "vector", ClipAttrs, lambda node, x: np.clip(x, node.attrs.lo, node.attrs.hi),
          lambda node, x: nx.clamp(x, node.attrs.qlo, node.attrs.qhi), same_as_inputs, lower_clip,
          QuantClipAttrs, _quantize_clip, pointwise=True),
)

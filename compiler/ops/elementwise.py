"""The element-wise ops: with a constant operand (add_const, mul_const) or two computed ones
(add, sub, mul). Exporters write unrolled recurrences and normalisations with them.

Scales. `add_const` (y = ±x + c): VADD needs both operands at the output's scale. That scale is
the calibrated one, but never finer than the data's own or than the constant needs (max|c| /
32767): then neither operand saturates before the sum, even where x and c nearly cancel. The
data is brought to it by a multiplier `mult` × 2^-`shift` -- negative for c - x, which VMUL
applies (VSCALE's multiplier is a magnitude) -- and the constant is quantised at it.

`mul_const` (y = x · c): the constant gets its own scale s_c = max|c| / 32767 (its full 16
bits: it is known exactly, so needs no headroom). VMUL's product has scale s_x · s_c; the
smallest `shift` that brings it to at least the calibrated scale makes it fit, and the output's
scale is then exactly s_x · s_c · 2^shift. `mul` (y = x · z, both computed) is the same with
z's scale for s_c. `add` and `sub` bring both operands to one common scale, the coarsest of
theirs and of the sum's calibrated range.

Lowering:

    add_const  y = ±x + c:  [VSCALE x to y's scale | VMUL by a vector of -mult, for c - x]
                            LDC c;  VADD y = x' + c
    mul_const  y = x · c:   LDC c;  VMUL y = x · c >> shift
    add, sub   y = x ± z:   VADD / VSUB
    mul        y = x · z:   VMUL y = x · z >> shift

The constant was broadcast to the data's full shape by the frontend, so it costs one activation
element per output element; weight memory keeps only the run it repeats, 2 bytes an element,
which LDC copies as often as it repeats (Lowering.constant, docs/numerics.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compiler.ir import Node
from compiler.kernel import Ref, Where
from compiler.ops.registry import OpDef, Parameters, Scales, register, same_as_inputs
from compiler.passes.lowering import Lowering
from isa import numerics as nx
from isa.numerics import ACT_MAX, IDENTITY, MAX_SHIFT, quantize, quantize_multiplier


@dataclass(frozen=True, kw_only=True)
class AddConstAttrs:
    value: np.ndarray  # float32, of the output's shape
    negate: bool  # c - x rather than x + c


@dataclass(frozen=True, kw_only=True)
class QuantAddConstAttrs(AddConstAttrs):
    q: np.ndarray  # the constant at the output's scale
    mult: int  # x to the output's scale (negative: negated)
    shift: int


@dataclass(frozen=True, kw_only=True)
class MulConstAttrs:
    value: np.ndarray  # float32, of the output's shape


@dataclass(frozen=True, kw_only=True)
class QuantMulConstAttrs(MulConstAttrs):
    q: np.ndarray  # the constant at its own scale
    shift: int


@dataclass(frozen=True, kw_only=True)
class PairAttrs:
    """add and sub of two computed tensors: nothing to record."""


@dataclass(frozen=True, kw_only=True)
class MulAttrs:
    pass


@dataclass(frozen=True, kw_only=True)
class QuantMulAttrs(MulAttrs):
    shift: int


def _constant_scale(value: np.ndarray) -> float:
    """The finest scale at which the constant's largest magnitude still fits in 16 bits."""
    largest = float(np.max(np.abs(value))) if value.size else 0.0
    return (largest or 1.0) / ACT_MAX


def _factor_scale(node: Node, inputs: tuple[float, ...]) -> float:
    """The scale of the second factor: the constant's own, or the computed operand's."""
    return _constant_scale(node.attrs.value) if node.op == "mul_const" else inputs[1]


def _add_scale(node: Node, scales: Scales) -> tuple[float, ...]:
    return (max(scales.free(), scales.inputs[0], _constant_scale(node.attrs.value)),)


def _mul_scale(node: Node, scales: Scales) -> tuple[float, ...]:
    x, factor = scales.inputs[0], _factor_scale(node, scales.inputs)
    shift = min(MAX_SHIFT, max(0, math.ceil(math.log2(scales.free() / (x * factor)))))
    return (x * factor * 2.0 ** shift,)


def _sum_scale(node: Node, scales: Scales) -> float:
    return max(*scales.inputs, scales.free())


def _inputs(node: Node, scales: dict[str, float]) -> tuple[float, ...]:
    return tuple(scales[n] for n in node.inputs)


def _quantize_add(node: Node, scales: dict[str, float], policy: object) -> Node:
    y = scales[node.outputs[0]]
    mult, shift = quantize_multiplier(scales[node.inputs[0]] / y)
    sign = -1 if node.attrs.negate else 1
    return node.quantized(QuantAddConstAttrs, q=quantize(node.attrs.value, y), mult=sign * mult, shift=shift)


def _product_shift(node: Node, scales: dict[str, float]) -> int:
    inputs = _inputs(node, scales)
    return round(math.log2(scales[node.outputs[0]] / (inputs[0] * _factor_scale(node, inputs))))


def _quantize_mul_const(node: Node, scales: dict[str, float], policy: object) -> Node:
    factor = _factor_scale(node, _inputs(node, scales))
    return node.quantized(QuantMulConstAttrs, q=quantize(node.attrs.value, factor), shift=_product_shift(node, scales))


def _quantize_mul(node: Node, scales: dict[str, float], policy: object) -> Node:
    return node.quantized(QuantMulAttrs, shift=_product_shift(node, scales))


def lower_add_const(ctx: Lowering, node: Node, where: Where) -> None:
    x = _scaled_input(ctx, node, where)
    c = _load(ctx, node, "addend", node.attrs.q, where)
    out = node.outputs[0]
    ctx.emit_elementwise("VADD", where, ctx.graph.size(out), dst=ctx.place(out), a=x, b=c)


def lower_mul_const(ctx: Lowering, node: Node, where: Where) -> None:
    c = _load(ctx, node, "factor", node.attrs.q, where)
    out = node.outputs[0]
    ctx.emit_elementwise("VMUL", where, ctx.graph.size(out), dst=ctx.place(out), a=ctx.places[node.inputs[0]],
                         b=c, shift=node.attrs.shift)


def lower_pair(ctx: Lowering, node: Node, where: Where) -> None:
    """Two computed operands of the output's shape."""
    out = node.outputs[0]
    x, z = (ctx.places[n] for n in node.inputs)
    extra = {"shift": node.attrs.shift} if node.op == "mul" else {}
    ctx.emit_elementwise(PAIR_INSTRUCTIONS[node.op], where, ctx.graph.size(out), dst=ctx.place(out), a=x, b=z,
                         **extra)


PAIR_INSTRUCTIONS = {"add": "VADD", "sub": "VSUB", "mul": "VMUL"}


def _scaled_input(ctx: Lowering, node: Node, where: Where) -> Ref:
    """The data at the output's scale (and negated for c - x): itself, or VSCALE/VMUL into a temporary."""
    mult, shift = node.attrs.mult, node.attrs.shift
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


def _value(attrs: AddConstAttrs | MulConstAttrs) -> Parameters:
    return Parameters({"value": attrs.value})


register(
    OpDef("add_const", "vector", AddConstAttrs, lambda node, x: (-x if node.attrs.negate else x) + node.attrs.value,
          lambda node, x: nx.add(nx.multiply(x, node.attrs.mult, node.attrs.shift), node.attrs.q),
          _add_scale, lower_add_const, QuantAddConstAttrs, _quantize_add, parameters=_value),
    OpDef("mul_const", "vector", MulConstAttrs, lambda node, x: x * node.attrs.value,
          lambda node, x: nx.multiply(x, node.attrs.q, node.attrs.shift),
          _mul_scale, lower_mul_const, QuantMulConstAttrs, _quantize_mul_const, parameters=_value),
    OpDef("add", "vector", PairAttrs, lambda node, x, y: x + y, lambda node, x, y: nx.add(x, y), same_as_inputs,
          lower_pair, common_scale=_sum_scale),
    OpDef("sub", "vector", PairAttrs, lambda node, x, y: x - y, lambda node, x, y: nx.subtract(x, y), same_as_inputs,
          lower_pair, common_scale=_sum_scale),
    OpDef("mul", "vector", MulAttrs, lambda node, x, y: x * y, lambda node, x, y: nx.multiply(x, y, node.attrs.shift),
          _mul_scale, lower_pair, QuantMulAttrs, _quantize_mul),
)

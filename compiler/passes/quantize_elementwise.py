"""Scales and integer constants for the element-wise ops with a constant operand.

`add_const` (y = ±x + c): VADD needs both operands at the output's scale. That scale is the
calibrated one, but never finer than the data's own or than the constant needs (max|c| /
32767): then neither operand saturates before the sum, even where x and c nearly cancel. The
data is brought to it by a multiplier `mult` × 2^-`shift` -- negative for c - x, which VMUL
applies (VSCALE's multiplier is a magnitude) -- and the constant is quantised at it.

`mul_const` (y = x · c): the constant gets its own scale s_c = max|c| / 32767 (its full 16
bits: it is known exactly, so needs no headroom). VMUL's product has scale s_x · s_c; the
smallest `shift` that brings it to at least the calibrated scale makes it fit, and the output's
scale is then exactly s_x · s_c · 2^shift. `mul` (y = x · z, both computed) is the same with
z's scale for s_c.

`add` and `sub` of two computed tensors need no rule here: quantize brings both operands to one
common scale, as it does for a gather's inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from compiler.ir import Node
from isa.numerics import ACT_MAX, MAX_SHIFT, quantize, quantize_multiplier


def output_scale(node: Node, scales: dict[str, float], calibrated: float) -> float:
    """The scale of the node's output, given the one calibration (or a consumer) asks for."""
    return OUTPUT_SCALES[node.op](node, [scales[n] for n in node.inputs], calibrated)


def quantize_elementwise(node: Node, scales: dict[str, float]) -> Node:
    return QUANTIZERS[node.op](node, [scales[n] for n in node.inputs], scales[node.outputs[0]])


def _constant_scale(value: np.ndarray) -> float:
    """The finest scale at which the constant's largest magnitude still fits in 16 bits."""
    largest = float(np.max(np.abs(value))) if value.size else 0.0
    return (largest or 1.0) / ACT_MAX


def _factor_scale(node: Node, in_scales: list[float]) -> float:
    """The scale of the second factor: the constant's own, or the computed operand's."""
    return _constant_scale(node.attrs["value"]) if node.op == "mul_const" else in_scales[1]


def _add_scale(node: Node, in_scales: list[float], calibrated: float) -> float:
    return max(calibrated, in_scales[0], _constant_scale(node.attrs["value"]))


def _mul_shift(x_scale: float, c_scale: float, calibrated: float) -> int:
    return min(MAX_SHIFT, max(0, math.ceil(math.log2(calibrated / (x_scale * c_scale)))))


def _mul_scale(node: Node, in_scales: list[float], calibrated: float) -> float:
    product = in_scales[0] * _factor_scale(node, in_scales)
    return product * 2.0 ** _mul_shift(in_scales[0], _factor_scale(node, in_scales), calibrated)


def _quantize_add(node: Node, in_scales: list[float], y_scale: float) -> Node:
    mult, shift = quantize_multiplier(in_scales[0] / y_scale)
    sign = -1 if node.attrs["negate"] else 1
    return node.with_attrs(q=quantize(node.attrs["value"], y_scale), mult=sign * mult, shift=shift)


def _quantize_mul(node: Node, in_scales: list[float], y_scale: float) -> Node:
    factor = _factor_scale(node, in_scales)
    shift = round(math.log2(y_scale / (in_scales[0] * factor)))
    if node.op == "mul":
        return node.with_attrs(shift=shift)
    return node.with_attrs(q=quantize(node.attrs["value"], factor), shift=shift)


OUTPUT_SCALES: dict[str, Callable[[Node, list[float], float], float]] = {
    "add_const": _add_scale, "mul_const": _mul_scale, "mul": _mul_scale}
QUANTIZERS: dict[str, Callable[[Node, list[float], float], Node]] = {
    "add_const": _quantize_add, "mul_const": _quantize_mul, "mul": _quantize_mul}

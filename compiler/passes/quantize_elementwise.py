"""Scales and integer constants for the element-wise ops with a constant operand.

`add_const` (y = ±x + c): VADD needs both operands at the output's scale. That scale is the
calibrated one, but never finer than the data's own or than the constant needs (max|c| /
32767): then neither operand saturates before the sum, even where x and c nearly cancel. The
data is brought to it by a multiplier `mult` × 2^-`shift` -- negative for c - x, which VMUL
applies (VSCALE's multiplier is a magnitude) -- and the constant is quantised at it.

`mul_const` (y = x · c): the constant gets its own scale s_c = max|c| / 32767 (its full 16
bits: it is known exactly, so needs no headroom). VMUL's product has scale s_x · s_c; the
smallest `shift` that brings it to at least the calibrated scale makes it fit, and the output's
scale is then exactly s_x · s_c · 2^shift.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from compiler.ir import Node
from isa.numerics import ACT_MAX, quantize, quantize_multiplier

MAX_SHIFT = 63  # VMUL's shift field holds 6 bits


def output_scale(node: Node, scales: dict[str, float], calibrated: float) -> float:
    """The scale of the node's output, given the one calibration (or a consumer) asks for."""
    return OUTPUT_SCALES[node.op](node, scales[node.inputs[0]], calibrated)


def quantize_elementwise(node: Node, scales: dict[str, float]) -> Node:
    return QUANTIZERS[node.op](node, scales[node.inputs[0]], scales[node.outputs[0]])


def _constant_scale(value: np.ndarray) -> float:
    """The finest scale at which the constant's largest magnitude still fits in 16 bits."""
    largest = float(np.max(np.abs(value))) if value.size else 0.0
    return (largest or 1.0) / ACT_MAX


def _add_scale(node: Node, x_scale: float, calibrated: float) -> float:
    return max(calibrated, x_scale, _constant_scale(node.attrs["value"]))


def _mul_shift(x_scale: float, c_scale: float, calibrated: float) -> int:
    return min(MAX_SHIFT, max(0, math.ceil(math.log2(calibrated / (x_scale * c_scale)))))


def _mul_scale(node: Node, x_scale: float, calibrated: float) -> float:
    c_scale = _constant_scale(node.attrs["value"])
    return x_scale * c_scale * 2.0 ** _mul_shift(x_scale, c_scale, calibrated)


def _quantize_add(node: Node, x_scale: float, y_scale: float) -> Node:
    mult, shift = quantize_multiplier(x_scale / y_scale)
    sign = -1 if node.attrs["negate"] else 1
    return node.with_attrs(q=quantize(node.attrs["value"], y_scale), mult=sign * mult, shift=shift)


def _quantize_mul(node: Node, x_scale: float, y_scale: float) -> Node:
    c_scale = _constant_scale(node.attrs["value"])
    shift = round(math.log2(y_scale / (x_scale * c_scale)))
    return node.with_attrs(q=quantize(node.attrs["value"], c_scale), shift=shift)


OUTPUT_SCALES: dict[str, Callable[[Node, float, float], float]] = {"add_const": _add_scale, "mul_const": _mul_scale}
QUANTIZERS: dict[str, Callable[[Node, float, float], Node]] = {"add_const": _quantize_add, "mul_const": _quantize_mul}

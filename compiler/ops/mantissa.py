"""power and log: x^p (p a multiple of 1/2) and ln x of data, one VPOW each, exact in the exponent.

A uniform table over a calibrated range cannot serve 1/x, sqrt x or ln x: their slope is unbounded
near 0, where the first of 256 segments would err by percents of the output's range. VPOW reads
each code u like a float instead: u = m · 4^h with m in [1, 4), interpolates f on the mantissa m
(the "powmant(p)" or "lnquad" table of isa.numerics) and applies the exponent exactly, as a shift
(u^p = m^p · 2^(2p·h)) or as h · ln 4 added (ln u = ln m + h ln 4). The input's and the output's
scales fold into one requantisation (mult, shift) and, for the log, an offset ln s_x: so the
relative error of a power and the absolute error of the log are the table's, the same over the
whole 16-bit range (docs/numerics.md, "Element-wise math").

The output's scale is its calibrated range's. Where calibration meets an input the function is
not finite at (0 for 1/x or ln x, a negative for sqrt x or ln x) there is no range to take, and
the compiler refuses: such an operator stays on the host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compiler.ir import Node
from compiler.kernel import Where
from compiler.ops.integer import table
from compiler.ops.registry import OpDef, Scales, register
from compiler.passes.lowering import Lowering
from isa import numerics as nx
from isa.errors import RnnaccelError
from isa.numerics import quantize_multiplier, table_name

# the exponents VPOW's tables serve (its `pow` field is 2p): beyond them the table's values near its
# smallest fall below 2^-7 of Q0.15 and its error past 10^-3 (docs/numerics.md)
POWERS = (1.5, 0.5, -0.5, -1.0, -1.5, -2.0)


@dataclass(frozen=True, kw_only=True)
class PowerAttrs:
    p: float  # one of POWERS
    what: str  # the operator it computes, for messages ("Sqrt", "Reciprocal", ...)


@dataclass(frozen=True, kw_only=True)
class LogAttrs:
    what: str = "Log"


@dataclass(frozen=True, kw_only=True)
class QuantMantissa:
    """What VPOW needs: its table, twice the power (0: ln), the requantisation and the offset."""

    spec: str
    pow: int
    mult: int
    shift: int
    off: int


@dataclass(frozen=True, kw_only=True)
class QuantPowerAttrs(QuantMantissa, PowerAttrs):
    pass


@dataclass(frozen=True, kw_only=True)
class QuantLogAttrs(QuantMantissa, LogAttrs):
    pass


def _float_power(node: Node, x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.power(x, node.attrs.p)


def _float_log(node: Node, x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(x)


def _finite_range(node: Node, scales: Scales) -> tuple[float, ...]:
    """The calibrated output's scale, refused when calibration saw the function leave the reals."""
    scale = scales.free()
    if not math.isfinite(scale):
        raise RnnaccelError(f"{node.attrs.what} '{node.source}': calibration gives it an input where it is not "
                            f"finite (0, or below 0), so its output has no range for the chip")
    return (scale,)


def _quantize_power(node: Node, scales: dict[str, float], policy: object) -> Node:
    """u^p · s_x^p / s_y = T(m) · 2 · 4^max(p,0) · 2^-15 · 4^(p·TOP) · 2^(2p·(h - TOP)) · s_x^p / s_y."""
    p = node.attrs.p
    real = (2.0 ** (1 - nx.UNIT_FRAC) * 4.0 ** (max(p, 0.0) + p * nx.TOP_OCTAVES) * scales[node.inputs[0]] ** p
            / scales[node.outputs[0]])
    mult, shift = quantize_multiplier(real)
    return node.quantized(QuantPowerAttrs, spec=table_name("powmant", p), pow=round(2 * p), mult=mult, shift=shift,
                          off=0)


def _quantize_log(node: Node, scales: dict[str, float], policy: object) -> Node:
    """ln(u · s_x) / s_y = (T(m) + h · LN2_Q15 + ln s_x · 2^14) · 2^-14 / s_y: T holds ln m / 2 in Q0.15."""
    half = nx.UNIT_FRAC - 1
    mult, shift = quantize_multiplier(2.0 ** -half / scales[node.outputs[0]])
    off = round(math.log(scales[node.inputs[0]]) * 2 ** half)
    return node.quantized(QuantLogAttrs, spec="lnquad", pow=0, mult=mult, shift=shift, off=off)


def mantissa_reference(node: Node, x: np.ndarray) -> np.ndarray:
    a = node.attrs
    return nx.mantissa_power(table(a.spec), x, a.pow, a.mult, a.shift, a.off)


def lower_mantissa(ctx: Lowering, node: Node, where: Where) -> None:
    a, out = node.attrs, node.outputs[0]
    ctx.emit_elementwise("VPOW", where, ctx.graph.size(out), dst=ctx.place(out), src=ctx.places[node.inputs[0]],
                         table=ctx.table(a.spec), pow=a.pow, mult=a.mult, shift=a.shift, off=a.off)


register(
    OpDef("power", "vector", PowerAttrs, _float_power, mantissa_reference, _finite_range, lower_mantissa,
          QuantPowerAttrs, _quantize_power),
    OpDef("log", "vector", LogAttrs, _float_log, mantissa_reference, _finite_range, lower_mantissa,
          QuantLogAttrs, _quantize_log),
)

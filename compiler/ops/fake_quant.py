"""fake_quant: a QuantizeLinear -> DequantizeLinear pair on computed data (a pre-quantised model).

ONNX's meaning is y = (saturate(round(x / s) + zp) - zp) * s: x snapped to an integer grid of step
s and clipped to the integer type's range. On the chip a tensor at scale s *is* on that grid, so
the op asks for its input at scale s (quantisation requantises the producer straight to it where
it can, else inserts a rescale) and gives its output the same scale: the grid is the model's,
not calibration's. What is left is the clip, [qmin - zp, qmax - zp] in units of s: one VCLAMP, or
nothing at all (an alias) when those bounds lie beyond int16 and cannot bind.

Rounding differs from ONNX only on exact ties (the chip rounds half up, ONNX half to even).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.ir import Node
from compiler.kernel import Where
from compiler.ops.registry import OpDef, register
from compiler.passes.lowering import Lowering
from isa import numerics as nx
from isa.numerics import ACT_MAX, ACT_MIN


@dataclass(frozen=True, kw_only=True)
class FakeQuantAttrs:
    step: float  # the scale s: one integer step
    zero_point: int
    qmin: int  # the integer type's range (int8: -128, 127; uint8: 0, 255; ...)
    qmax: int

    @property
    def bounds(self) -> tuple[int, int]:
        """The clip in units of s, within int16 (where a bound beyond it cannot bind)."""
        return max(self.qmin - self.zero_point, ACT_MIN), min(self.qmax - self.zero_point, ACT_MAX)


def float_fake_quant(node: Node, x: np.ndarray) -> np.ndarray:
    a = node.attrs
    return (np.clip(np.rint(x / a.step) + a.zero_point, a.qmin, a.qmax) - a.zero_point) * a.step


def reference(node: Node, x: np.ndarray) -> np.ndarray:
    return nx.clamp(x, *node.attrs.bounds)


def lower_fake_quant(ctx: Lowering, node: Node, where: Where) -> None:
    lo, hi = node.attrs.bounds
    x, y = node.inputs[0], node.outputs[0]
    if (lo, hi) == (ACT_MIN, ACT_MAX):
        ctx.places[y] = ctx.places[x]
        return
    ctx.emit_elementwise("VCLAMP", where, ctx.graph.size(y), dst=ctx.place(y), src=ctx.places[x], lo=lo, hi=hi)


def _step(node: Node) -> tuple[float, ...]:
    return (node.attrs.step,)


register(OpDef("fake_quant", "vector", FakeQuantAttrs, float_fake_quant, reference,
               lambda node, scales: _step(node), lower_fake_quant, input_scales=_step))

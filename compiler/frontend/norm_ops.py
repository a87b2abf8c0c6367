"""Normalisations on the vector unit.

BatchNormalization in inference is a per-channel scale and shift with constant statistics:
y = x · a + c, a = scale / sqrt(var + epsilon), c = B − mean · a, computed at compile time and
emitted as `mul_const` then `add_const` (compiler/ops/elementwise.py), the constants broadcast
along axis 1. A BatchNormalization right after a layer it can be folded into is that layer's
business (its weights and bias absorb a and c); this handler takes the ones no fold took.
"""

from __future__ import annotations

import numpy as np

from compiler.frontend.capability import Constraint, constants_from, declare
from compiler.frontend.registry import fold, operator
from compiler.ir import Node
from compiler.ops.elementwise import AddConstAttrs, MulConstAttrs


def batch_norm_affine(scale, bias, mean, var, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel (a, c) of y = x · a + c, in float64."""
    a = np.asarray(scale, np.float64) / np.sqrt(np.asarray(var, np.float64) + epsilon)
    return a, np.asarray(bias, np.float64) - np.asarray(mean, np.float64) * a


def _per_channel(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Channel values (axis 1) broadcast to the data's full shape, float32."""
    along = values.reshape((1, -1) + (1,) * (len(shape) - 2)) if len(shape) > 1 else values
    return np.array(np.broadcast_to(along, shape), np.float32)


@operator
def BatchNormalization(b, node, name: str, *, epsilon=1e-5, momentum=None, training_mode=0, spatial=1) -> None:
    """x · a + c per channel with a and c from the constant statistics: VMUL then VADD, each
    constant copied from weight memory (LDC)"""
    x, out = node.input[0], node.output[0]
    a, c = batch_norm_affine(*(b.const(n) for n in node.input[1:5]), epsilon)
    if b.is_const(x):
        return fold(b, node, lambda v, *_: (v * _per_channel(a, v.shape) + _per_channel(c, v.shape)).astype(np.float32))
    shape = b.shape(x)
    scaled = f"{name}/scaled"
    b.emit(Node("mul_const", name, (x,), (scaled,), MulConstAttrs(value=_per_channel(a, shape))), {scaled: shape})
    b.emit(Node("add_const", name, (scaled,), (out,), AddConstAttrs(value=_per_channel(c, shape), negate=False)),
           {out: shape})


CONSTRAINTS = {
    "BatchNormalization": (
        constants_from(1, ["scale", "B", "input_mean", "input_var"]),
        Constraint("training_mode must be 0 (BatchNormalization in training mode is not supported)",
                   lambda v: not v.attr("training_mode", 0), lambda v: v.attr("training_mode")),
    ),
}
declare(CONSTRAINTS)

"""Normalisations on the vector unit.

BatchNormalization in inference is a per-channel scale and shift with constant statistics:
y = x · a + c, a = scale / sqrt(var + epsilon), c = B − mean · a, computed at compile time and
emitted as `mul_const` then `add_const` (compiler/ops/elementwise.py), the constants broadcast
along axis 1. A BatchNormalization right after a layer it can be folded into is that layer's
business (its weights and bias absorb a and c); this handler takes the ones no fold took.

LayerNormalization (over the block from `axis` on: always consecutive elements) and
InstanceNormalization (over each channel's spatial block) become one `normalize` node
(compiler/ops/normalize.py, whose docstring gives the recipe) followed by the scale and the bias
the same way: broadcast along the normalised block for LayerNormalization, per channel for
InstanceNormalization.
"""

from __future__ import annotations

import numpy as np

from compiler.frontend.capability import Constraint, NodeView, constants_from, declare
from compiler.frontend.registry import operator
from compiler.ir import Node
from compiler.ops.elementwise import AddConstAttrs, MulConstAttrs
from compiler.ops.normalize import ROW_LIMIT, NormalizeAttrs, float_normalize
from isa.errors import RnnaccelError


def batch_norm_affine(scale, bias, mean, var, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel (a, c) of y = x · a + c, in float64."""
    a = np.asarray(scale, np.float64) / np.sqrt(np.asarray(var, np.float64) + epsilon)
    return a, np.asarray(bias, np.float64) - np.asarray(mean, np.float64) * a


def _per_channel(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Channel values (axis 1) broadcast to the data's full shape, float32."""
    along = np.asarray(values).reshape((1, -1) + (1,) * (len(shape) - 2)) if len(shape) > 1 else values
    return _broadcast(along, shape)


def _affine(b, name: str, z: str, out: str, scale: np.ndarray, shift: np.ndarray | None) -> None:
    """out = z · scale (+ shift), both of z's full shape: folded when z is a constant, else
    mul_const then add_const (none when there is no shift)."""
    if b.is_const(z):
        b.consts[out] = (b.const(z) * scale + (0 if shift is None else shift)).astype(np.float32)
        return
    shape = b.shape(z)
    scaled = out if shift is None else f"{name}/scaled"
    b.emit(Node("mul_const", name, (z,), (scaled,), MulConstAttrs(value=scale)), {scaled: shape})
    if shift is not None:
        b.emit(Node("add_const", name, (scaled,), (out,), AddConstAttrs(value=shift, negate=False)), {out: shape})


def _normalized(b, node, name: str, row: int, epsilon: float) -> str:
    """The data normalised over rows of `row`: a new tensor, a constant if the data is one."""
    x, z = node.input[0], f"{name}/normalized"
    attrs = NormalizeAttrs(row=row, epsilon=float(epsilon))
    if b.is_const(x):
        b.consts[z] = float_normalize(Node("normalize", name, (), (), attrs), b.const(x)).astype(np.float32)
    else:
        b.emit(Node("normalize", name, (x,), (z,), attrs), {z: b.shape(x)})
    return z


@operator
def BatchNormalization(b, node, name: str, *, epsilon=1e-5, momentum=None, training_mode=0, spatial=1) -> None:
    """x · a + c per channel with a and c from the constant statistics: VMUL then VADD, each
    constant copied from weight memory (LDC)"""
    x, shape = node.input[0], b.shape(node.input[0])
    a, c = batch_norm_affine(*(b.const(n) for n in node.input[1:5]), epsilon)
    _affine(b, name, x, node.output[0], _per_channel(a, shape), _per_channel(c, shape))


@operator
def LayerNormalization(b, node, name: str, *, axis=-1, epsilon=1e-5, stash_type=1) -> None:
    """(x - mean) / sqrt(var + epsilon) over the block from `axis` on (VRSUM, VRQ, VSUBS, VRSS, VNORM),
    then the scale (VMUL) and bias (VADD)"""
    shape = b.shape(node.input[0])
    z = _normalized(b, node, name, _block(shape, axis), epsilon)
    bias = b.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    _affine(b, name, z, node.output[0], _broadcast(b.const(node.input[1]), shape),
            None if bias is None else _broadcast(bias, shape))


@operator
def InstanceNormalization(b, node, name: str, *, epsilon=1e-5) -> None:
    """(x - mean) / sqrt(var + epsilon) over each channel's spatial block, as LayerNormalization, then
    the per-channel scale (VMUL) and bias (VADD)"""
    shape = b.shape(node.input[0])
    z = _normalized(b, node, name, _block(shape, 2), epsilon)
    _affine(b, name, z, node.output[0], *(_per_channel(b.const(n), shape) for n in node.input[1:3]))


def _block(shape: tuple[int, ...], axis: int) -> int:
    """How many elements the block from `axis` on holds."""
    return int(np.prod(shape[axis % len(shape):], dtype=np.int64))


def _broadcast(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A constant of the node's broadcast to the data's shape, float32; one that does not fit is a
    malformed model."""
    try:
        return np.array(np.broadcast_to(values, shape), np.float32)
    except ValueError:
        raise RnnaccelError(f"a constant of shape {list(np.shape(values))} does not fit data of shape "
                            f"{list(shape)}") from None


def _row(view: NodeView) -> int:
    axis = 2 if view.op_type == "InstanceNormalization" else view.attr("axis", -1)
    return _block(view.input(0).shape, axis)


ROW = Constraint(f"on computed data, a normalised row must be at most {ROW_LIMIT} elements",
                 lambda v: v.input(0).is_const or _row(v) <= ROW_LIMIT, _row)
CONSTRAINTS = {
    "BatchNormalization": (
        constants_from(1, ["scale", "B", "input_mean", "input_var"]),
        Constraint("training_mode must be 0 (BatchNormalization in training mode is not supported)",
                   lambda v: not v.attr("training_mode", 0), lambda v: v.attr("training_mode")),
    ),
    "LayerNormalization": (
        constants_from(1, ["Scale", "B"]), ROW,
        Constraint("only the output Y is supported (Mean and InvStdDev are for training)",
                   lambda v: len(v.outputs) <= 1, lambda v: f"{len(v.outputs)} outputs")),
    "InstanceNormalization": (constants_from(1, ["scale", "B"]), ROW),
}
declare(CONSTRAINTS)

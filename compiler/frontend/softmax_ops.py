"""Softmax and LogSoftmax, computed by the vector unit over contiguous rows of the data.

Before opset 13 both operators coerce the input to 2-D at `axis` (default 1) and normalise each
row of the flattened inner part: always a contiguous run of prod(shape[axis:]) elements, so every
axis works. From opset 13 they normalise along the single axis `axis` (default -1), which is a
contiguous run only when every dim after it is 1 -- the last axis, in practice; other axes are
refused (CONSTRAINTS, beside the chip's bound on a row). The IR node carries the row length;
docs/numerics.md gives the fixed-point recipe.
"""

from __future__ import annotations

import numpy as np

from compiler.frontend.capability import Constraint, NodeView, declare
from compiler.frontend.registry import fold, operator
from compiler.ir import Node
from compiler.ops.softmax import SoftmaxAttrs, float_softmax
from isa.errors import RnnaccelError
from isa.table import BY_MNEMONIC

# a row is one VRMAX, VSUBS, VRSUM and VNORM each: their `n` fields bound it
ROW_LIMIT = min(BY_MNEMONIC[m].field("n").high for m in ("VRMAX", "VSUBS", "VRSUM", "VNORM"))
FLATTENING_BEFORE = 13  # the opset from which `axis` names one axis instead of a flattening point


def row_length(shape: tuple[int, ...], axis: int | None, opset: int) -> int:
    """How many consecutive elements one softmax normalises, by the opset's meaning of `axis`. From
    opset 13 that is the one axis `axis`, so the run is contiguous only if the dims after it are 1:
    CONSTRAINTS refuses the others before this is asked."""
    axis, index = _axis_index(shape, axis, opset)
    if not 0 <= index < len(shape):
        raise RnnaccelError(f"axis {axis} is out of range for an input of shape {list(shape)}")
    return int(np.prod(shape[index:], dtype=np.int64))


def _axis_index(shape: tuple[int, ...], axis: int | None, opset: int) -> tuple[int, int]:
    """The axis (its default filled in) and its index into the shape, perhaps out of range."""
    if axis is None:  # 1 before opset 13, but 0 for a 1-D input (as ONNX Runtime reads it); -1 from 13
        axis = min(1, len(shape) - 1) if opset < FLATTENING_BEFORE else -1
    return axis, axis + len(shape) if axis < 0 else axis


def _emit(b, node, name: str, op: str, axis: int | None) -> None:
    x, out = node.input[0], node.output[0]
    row = row_length(b.shape(x), axis, b.opset)
    if b.is_const(x):
        return fold(b, node, lambda v: float_softmax(v, row, op == "logsoftmax").astype(np.float32))
    b.emit(Node(op, name, (x,), (out,), SoftmaxAttrs(row=row)), {out: b.shape(x)})


@operator
def Softmax(b, node, name: str, *, axis: int | None = None) -> None:
    """exp(x - max) / sum on the vector unit, out in Q0.15: over the last axis (`axis` defaults to -1;
    before opset 13 to 1, and any axis works: the flattened block from it on)"""
    _emit(b, node, name, "softmax", axis)


@operator
def LogSoftmax(b, node, name: str, *, axis: int | None = None) -> None:
    """(x - max) - ln(sum exp(x - max)) on the vector unit, out in Q4.11 (below -16 saturates); axis as
    for Softmax"""
    _emit(b, node, name, "logsoftmax", axis)


def _axis_and_row(view: NodeView) -> tuple[int, int] | None:
    """The index of the node's axis and the row it normalises; None if the axis is out of range
    (the handler says so: a malformed model, not a limit of the chip)."""
    shape = view.input(0).shape
    index = _axis_index(shape, view.attr("axis"), view.opset)[1]
    return (index, int(np.prod(shape[index:], dtype=np.int64))) if 0 <= index < len(shape) else None


def _contiguous(view: NodeView) -> bool:
    found = _axis_and_row(view)
    return view.opset < FLATTENING_BEFORE or found is None or found[1] == view.input(0).shape[found[0]]


def _fits(view: NodeView) -> bool:
    found = _axis_and_row(view)
    return view.input(0).is_const or found is None or found[1] <= ROW_LIMIT


ROWS = (Constraint("from opset 13, the axis must be the last (only dims of 1 may follow it)", _contiguous,
                   lambda v: f"axis {v.attr('axis')} of shape {list(v.input(0).shape)}"),
        Constraint(f"on computed data, a row must be at most {ROW_LIMIT} elements", _fits,
                   lambda v: f"{_axis_and_row(v)[1]} elements"))
CONSTRAINTS = {"Softmax": ROWS, "LogSoftmax": ROWS}
declare(CONSTRAINTS)

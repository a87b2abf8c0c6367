"""Softmax and LogSoftmax, computed by the vector unit over contiguous rows of the data.

Before opset 13 both operators coerce the input to 2-D at `axis` (default 1) and normalise each
row of the flattened inner part: always a contiguous run of prod(shape[axis:]) elements, so every
axis works. From opset 13 they normalise along the single axis `axis` (default -1), which is a
contiguous run only when every dim after it is 1 -- the last axis, in practice; other axes are
refused. The IR node carries the row length; docs/numerics.md gives the fixed-point recipe.
"""

from __future__ import annotations

import numpy as np

from compiler.frontend.registry import fold, operator, unsupported
from compiler.ir import Node
from compiler.ops.softmax import SoftmaxAttrs, float_softmax
from isa.errors import RnnaccelError
from isa.table import BY_MNEMONIC

# a row is one VRMAX, VSUBS, VRSUM and VNORM each: their `n` fields bound it
ROW_LIMIT = min(BY_MNEMONIC[m].field("n").high for m in ("VRMAX", "VSUBS", "VRSUM", "VNORM"))
FLATTENING_BEFORE = 13  # the opset from which `axis` names one axis instead of a flattening point


def row_length(shape: tuple[int, ...], axis: int | None, opset: int) -> int:
    """How many consecutive elements one softmax normalises, by the opset's meaning of `axis`."""
    flattens = opset < FLATTENING_BEFORE
    if axis is None:  # 1 before opset 13, but 0 for a 1-D input (as ONNX Runtime reads it); -1 from 13
        axis = min(1, len(shape) - 1) if flattens else -1
    rank, index = len(shape), axis + len(shape) if axis < 0 else axis
    if not 0 <= index < rank:
        raise RnnaccelError(f"axis {axis} is out of range for an input of shape {list(shape)}")
    inner = int(np.prod(shape[index:], dtype=np.int64))
    if not flattens and inner != shape[index]:
        raise unsupported(f"normalising axis {axis} of shape {list(shape)}, whose elements are not contiguous "
                          "(only the last axis is)")
    return inner


def _emit(b, node, name: str, op: str, axis: int | None) -> None:
    x, out = node.input[0], node.output[0]
    row = row_length(b.shape(x), axis, b.opset)
    if b.is_const(x):
        return fold(b, node, lambda v: float_softmax(v, row, op == "logsoftmax").astype(np.float32))
    if row > ROW_LIMIT:
        raise unsupported(f"a {node.op_type} over {row} elements (at most {ROW_LIMIT})")
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

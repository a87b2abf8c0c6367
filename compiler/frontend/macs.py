"""Multiply-accumulates per inference, the measure of work the partition summary shares out.

A chip node's figure comes from its IR ops: a matrix op does each stored weight once per row
(fc: rows x cols per input row; a conv group: per output position; a recurrent layer: gates x
hidden x (inputs + hidden) per step, batch entry and direction, since W and R hold every
direction). A host node's is an estimate from its ONNX shapes, for the operators that multiply
matrices (recurrent layers included); element-wise work counts 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from compiler.frontend.recurrent_ops import RECURRENT_OP_TYPES
from compiler.ir import Node
from compiler.ops import MATRIX_OPS, OPS, RECURRENT_OPS

Shape = tuple[int, ...]
RECURRENT_WEIGHTS = ("W", "R")  # a peephole P is element-wise: no MACs on the array


def chip_macs(node: Node, shapes: Mapping[str, Shape]) -> int:
    """MACs of one IR node: its matrices' weights times the rows they are applied to: a recurrent
    layer's input rows (its output holds both directions, which its weights already count), any
    other matrix op's output rows (an fc's are its input rows; a conv group's, its windows)."""
    if node.op not in MATRIX_OPS or node.inputs[0] not in shapes:
        return 0
    weights = OPS[node.op].parameters(node.attrs).weights
    if node.op in RECURRENT_OPS:
        weights = {k: weights[k] for k in RECURRENT_WEIGHTS}
    x = shapes[node.inputs[0] if node.op in RECURRENT_OPS else node.outputs[0]]
    return sum(w.size for w in weights.values()) * math.prod(x) // max(x[-1], 1)


def _conv(inputs: list[Shape | None], outputs: list[Shape | None]) -> int:
    """Each output element sums (input channels / group) x kernel products: W is [M, C/group, k...]."""
    w, y = inputs[1], outputs[0]
    return math.prod(y) * math.prod(w[1:]) if w and y else 0


def _conv_transpose(inputs: list[Shape | None], outputs: list[Shape | None]) -> int:
    """Each input element times its (output channels / group) x kernel weights, W [C, M/group, k...]:
    the products a zero-inserting lowering would add to them multiply zeros. Pads that crop the
    output make it an upper bound."""
    x, w = (inputs + [None] * 2)[:2]
    return math.prod(x) * math.prod(w[1:]) if x and w else 0


def _matmul(inputs: list[Shape | None], outputs: list[Shape | None]) -> int:
    """Each output element sums K products, K the last dim of A."""
    a, y = inputs[0], outputs[0]
    return math.prod(y) * a[-1] if a and y else 0


def _gemm(inputs: list[Shape | None], outputs: list[Shape | None]) -> int:
    """Y [M, N] sums K products per element; A holds M x K whether or not transA."""
    a, y = inputs[0], outputs[0]
    return math.prod(y) * (math.prod(a) // max(y[0], 1)) if a and y else 0


def _recurrent(inputs: list[Shape | None], outputs: list[Shape | None]) -> int:
    """W [dirs, gates x H, I] and R [dirs, gates x H, H], each applied once per step and batch entry:
    X holds steps x batch rows of I, whatever its layout."""
    x, w, r = (inputs + [None] * 3)[:3]
    return (math.prod(w) + math.prod(r)) * (math.prod(x) // max(x[-1], 1)) if x and w and r else 0


HOST_MACS: dict[str, Callable[[list[Shape | None], list[Shape | None]], int]] = {
    "Conv": _conv, "ConvTranspose": _conv_transpose, "MatMul": _matmul, "Gemm": _gemm,
    **dict.fromkeys(RECURRENT_OP_TYPES, _recurrent),
}


def host_macs(op_type: str, inputs: list[Shape | None], outputs: list[Shape | None]) -> int:
    """An estimate of a host node's MACs from its input and output shapes (None: unknown)."""
    rule = HOST_MACS.get(op_type)
    return rule(inputs, outputs) if rule else 0

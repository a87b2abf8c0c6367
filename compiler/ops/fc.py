"""fc: y = W x + b for every row of x (MatMul, Gemm, and a bias Add folded into them).

The weight is [out, in]; the bias one vector, or one per input row (a Gemm C matrix), which the
lowering points each row's MVB at. Quantisation makes the weights per-row symmetric integers
(passes/weights.py); one MV per row tile and input row, then a requantisation into y.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from compiler.ir import Node, QMatrix
from compiler.kernel import Where
from compiler.ops.integer import project
from compiler.ops.registry import OpDef, Parameters, free_scale, register
from compiler.passes.lowering import Lowering
from compiler.passes.matrices import MatrixRefs, matvec, place_matrix, requantize
from compiler.passes.weights import WeightPolicy
from isa.table import CONSTANTS


@dataclass(frozen=True, kw_only=True)
class FcAttrs:
    weight: np.ndarray  # float32 [out, in]
    bias: np.ndarray | None  # float32 [out], or [..., out]: one vector per input row


@dataclass(frozen=True, kw_only=True)
class QuantFcAttrs(FcAttrs):
    q: QMatrix


def float_fc(node: Node, x: np.ndarray) -> np.ndarray:
    y = x @ node.attrs.weight.T.astype(np.float64)
    return y if node.attrs.bias is None else y + node.attrs.bias


def quantized_matrix(node: Node, scales: dict[str, float], policy: WeightPolicy, features: bool = True) -> QMatrix:
    """The node's weight and bias quantised per output row for its input's and output's scales;
    compressed with the moments of its input's features (the matrix's columns) when `features`."""
    x, y = scales[node.inputs[0]], scales[node.outputs[0]]
    return policy.matrix(node.attrs.weight, node.attrs.bias, x, y, node.inputs[:1] if features else (),
                         name=f"{node.source}/q")


def quantize_fc(node: Node, scales: dict[str, float], policy: WeightPolicy) -> Node:
    return node.quantized(QuantFcAttrs, q=quantized_matrix(node, scales, policy))


def lower_fc(ctx: Lowering, node: Node, where: Where) -> None:
    m = place_matrix(ctx, node.attrs.q, node.source, "q")
    x, y = ctx.places[node.inputs[0]], ctx.place(node.outputs[0])
    acc = ctx.buffer(f"{node.source}/acc", "acc", m.q.rows)
    for row in range(ctx.graph.size(node.inputs[0]) // m.q.cols):
        matvec(ctx, _row_bias(m, row), x + row * m.q.cols, acc, Where(where.node, where.layer, what="Wx"))
        requantize(ctx, m, Where(where.node, where.layer, what="requantise"), y + row * m.q.rows, acc, row=row)


def _row_bias(m: MatrixRefs, row: int) -> MatrixRefs:
    """A bias that differs per input row holds one vector per row: point this row's MVB at its own."""
    if m.bias is None or m.q.bias.ndim == 1:
        return m
    return dataclasses.replace(m, bias=m.bias + row * m.q.rows * CONSTANTS["acc_bytes"])


def parameters(attrs: FcAttrs) -> Parameters:
    """The weight and bias (fc's, or a conv group's), and the quantised matrix once there is one."""
    q = getattr(attrs, "q", None)
    matrices = {} if q is None else {"q": q}
    return Parameters({"weight": attrs.weight}, {} if attrs.bias is None else {"bias": attrs.bias}, matrices)


register(OpDef("fc", "matrix", FcAttrs, float_fc, lambda node, x: project(node.attrs.q, x), free_scale, lower_fc,
               QuantFcAttrs, quantize_fc, parameters=parameters))

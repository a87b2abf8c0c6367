"""Operators that compute with weights: Gemm, MatMul, Add (as a bias).

Each operator declares what the chip supports (CONSTRAINTS, checked before its handler runs); the
handler normalises the operator to the IR's canonical form (fc: weight [out, in] plus bias) and
records shapes.
"""

from __future__ import annotations

import numpy as np

from compiler.frontend.capability import Constraint, NodeView, constant, declare, matrix
from compiler.frontend.limits import check_elements
from compiler.frontend.registry import fold, operator, padded, unsupported
from compiler.ir import Node
from compiler.ops.fc import FcAttrs
from compiler.ops.gather import GatherAttrs
from isa.errors import RnnaccelError

FLOAT32_MAX = float(np.finfo(np.float32).max)


def constant_weight(b, name: str, what: str) -> np.ndarray:
    """A weight-like input as float32. That it is a constant the operator declares (CONSTRAINTS), so
    the importer has checked it; that it is finite is the model's own affair, checked here."""
    value = np.asarray(b.const(name), dtype=np.float32)
    if not np.all(np.isfinite(value)):
        raise RnnaccelError(f"{what} '{name}' contains NaN or Inf")
    return value


def scaled(value: np.ndarray, factor: float, what: str) -> np.ndarray:
    """factor * value as float32: a finite factor (Gemm's alpha of 1e38) can still overflow it."""
    out = np.asarray(value, np.float64) * factor
    if not np.all(np.abs(out) <= FLOAT32_MAX):
        raise RnnaccelError(f"{what} times {factor:g} overflows float32")
    return out.astype(np.float32)


def matmul(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """np.matmul of constants, the size of its result checked first: [N,K] by [K,M] makes N*M."""
    if np.ndim(x) >= 2 and np.ndim(y) >= 2:  # rows of x by columns of y, over the broadcast batch dims
        rows, columns = (*np.shape(x)[:-1], 1), (*np.shape(y)[:-2], 1, np.shape(y)[-1])
        check_elements("the product", np.broadcast_shapes(rows, columns))
    return np.matmul(x, y)


def _emit_fc(b, name: str, x: str, out: str, weight: np.ndarray, bias: np.ndarray | None) -> None:
    shape = b.shape(x)
    if not shape or shape[-1] != weight.shape[1]:
        raise unsupported(f"input shape {list(shape)} for a {weight.shape[1]}-input layer")
    attrs = FcAttrs(weight=weight, bias=bias)
    b.emit(Node("fc", name, (x,), (out,), attrs), {out: tuple(shape[:-1]) + (weight.shape[0],)})


def fc_bias(value: np.ndarray, out_shape: tuple[int, ...], what: str) -> np.ndarray:
    """A bias broadcast to a layer's output: one vector if every input row gets the same one, else
    one vector per input row (the lowering points each row's MVB at its own)."""
    try:
        full = np.broadcast_to(value, out_shape)
    except ValueError:
        raise unsupported(f"a {what} of shape {list(value.shape)} for an output of shape {list(out_shape)}") from None
    rows = full.reshape(-1, out_shape[-1])
    same = bool(np.all(rows == rows[:1]))
    return np.array(rows[0] if same else full, dtype=np.float32)


def transposed(b, name: str, tensor: str) -> str:
    """A computed matrix's transpose, as a gather node (the backend copies it run by run)."""
    shape = b.shape(tensor)
    out = f"{name}/A^T"
    index = np.arange(shape[0] * shape[1]).reshape(shape).T
    b.emit(Node("gather", name, (tensor,), (out,), GatherAttrs(index=index.ravel())), {out: index.shape})
    return out


@operator
def Gemm(b, node, name: str, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    """alpha·A'·B' + beta·C with B constant; A' of computed data is a copy; C a scalar, row or matrix."""
    a, bmat, c = padded(node.input, 3)
    if all(b.is_const(n) for n in node.input):
        return fold(b, node, lambda x, y, z=0.0: alpha * matmul(x.T if transA else x, y.T if transB else y) + beta * z)
    weight = constant_weight(b, bmat, "Gemm weight")
    weight = scaled(weight if transB else weight.T, alpha, "Gemm weight")
    x = transposed(b, name, a) if transA else a
    bias = None
    if c:
        out_shape = (*b.shape(x)[:-1], weight.shape[0])
        bias = fc_bias(scaled(constant_weight(b, c, "Gemm bias"), beta, "Gemm bias"), out_shape, "Gemm bias")
    _emit_fc(b, name, x, node.output[0], weight, bias)


@operator
def MatMul(b, node, name: str):
    """A [..., K] times a constant B [K, N], as for each row of A (batch and time dims included)."""
    a, w = node.input
    if b.is_const(a) and b.is_const(w):
        return fold(b, node, matmul)
    weight = constant_weight(b, w, "MatMul weight")
    _emit_fc(b, name, a, node.output[0], np.ascontiguousarray(weight.T), None)


def _transposed_matrix(view: NodeView) -> bool:
    """transA=1 on computed data makes a copy of A's transpose, which takes a matrix."""
    return view.all_const or not view.attr("transA", 0) or view.input(0).rank == 2


CONSTRAINTS = {
    "Gemm": (constant(1, "B"), matrix(1, "B"), constant(2, "C"),
             Constraint("with transA=1, A must be a matrix (rank 2)", _transposed_matrix,
                        lambda v: f"rank {v.input(0).rank}")),
    "MatMul": (constant(1, "B"), matrix(1, "B")),
}
declare(CONSTRAINTS)

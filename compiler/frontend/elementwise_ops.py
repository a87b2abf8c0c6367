"""Element-wise Add, Sub and Mul: of computed data with a constant, or of two computed tensors.

A constant added right after a MatMul or Gemm that has no bias becomes that layer's bias: it is
free there, because MVB preloads the accumulators with it. Every other case becomes `add_const`
(y = ±x + c) or `mul_const` (y = x · c), with the constant broadcast to the output's full shape
at compile time; the chip copies it from weight memory (LDC) and adds (VADD) or multiplies
(VMUL) element by element. Two computed operands become `add`, `sub` or `mul` (VADD, VSUB,
VMUL): exporters write unrolled recurrences that way. docs/numerics.md gives the arithmetic.
Data broadcast to a larger shape first goes through a `gather`, like any layout operator.
"""

from __future__ import annotations

import numpy as np

from compiler.frontend.compute_ops import constant_weight, fc_bias
from compiler.frontend.registry import fold, operator, unsupported
from compiler.ir import Node
from compiler.ops.elementwise import AddConstAttrs, MulAttrs, MulConstAttrs, PairAttrs
from compiler.ops.fc import FcAttrs
from compiler.ops.gather import GatherAttrs


@operator
def Add(b, node, name: str) -> None:
    """x + c or c + x; a bias right after a bias-less MatMul/Gemm joins that layer."""
    if operands := _data_and_constant(b, node, name, np.add, "add"):
        data, const, _ = operands
        if not _fuse_bias(b, name, data, const, node.output[0]):
            emit_with_constant(b, name, "add_const", data, const, node.output[0])


@operator
def Sub(b, node, name: str) -> None:
    """x - c is x + (-c); c - x negates the data on the chip."""
    if operands := _data_and_constant(b, node, name, np.subtract, "sub"):
        data, const, data_first = operands
        value = -const if data_first else const
        emit_with_constant(b, name, "add_const", data, value, node.output[0], negate=not data_first)


@operator
def Mul(b, node, name: str) -> None:
    """x * c or c * x."""
    if operands := _data_and_constant(b, node, name, np.multiply, "mul"):
        data, const, _ = operands
        emit_with_constant(b, name, "mul_const", data, const, node.output[0])


def _data_and_constant(b, node, name: str, fold_with, pair_op: str) -> tuple[str, np.ndarray, bool] | None:
    """What every binary operator does first: fold two constants, emit `pair_op` for two computed
    operands; otherwise (data, constant, whether the data comes first) for the caller's lowering."""
    if all(b.is_const(n) for n in node.input):
        fold(b, node, fold_with)
        return None
    if not any(b.is_const(n) for n in node.input):
        _emit_pair(b, name, pair_op, node)
        return None
    return _operands(b, node)


def _emit_pair(b, name: str, op: str, node) -> None:
    """Two computed operands, each broadcast to the common shape first if it must grow."""
    first, second = node.input
    shape = _broadcast_shape(b.shape(first), b.shape(second))
    operands = tuple(n if b.shape(n) == shape else _broadcast_data(b, f"{name}/{i}", n, shape)
                     for i, n in enumerate((first, second)))
    attrs = MulAttrs() if op == "mul" else PairAttrs()
    b.emit(Node(op, name, operands, (node.output[0],), attrs), {node.output[0]: shape})


def _operands(b, node) -> tuple[str, np.ndarray, bool]:
    """(data tensor, constant value, whether the data is the first operand)."""
    first, second = node.input
    data, const = (first, second) if b.is_const(second) else (second, first)
    return data, constant_weight(b, const, f"{node.op_type} constant"), data == first


def _fuse_bias(b, name: str, data: str, value: np.ndarray, out: str) -> bool:
    """Make `data + value` the bias of the bias-less fc that computes `data`, if there is one."""
    producer = b.producers.get(data)
    shape = b.shape(data)
    if producer is None or producer.op != "fc" or producer.attrs.bias is not None:
        return False
    if value.ndim > len(shape) or any(c not in (1, d) for c, d in zip(value.shape[::-1], shape[::-1])):
        return False  # the data would have to grow: the general lowering broadcasts it
    attrs = FcAttrs(weight=producer.attrs.weight, bias=fc_bias(value, shape, "bias"))
    b.emit(Node("fc", name, producer.inputs, (out,), attrs), {out: shape})
    return True


def emit_with_constant(b, name: str, op: str, data: str, value: np.ndarray, out: str, negate: bool = False) -> None:
    """`add_const` or `mul_const` of data and a constant broadcast to their common shape."""
    shape = _broadcast_shape(b.shape(data), value.shape)
    if shape != b.shape(data):
        data = _broadcast_data(b, name, data, shape)
    full = np.array(np.broadcast_to(value, shape), dtype=np.float32)
    attrs = AddConstAttrs(value=full, negate=negate) if op == "add_const" else MulConstAttrs(value=full)
    b.emit(Node(op, name, (data,), (out,), attrs), {out: shape})


def _broadcast_shape(data: tuple[int, ...], const: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(data, const))
    except ValueError:
        raise unsupported(f"operands of shapes {list(data)} and {list(const)}, which do not broadcast") from None


def _broadcast_data(b, name: str, data: str, shape: tuple[int, ...]) -> str:
    """The data repeated to the broadcast shape: a gather, copied by the backend."""
    size = int(np.prod(b.shape(data)))
    index = np.broadcast_to(np.arange(size).reshape(b.shape(data)), shape)
    out = f"{name}/broadcast"
    b.emit(Node("gather", name, (data,), (out,), GatherAttrs(index=index.ravel())), {out: shape})
    return out

"""Layout and shape-arithmetic operators.

Layout operators are plain numpy functions. On constants they fold; on a data tensor they run
on an array of element indices instead, and the result -- which input element lands where --
becomes one `gather` node (one per output for an operator of several, such as Split, whose
function returns a tuple). So Reshape, Transpose, Slice, Gather, Squeeze, Concat or Split on the
data path need no code of their own, and the backend turns each gather into an alias or copies.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable

import numpy as np
import onnx
from onnx.helper import tensor_dtype_to_np_dtype

from compiler.frontend.capability import ON_CONSTANTS, Constraint, NodeView, constants_from, declare
from compiler.frontend.limits import SUPPORTED_DTYPES, check_elements, check_shape_value
from compiler.frontend.registry import OPERATORS, apply, fold, fold_handler, operator, outputs_of
from compiler.ir import Node
from compiler.ops.gather import GatherAttrs
from isa.errors import RnnaccelError


def layout(fn: Callable, data_args: int = 1, count_attribute: str = "") -> Callable:
    """Register numpy layout function `fn` as an operator (see the module docstring). A function of
    several outputs returns a tuple, and each output the model names becomes a gather of its own;
    `count_attribute` names the attribute that, when the model leaves it out, is the node's number
    of outputs (Split's num_outputs: equal parts unless the model gives sizes)."""

    def handler(b, node, name: str, **attrs) -> None:
        if count_attribute and attrs.get(count_attribute) is None:
            attrs[count_attribute] = len(node.output)
        if all(b.is_const(n) for n in node.input):
            return fold(b, node, fn, **attrs)
        args, inputs, base = [], [], 0
        for tensor in node.input:
            if b.is_const(tensor):
                args.append(b.const(tensor))
                continue
            size = int(np.prod(b.shape(tensor)))
            args.append(np.arange(base, base + size, dtype=np.int64).reshape(b.shape(tensor)))
            inputs.append(tensor)
            base += size
        named = outputs_of(node, apply(fn, args, attrs))
        for output, index in named.items():
            node_name = name if len(node.output) == 1 else f"{name}/{output}"
            b.emit(Node("gather", node_name, tuple(inputs), (output,), GatherAttrs(index=index.ravel())),
                   {output: tuple(index.shape)})

    handler = functools.wraps(fn)(handler)  # so its signature, which lists the attributes, is fn's
    handler.kind = "layout"  # what --supported-ops and docs/operators.md say about it
    OPERATORS[fn.__name__] = handler
    operands = _operand_names(fn)[data_args:]
    if operands:
        declare({fn.__name__: (constants_from(data_args, operands),)})
    return fn


def _operand_names(fn: Callable) -> list[str]:
    """The ONNX names of a layout function's inputs, from its positional parameters (`axes_in` is the
    input `axes`, named apart from the attribute of older opsets)."""
    params = inspect.signature(fn).parameters.values()
    return [p.name.removesuffix("_in") for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]


@layout
def Identity(x):
    return x


@layout
def Dropout(x, ratio=None, training_mode=None, *, seed=None, is_test=None):
    return x  # in inference mode: see CONSTRAINTS


@layout
def Reshape(data, shape, *, allowzero=0):
    dims = [int(d) for d in shape]
    if not allowzero:
        dims = [data.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return data.reshape(dims)


@layout
def Flatten(x, *, axis=1):
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


@layout
def Squeeze(data, axes_in=None, *, axes=None):
    chosen = axes_in if axes_in is not None else axes
    if chosen is None:
        return np.squeeze(data)
    return np.squeeze(data, axis=tuple(int(a) for a in np.asarray(chosen).ravel()))


@layout
def Unsqueeze(data, axes_in=None, *, axes=None):
    chosen = [int(a) for a in np.asarray(axes_in if axes_in is not None else axes).ravel()]
    rank = data.ndim + len(chosen)
    targets = {a % rank for a in chosen}
    dims = iter(data.shape)
    return data.reshape([1 if i in targets else next(dims) for i in range(rank)])


@layout
def Transpose(data, *, perm=None):
    return np.transpose(data, perm)


@layout
def Slice(data, starts_in=None, ends_in=None, axes_in=None, steps_in=None, *, starts=None, ends=None, axes=None):
    starts = [int(s) for s in (starts_in if starts_in is not None else starts)]
    ends = [int(e) for e in (ends_in if ends_in is not None else ends)]
    chosen = axes_in if axes_in is not None else axes
    axes = [int(a) for a in chosen] if chosen is not None else list(range(len(starts)))
    steps = [int(s) for s in steps_in] if steps_in is not None else [1] * len(starts)
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[axis] = slice(*_clamped(start, end, step, data.shape[axis]))
    return data[tuple(index)]


def _clamped(start: int, end: int, step: int, dim: int) -> tuple[int, int | None, int]:
    """ONNX Slice clamps out-of-range starts and ends; Python's slice needs them in range."""
    start = max(-dim, min(start, dim))
    if step < 0 and end < -dim:
        return start, None, step
    return start, max(-dim - 1, min(end, dim)), step


@layout
def Gather(data, indices, *, axis=0):
    return np.take(data, np.asarray(indices, dtype=np.int64), axis=axis)


def Concat(*inputs, axis):
    return np.concatenate(inputs, axis=axis)


layout(Concat, data_args=1 << 30)


def Split(data, split_in=None, *, axis=0, split=None, num_outputs=None):
    """Cut along `axis` into the given sizes (the input of opset 13 on, the attribute before), or
    into num_outputs parts of ceil(dim / num_outputs), the last one smaller (opset 18's rule)."""
    dim = data.shape[axis]
    chosen = split_in if split_in is not None else split
    if chosen is None:
        chunk = max(1, -(-dim // num_outputs))
        chosen = [min(chunk, dim - start) for start in range(0, dim, chunk)]
    sizes = [int(s) for s in np.asarray(chosen).ravel()]
    if sum(sizes) != dim or min(sizes, default=0) < 0:
        raise ValueError(f"parts {sizes} do not add up to the {dim} elements of axis {axis}")
    return tuple(np.split(data, np.cumsum(sizes)[:-1], axis=axis))


layout(Split, count_attribute="num_outputs")


@layout
def Expand(data, shape):
    """Broadcast both ways: data [N, 1] expanded by [1, M] is [N, M], checked before it is made."""
    result = np.broadcast_shapes(np.shape(data), tuple(check_shape_value(shape)))
    check_elements("Expand's result", result)
    return np.array(np.broadcast_to(data, result))


@operator
def Cast(b, node, name: str, *, to, saturate=1, round_mode=None):
    dtype = np.dtype(tensor_dtype_to_np_dtype(to))
    if b.is_const(node.input[0]):
        return fold(b, node, lambda x: x.astype(dtype))
    OPERATORS["Identity"](b, node, name)


@operator
def Shape(b, node, name: str, *, start=0, end=None):
    b.consts[node.output[0]] = np.array(b.shape(node.input[0])[start:end], dtype=np.int64)


Cast.kind = "layout"  # on data it is an alias (float32 only): see opdoc.KINDS
Shape.kind = "fold"  # shapes are static, so its result always is a constant


def ConstantOfShape(shape, *, value=None):
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).ravel()
    return np.full(check_shape_value(shape), fill[0], dtype=fill.dtype)


def Constant(*, value=None, value_float=None, value_floats=None, value_int=None, value_ints=None):
    given = [v for v in (value, value_float, value_floats, value_int, value_ints) if v is not None]
    floats = value_float is not None or value_floats is not None
    return np.asarray(given[0], dtype=np.float32 if floats else None)


def _range(start, limit, delta):
    """np.arange, its length checked first: a model may ask for any."""
    if not np.all(np.isfinite([start, limit, delta])) or delta == 0:
        raise RnnaccelError(f"Range({start}, {limit}, {delta}) is not a finite sequence")
    check_elements("Range's result", [max(0, math.ceil((limit - start) / delta))])
    return np.arange(start, limit, delta, dtype=np.asarray(start).dtype)


FOLD_ONLY = {
    "ConstantOfShape": ConstantOfShape, "Constant": Constant,
    "Equal": np.equal, "Less": np.less, "Greater": np.greater,
    "Where": np.where, "Range": _range,
}
OPERATORS.update({name: fold_handler(fn) for name, fn in FOLD_ONLY.items()})


def _training(view: NodeView) -> bool:
    """Dropout's training_mode input (opset 12 on); a computed one is refused as an operand."""
    mode = view.input(2).value
    return mode is not None and bool(np.any(mode))


CONSTRAINTS = {
    "Dropout": (Constraint("training_mode must be false (Dropout in training mode is not supported)",
                           lambda v: not _training(v)),),
    "Cast": (Constraint("on computed data, 'to' must be float32 (a Cast of data is an alias)",
                        lambda v: v.input(0).is_const or v.attr("to") == onnx.TensorProto.FLOAT,
                        lambda v: SUPPORTED_DTYPES.get(v.attr("to"), v.attr("to"))),),
    **{name: (ON_CONSTANTS,) for name in FOLD_ONLY if name != "Constant"},  # Constant has no inputs
}
declare(CONSTRAINTS)

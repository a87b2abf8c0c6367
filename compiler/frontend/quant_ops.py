"""QuantizeLinear and DequantizeLinear: the Q/DQ pairs of a pre-quantised model (QDQ format).

ONNX Runtime's quantisation tools and quantisation-aware training write a model's integers as
DequantizeLinear of integer initialisers, and mark each activation's grid with a QuantizeLinear
-> DequantizeLinear pair. On constants both fold here, exactly as ONNX defines them, so a weight
arrives as float values on an integer grid, which quantisation keeps (passes/weights.grid_steps).
On computed data, QuantizeLinear becomes a `fake_quant` node (compiler/ops/fake_quant.py: the
tensor takes the pair's scale instead of a calibrated one) and its DequantizeLinear an alias.
A lone one on data (an integer graph output, or integers from the host) stays on the host.
"""

from __future__ import annotations

import numpy as np
from onnx.helper import tensor_dtype_to_np_dtype

from compiler.frontend.capability import GRAPH_OUTPUT, Constraint, NodeView, constant, declare, one_of
from compiler.frontend.registry import fold, operator, padded
from compiler.ir import Node
from compiler.ops.fake_quant import FakeQuantAttrs
from compiler.ops.gather import GatherAttrs
from isa.errors import RnnaccelError

# the integer types a quantised tensor may have, and their ranges
RANGES = {np.dtype(t): (int(np.iinfo(t).min), int(np.iinfo(t).max))
          for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32)}
DEFAULT_TYPE = np.dtype(np.uint8)  # QuantizeLinear's output without a zero point or output_dtype


def _per_axis(param: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    """A scale or zero point shaped to broadcast over x: a scalar as it is, a vector along `axis`."""
    param = np.asarray(param)
    if param.size == 1 and param.ndim <= 1:
        return param.reshape(())
    axis = axis + x.ndim if axis < 0 else axis
    if param.ndim != 1 or not 0 <= axis < x.ndim or x.shape[axis] != param.size:
        raise RnnaccelError(f"a scale or zero point of shape {list(param.shape)} for an input of shape "
                            f"{list(x.shape)} along axis {axis}")
    return param.reshape([-1 if d == axis else 1 for d in range(x.ndim)])


def _out_type(zero_point: np.ndarray | None, output_dtype: int) -> np.dtype:
    if zero_point is not None:
        return zero_point.dtype
    return np.dtype(tensor_dtype_to_np_dtype(output_dtype)) if output_dtype else DEFAULT_TYPE


def quantize_linear(x, scale, zero_point=None, *, axis=1, output_dtype=0) -> np.ndarray:
    """ONNX's QuantizeLinear: saturate(round_half_even(x / scale) + zero_point), in float32."""
    dtype = _out_type(zero_point, output_dtype)
    zp = 0 if zero_point is None else _per_axis(zero_point, x, axis).astype(np.int64)
    q = np.rint(np.asarray(x, np.float32) / _per_axis(scale, x, axis)).astype(np.int64) + zp
    return np.clip(q, *RANGES[dtype]).astype(dtype)


def dequantize_linear(x, scale, zero_point=None, *, axis=1) -> np.ndarray:
    """ONNX's DequantizeLinear: (x - zero_point) * scale, in float32 (the scale's type)."""
    zp = np.float32(0) if zero_point is None else _per_axis(zero_point, x, axis).astype(np.float32)
    scale = _per_axis(scale, x, axis)
    return ((np.asarray(x).astype(np.float32) - zp) * scale).astype(scale.dtype)


@operator
def QuantizeLinear(b, node, name: str, *, axis=1, saturate=1, block_size=0, output_dtype=0):
    """Folded on constants; on data, with its DequantizeLinear, the grid of one scale (fake_quant)."""
    x, scale, zero_point = padded(node.input, 3)
    if all(b.is_const(n) for n in node.input):
        return fold(b, node, lambda *args: quantize_linear(*args, axis=axis, output_dtype=output_dtype))
    qmin, qmax = RANGES[_out_type(b.const(zero_point), output_dtype)]
    step, zp = _grid(b, scale, zero_point)
    if not step > 0 or not np.isfinite(step):
        raise RnnaccelError(f"y_scale '{scale}' is {step:g}; a scale must be positive and finite")
    attrs = FakeQuantAttrs(step=step, zero_point=zp, qmin=qmin, qmax=qmax)
    b.emit(Node("fake_quant", name, (x,), (node.output[0],), attrs), {node.output[0]: b.shape(x)})


@operator
def DequantizeLinear(b, node, name: str, *, axis=1, block_size=0):
    """Folded on constants; on data, the second half of a Q/DQ pair: an alias of its result."""
    x, scale, zero_point = padded(node.input, 3)
    if all(b.is_const(n) for n in node.input):
        return fold(b, node, lambda *args: dequantize_linear(*args, axis=axis))
    pair = b.producers[x].attrs
    if _grid(b, scale, zero_point) != (pair.step, pair.zero_point):
        raise RnnaccelError(f"x_scale and x_zero_point differ from those of the QuantizeLinear that makes '{x}'")
    size = int(np.prod(b.shape(x)))
    b.emit(Node("gather", name, (x,), (node.output[0],), GatherAttrs(index=np.arange(size))),
           {node.output[0]: b.shape(x)})


def _grid(b, scale: str, zero_point: str) -> tuple[float, int]:
    """The one step and zero point of a pair on data (the constraints make each one value)."""
    return float(np.ravel(b.const(scale))[0]), int(np.ravel(b.const(zero_point))[0]) if zero_point else 0


def _one_value(view: NodeView) -> bool:
    """On data, one scale and one zero point: a per-axis pair whose entries are all equal is one."""
    return view.all_const or all(np.unique(view.input(i).value).size <= 1 for i in (1, 2) if view.input(i).is_const)


def _paired(view: NodeView) -> bool:
    return view.all_const or (bool(view.readers) and all(r == "DequantizeLinear" for r in view.readers))


def _quantised_type(view: NodeView) -> object:
    zero_point = view.input(2)
    return zero_point.dtype if zero_point.present else _out_type(None, view.attr("output_dtype", 0))


def _readers(view: NodeView) -> str:
    return ", ".join("a graph output" if r == GRAPH_OUTPUT else r for r in view.readers) or "nothing"


BLOCKS = one_of("block_size", (0,), 0, "block_size must be 0 (blocked quantisation is not supported)")
TYPES = ", ".join(str(t) for t in RANGES)
CONSTRAINTS = {
    "QuantizeLinear": (
        constant(1, "y_scale"), constant(2, "y_zero_point"), BLOCKS,
        Constraint(f"the quantised type must be one of {TYPES}", lambda v: _quantised_type(v) in RANGES,
                   _quantised_type),
        Constraint("on computed data, y_scale and y_zero_point must each be one value (equal per-axis entries)",
                   _one_value),
        Constraint("on computed data, only DequantizeLinear may read its result (a Q/DQ pair; integers "
                   "leave the chip only through the host)", _paired, _readers),
    ),
    "DequantizeLinear": (
        constant(1, "x_scale"), constant(2, "x_zero_point"), BLOCKS,
        Constraint("on computed data, x must come from a QuantizeLinear on the chip (a Q/DQ pair)",
                   lambda v: v.all_const or v.input(0).producer == "fake_quant"),
    ),
}
declare(CONSTRAINTS)

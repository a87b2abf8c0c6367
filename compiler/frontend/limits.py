"""Size and type limits on what a model may ask the compiler to allocate, checked before it does.

A hostile or broken model can claim an initialiser of 2^40 elements, an input of shape
[2^40, 4] or a ConstantOfShape of any size; numpy would try to allocate it (or the process would
be killed) long before any memory check of the target could say what is wrong. So every size a
model states is checked here first, against two bounds:

- MAX_TENSOR_ELEMENTS, independent of the target: more elements than the largest memory of any
  target holds (16 MiB of int8 weights), so no tensor above it could ever be compiled;
- the target's memories (`check_fits_target`, once the graph is imported): a weight matrix whose
  stored copy (as the requested compression stores it) exceeds weight memory, an input or output
  that cannot fit activation memory, a recurrent layer whose sequences or accumulators certainly
  cannot fit (lower bounds: the exact check comes with allocation, after the expensive passes).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from compiler.ir import Graph, Node
from compiler.ops import MATRIX_OPS, OPS, RECURRENT_OPS
from compiler.passes.compress import Compression, stored_bytes_at_least
from isa.errors import RnnaccelError
from isa.table import MEMORIES
from isa.target import Target

MAX_TENSOR_ELEMENTS = 1 << 24

_T = onnx.TensorProto
SUPPORTED_DTYPES = {_T.FLOAT: "float32", _T.DOUBLE: "float64", _T.FLOAT16: "float16", _T.INT8: "int8",
                    _T.INT16: "int16", _T.INT32: "int32", _T.INT64: "int64", _T.UINT8: "uint8",
                    _T.UINT16: "uint16", _T.UINT32: "uint32", _T.UINT64: "uint64", _T.BOOL: "bool"}


def check_elements(label: str, dims: Iterable[int]) -> int:
    """The element count of a tensor of shape `dims`, if it is within MAX_TENSOR_ELEMENTS."""
    dims = [int(d) for d in dims]
    if any(d < 0 for d in dims):
        raise RnnaccelError(f"{label} has a negative dimension {dims}")
    count = math.prod(dims)
    if count > MAX_TENSOR_ELEMENTS:
        raise RnnaccelError(f"{label} has {count} elements {dims}, more than the limit of {MAX_TENSOR_ELEMENTS} "
                            "(no target's memory could hold it)")
    return count


def check_tensor_header(tensor: onnx.TensorProto, what: str) -> int:
    """A TensorProto's element count from its header alone: a supported type and a bounded size."""
    if tensor.data_type not in SUPPORTED_DTYPES:
        kind = _T.DataType.Name(tensor.data_type) if tensor.data_type in _T.DataType.values() else tensor.data_type
        raise RnnaccelError(f"{what} '{tensor.name}' has data type {kind}, which is not supported "
                            f"(supported: {', '.join(SUPPORTED_DTYPES.values())})")
    return check_elements(f"{what} '{tensor.name}'", tensor.dims)


def tensor_value(tensor: onnx.TensorProto, what: str = "tensor") -> np.ndarray:
    """The tensor as an array, its type and size checked before numpy allocates anything."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        raise RnnaccelError(f"{what} '{tensor.name}' stores its data in an external file: compile the model "
                            "from its path, with the file in the model's folder")
    check_tensor_header(tensor, what)
    try:
        return numpy_helper.to_array(tensor)
    except Exception as exc:  # noqa: BLE001  (malformed tensors fail in many ways inside onnx)
        raise RnnaccelError(f"tensor '{tensor.name}' cannot be read ({type(exc).__name__})") from None


def check_shape_value(shape: object) -> list[int]:
    """A shape given as data (ConstantOfShape, Expand) as ints, if a tensor of it is within the limit."""
    dims = [int(d) for d in list(shape)]  # type: ignore[call-overload]
    check_elements("the requested shape", dims)
    return dims


def check_fits_target(graph: Graph, target: Target, streaming: bool = False,
                      compression: Compression | None = None) -> None:
    """Refuse, before calibrating and quantising anything, what certainly cannot fit: tensors that
    alone exceed a memory, and what a recurrent layer needs at the least while it runs. Every
    figure is a lower bound of what allocation will find, so no model that fits is refused."""
    for name in (*graph.inputs, *graph.outputs):
        if graph.size(name) > target.act_elems:
            raise RnnaccelError(f"{_io(graph, name)} '{name}' {list(graph.shapes[name])} alone needs "
                                f"{MEMORIES['amem'].shortfall(graph.size(name), target)}")
    for node in graph.nodes:
        _check_node(node, target, streaming, compression)
        if node.op in RECURRENT_OPS and not streaming:
            _check_sequences(graph, node, target)


def node_capacity_problem(node: Node, shapes: dict[str, tuple[int, ...]], target: Target,
                          streaming: bool = False, compression: Compression | None = None) -> str | None:
    """Why one IR node alone cannot fit the target (None if it may): its weights, its accumulators,
    its input sequence. The partitioner asks this per node, before any graph exists, so the output
    sequence (whole only when a non-layout op reads it) is left to check_fits_target."""
    try:
        _check_node(node, target, streaming, compression)
        if node.op in RECURRENT_OPS:
            x = node.inputs[0]
            if not streaming and x in shapes and math.prod(shapes[x]) > target.act_elems:
                raise RnnaccelError(f"node '{node.source}': its input sequence {x} {list(shapes[x])} needs at least "
                                    f"{MEMORIES['amem'].shortfall(math.prod(shapes[x]), target)}")
    except RnnaccelError as exc:
        return str(exc).removeprefix(f"node '{node.source}': ")
    return None


def _check_node(node: Node, target: Target, streaming: bool, compression: Compression | None) -> None:
    """What one node needs whatever the graph around it: its weights as they will be stored, and a
    recurrent layer's accumulators (a stream runs one frame of each sequence at a time)."""
    if node.op in MATRIX_OPS:
        _check_weights(node.source, OPS[node.op].parameters(node.attrs).weights, target, compression)
    if node.op in RECURRENT_OPS:
        _check_accumulators(node, target, 1 if streaming else max(node.attrs.seq_lens, default=0))


def _check_accumulators(node: Node, target: Target, steps: int) -> None:
    """A direction accumulates W x into one buffer of G*H entries, and R h into another. Allocation
    may give them one place while a step's W x is read before its R h is made; but from the third
    step of a sequence on, R h of an earlier step comes before a later W x, so both are live."""
    rows = node.attrs.W.shape[1]
    need = rows * (2 if steps >= 3 else min(steps, 1))
    if need > target.acc_entries:
        raise RnnaccelError(f"node '{node.source}': its accumulators (W x and R h, {rows} rows each) need at least "
                            f"{MEMORIES['acc'].shortfall(need, target)}")


def _check_sequences(graph: Graph, node: Node, target: Target) -> None:
    """The input sequence is read at every step, so it is whole in activation memory while the layer
    runs; so is the output sequence Y, unless only layout operators read it (they may pick a few
    steps, and trim_sequence_outputs then keeps only those)."""
    y = node.outputs[0]
    whole_y = y and (y in graph.outputs or any(OPS[r.op].kind != "layout" for r in graph.consumers(y)))
    sequences = [name for name in (node.inputs[0], y if whole_y else "") if name in graph.shapes]
    need = sum(graph.size(name) for name in sequences)
    if need > target.act_elems:
        shown = " and ".join(f"{name} {list(graph.shapes[name])}" for name in sequences)
        raise RnnaccelError(f"node '{node.source}': its sequences ({shown}) need at least "
                            f"{MEMORIES['amem'].shortfall(need, target)}")


def _check_weights(source: str, matrices: dict, target: Target, compression: Compression | None) -> None:
    stored = sum(stored_bytes_at_least(m, target, compression) for m in matrices.values())
    if stored > target.weight_mem_bytes:
        shapes = ", ".join(f"{k} {list(m.shape)}" for k, m in matrices.items())
        raise RnnaccelError(f"node '{source}': its weights ({shapes}) alone need "
                            f"{MEMORIES['wmem'].shortfall(stored, target, _stored_as(target, compression))}")


def _stored_as(target: Target, compression: Compression | None) -> str:
    if compression is None:
        return f" at {target.weight_bits} bits"
    pruned = f", {compression.prune:g} pruned" if compression.prune else ""
    return f" at least, as {compression.bits}-bit codebook indices{pruned}"


def _io(graph: Graph, name: str) -> str:
    return "input" if name in graph.inputs else "output"

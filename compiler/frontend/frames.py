"""The one-frame model a streaming compile imports: the time axis of the graph inputs shrunk to
one frame, and the shapes the exporter wrote into the model as constants made to agree with it.

Exporters write the sequence length into a fixed-shape model in two ways. The TorchScript
exporter computes shapes from the data (Shape, Gather, Concat): the import recomputes them from
the one-frame input, so they need nothing. The dynamo exporter writes them as constants: an
LSTM's output [T, 1, B, H] is transposed and then reshaped by the constant [T, B, H]. The rule:
a constant shape (an initialiser, or a Constant node's value) that Reshape or Expand applies to
data computed from a graph input -- data whose time axis has shrunk -- holds the number of steps
T at its time axis, and that entry becomes 1. Shape arithmetic computed from the data (a Shape
node's result) is no constant of the model and follows by itself. A shape with several entries
of T is refused: which of them is time cannot be told. A model none of whose input axes is time
is left as it is (the streaming pass refuses it: its layers still run T steps).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from compiler.frontend.onnx_import import with_input_shapes
from compiler.frontend.registry import DEFAULT_DOMAINS
from isa.errors import RnnaccelError

Shapes = dict[str, tuple[int, ...]]
SHAPE_INPUTS = {"Reshape": 1, "Expand": 1}  # operator -> its input that holds the output's shape
SHAPE_OF = ("Shape", "Size")  # read data, but their results are shapes the import recomputes


def one_frame_model(model: onnx.ModelProto, whole: Shapes, frame: Shapes) -> onnx.ModelProto:
    """A copy of the model whose inputs have the `frame` shapes (the `whole` ones with the time
    axis made 1), its constant shapes on the data path rewritten by the rule above."""
    copy = with_input_shapes(model, frame)
    steps = {whole[name][axis] for name in frame for axis, size in enumerate(frame[name]) if size != whole[name][axis]}
    if len(steps) != 1:
        return copy
    (time,) = steps
    constants, data = _shape_constants(copy.graph), _data_path(copy.graph)
    for node in copy.graph.node:
        index = SHAPE_INPUTS.get(node.op_type) if node.domain in DEFAULT_DOMAINS else None
        if index is not None and len(node.input) > index and node.input[0] in data \
                and node.input[index] in constants:
            node.input[index] = _one_frame_shape(copy.graph, node, constants[node.input[index]], time)
    return copy


def _one_frame_shape(graph: onnx.GraphProto, node: onnx.NodeProto, constant: onnx.TensorProto, time: int) -> str:
    """The name of the shape `node` reads with its entry of `time` made 1, added to the graph's
    initialisers once; the constant's own name if it holds no such entry."""
    value = numpy_helper.to_array(constant)
    hits = np.flatnonzero(value == time)
    if len(hits) > 1:
        raise RnnaccelError(f"--streaming: the constant shape '{constant.name}' {value.tolist()} of node "
                            f"'{node.name}' ({node.op_type}) has several entries of {time}, the number of steps; "
                            "cannot tell which one is time")
    if not len(hits):
        return constant.name
    name = f"{constant.name}/one_frame"
    if all(init.name != name for init in graph.initializer):
        graph.initializer.append(numpy_helper.from_array(np.where(value == time, 1, value).astype(value.dtype), name))
    return name


def _shape_constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """The model's integer vectors by name: initialisers and the values of Constant nodes."""
    tensors = list(graph.initializer)
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS:
            tensors += [_named(attr.t, node.output[0]) for attr in node.attribute if attr.name == "value"]
    return {t.name: t for t in tensors if t.data_type == onnx.TensorProto.INT64 and len(t.dims) == 1}


def _named(tensor: onnx.TensorProto, name: str) -> onnx.TensorProto:
    copy = onnx.TensorProto()
    copy.CopyFrom(tensor)
    copy.name = name
    return copy


def _data_path(graph: onnx.GraphProto) -> set[str]:
    """The tensors computed from a graph input, shapes read off it (SHAPE_OF) excepted."""
    data = {value.name for value in graph.input} - {init.name for init in graph.initializer}
    for node in graph.node:
        if node.op_type not in SHAPE_OF and any(name in data for name in node.input):
            data.update(name for name in node.output if name)
    return data

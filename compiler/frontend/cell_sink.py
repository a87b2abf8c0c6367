"""One projection of a whole sequence, sliced per step, as a projection per step.

PyTorch's dynamo export of nn.RNN projects every x_t in one MatMul over [T, B, I] and slices the
result per step (Slice on axis 0, then Squeeze), so no step owns its input projection. Here each
Squeeze(Slice(x @ W + b)) becomes Gemm(Squeeze(Slice(x)), W, b): the steps can then be recognised
like a Python loop's, and the sequence projection dies with its last slice (cells.py keeps the
sunk model only when every step was recognised).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from compiler.frontend.cell_graph import GraphIndex
from compiler.frontend.cell_step import content_name

SUNK = "/sunk"  # the suffix of a sunk step's node names


def sink_projections(model: onnx.ModelProto, g: GraphIndex, opset: int) -> onnx.ModelProto | None:
    """The model with every per-step slice of a sequence projection sunk, or None if there is none."""
    sunk = {i: nodes for i, nodes in ((i, _sunk(g, i, opset)) for i, n in enumerate(g.nodes)
                                      if n.op_type == "Squeeze") if nodes}
    if not sunk:
        return None
    slices = {g.producer[g.nodes[i].input[0]] for i in sunk}
    body = [n for i, node in enumerate(g.nodes) if i not in slices
            for n in (sunk[i][0] if i in sunk else [node])]
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(body)
    names = {t.name for t in out.graph.initializer}
    out.graph.initializer.extend(t for nodes, inits in sunk.values() for t in inits if t.name not in names
                                 and not names.add(t.name))
    return out


def _sunk(g: GraphIndex, index: int, opset: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]] | None:
    """Slice, Squeeze and Gemm of one step for a Squeeze(Slice(projection, t:t+1, axis 0))."""
    squeeze = g.nodes[index]
    axes = g.constants.get(squeeze.input[1]) if len(squeeze.input) > 1 else np.array(
        next((a.ints for a in squeeze.attribute if a.name == "axes"), []))
    step = _leading_slice(g, squeeze.input[0])
    if step is None or axes is None or list(axes) != [0] or len(g.consumers.get(squeeze.input[0], ())) != 1:
        return None
    source, start = step
    form = g.affine(source)
    if form is None or len(form.terms) != 1 or form.bias.ndim > 1:
        return None
    ((x, weight),) = form.terms.items()
    if len(g.shapes.get(x, ())) != 3 or x in g.constants:
        return None
    name, bias = squeeze.output[0], np.broadcast_to(form.bias, weight.shape[1:]).astype(np.float32)
    inits = [numpy_helper.from_array(np.array(v, np.int64), f"{name}{SUNK}/{k}") for k, v in
             (("start", [start]), ("end", [start + 1]), ("axis", [0]))]
    inits += [numpy_helper.from_array(v, content_name(f"cell/{k}", v)) for k, v in
              (("proj", weight.astype(np.float32)), ("bias", bias))]
    squeezed = (helper.make_node("Squeeze", [f"{name}{SUNK}/x_t1", f"{name}{SUNK}/axis"], [f"{name}{SUNK}/x_t"])
                if opset >= 13 else
                helper.make_node("Squeeze", [f"{name}{SUNK}/x_t1"], [f"{name}{SUNK}/x_t"], axes=[0]))
    sliced = helper.make_node("Slice", [x, *(t.name for t in inits[:3])], [f"{name}{SUNK}/x_t1"],
                              f"{name}{SUNK}/Slice")
    nodes = [sliced, squeezed,
             helper.make_node("Gemm", [f"{name}{SUNK}/x_t", inits[3].name, inits[4].name], [name], f"{name}{SUNK}")]
    return nodes, inits


def _leading_slice(g: GraphIndex, name: str) -> tuple[str, int] | None:
    """(sliced tensor, t) when `name` is Slice(tensor, [t], [t+1], axes=[0]) (unit steps)."""
    index = g.producer.get(name)
    node = g.nodes[index] if index is not None else None
    if node is None or node.op_type != "Slice" or len(node.input) < 4:
        return None
    starts, ends, axes = (g.constants.get(n) for n in node.input[1:4])
    steps = g.constants.get(node.input[4]) if len(node.input) > 4 and node.input[4] else np.ones(1)
    if any(v is None or v.size != 1 for v in (starts, ends, axes, steps)) or int(axes[0]) != 0 or int(steps[0]) != 1:
        return None
    start = int(starts[0])
    return (node.input[0], start) if int(ends[0]) == start + 1 and start >= 0 else None

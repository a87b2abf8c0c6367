"""One projection of a whole sequence, sliced per step, as a projection per step.

PyTorch's dynamo export of nn.RNN projects every x_t in one MatMul over [T, B, I] and slices the
result per step (Slice on axis 0, then Squeeze), so no step owns its input projection. Here each
Squeeze(Slice(x @ W + b)) becomes Gemm(Squeeze(Slice(x)), W, b): the steps can then be recognised
like a Python loop's, and the sequence projection dies with its last slice (cells.py sinks again
without a projection one of whose steps was not recognised, so that one stays as it was).

A reverse direction slices the projection after reversing it (a Slice with step -1): its step t
reads x[T-1-t]. A stacked bidirectional layer projects the Concat of the layer below's two
directions: each step reads that Concat's slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from compiler.frontend.cell_graph import Affine, GraphIndex
from compiler.frontend.cell_step import content_name

SUNK = "/sunk"  # the suffix of a sunk step's names


@dataclass(frozen=True)
class Sunk:
    """A model with sequence projections sunk, and the projection each sunk step's Gemm came from."""

    model: onnx.ModelProto
    projections: dict[str, str]  # sunk Gemm's node name -> the sequence projection it replaces

    def unrecognised(self, model: onnx.ModelProto) -> set[str]:
        """The projections with a sunk step that is still there in `model`: one that is no cell."""
        return {self.projections[n.name] for n in model.graph.node if n.name in self.projections}


def sink_projections(model: onnx.ModelProto, g: GraphIndex, opset: int,
                     kept: frozenset[str] = frozenset()) -> Sunk | None:
    """The model with every per-step slice of a sequence projection (but those `kept`) sunk, or
    None if there is none."""
    sunk = {i: found for i, found in ((i, _sunk(g, i, opset)) for i, n in enumerate(g.nodes)
                                      if n.op_type == "Squeeze") if found and found[2] not in kept}
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
    out.graph.initializer.extend(t for _, inits, _ in sunk.values() for t in inits if t.name not in names
                                 and not names.add(t.name))
    return Sunk(out, {nodes[-1].name: projection for nodes, _, projection in sunk.values()})


def _sunk(g: GraphIndex, index: int, opset: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str] | None:
    """Slice, Squeeze and Gemm of one step for a Squeeze(Slice(projection, t:t+1, axis 0)), their
    constants, and the projection."""
    squeeze = g.nodes[index]
    axes = g.constants.get(squeeze.input[1]) if len(squeeze.input) > 1 else np.array(
        next((a.ints for a in squeeze.attribute if a.name == "axes"), []))
    step = _leading_slice(g, squeeze.input[0])
    if step is None or axes is None or list(axes) != [0] or len(g.consumers.get(squeeze.input[0], ())) != 1:
        return None
    source, start = step
    form = g.affine(source)
    projected = None if form is None or form.bias.ndim > 1 else _projected(g, form)
    if projected is None:
        return None
    x, weight = projected
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
    return nodes, inits, source


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
    return _unreversed(g, node.input[0], start) if int(ends[0]) == start + 1 and start >= 0 else None


def _unreversed(g: GraphIndex, name: str, index: int) -> tuple[str, int]:
    """(tensor, index along axis 0) of `name`'s index: through a Slice that reverses all of axis 0
    (dynamo's flip before a reverse direction's steps), index t of it is index T-1-t before it."""
    producer = g.producer.get(name)
    node = g.nodes[producer] if producer is not None else None
    length = (g.shapes.get(node.input[0]) or (0,))[0] if node is not None and node.op_type == "Slice" else 0
    params = [g.constants.get(n) for n in node.input[1:5]] if length and len(node.input) == 5 else []
    if len(params) != 4 or any(v is None or v.size != 1 for v in params):
        return name, index
    start, end, axis, step = (int(v.reshape(-1)[0]) for v in params)
    whole = start in (-1, length - 1) or start >= length
    if axis != 0 or step != -1 or not whole or end >= -length:
        return name, index
    return node.input[0], length - 1 - index


def _projected(g: GraphIndex, form: Affine) -> tuple[str, np.ndarray] | None:
    """(tensor, weight) of a projection of one tensor: of one source, or of a last-axis Concat of
    several (a stacked layer reading both directions of the one below) as a projection of the Concat."""
    if len(form.terms) == 1:
        return next(iter(form.terms.items()))
    for index in form.nodes:
        node = g.nodes[index]
        if node.op_type == "Concat" and len(node.input) == len(form.terms) and set(node.input) == set(form.terms):
            return node.output[0], np.concatenate([form.terms[part] for part in node.input])
    return None

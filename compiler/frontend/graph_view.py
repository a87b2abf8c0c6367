"""A read-only view of an ONNX graph for model-to-model rewrites: who makes and who reads each
tensor, static shapes, constant values, and where a tensor's values came from.

Exporters put layout nodes between the places a value is made and read (a Squeeze then an
Unsqueeze, a Slice that keeps everything, a Transpose that only moves axes of size 1); none of them
changes the values or their order, so `source` looks through them to the tensor that was made.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper

from compiler.frontend.freeze import ConstantFolder
from compiler.frontend.onnx_import import declared_dims, default_opset
from compiler.frontend.partition import node_reads as reads
from compiler.frontend.split import topological

SAME_ORDER = ("Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten")  # values and their order kept


class GraphView:
    """Producers, consumers, static shapes and constants of one graph, computed once."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.opset = default_opset(model) or 1
        self.nodes = list(graph.node)
        self.producers = {out: i for i, node in enumerate(self.nodes) for out in node.output if out}
        self.consumers: dict[str, list[int]] = {}
        for i, node in enumerate(self.nodes):
            for name in dict.fromkeys(reads(node)):
                self.consumers.setdefault(name, []).append(i)
        self.graph_outputs = {v.name for v in graph.output}
        self.shapes = _static_shapes(model)
        self.folder = ConstantFolder(graph, self.opset)

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.shapes.get(name)

    def const(self, name: str) -> np.ndarray | None:
        return self.folder.value(name) if name else None

    def private(self, name: str) -> bool:
        """True when exactly one node reads the tensor and the graph does not output it."""
        return len(self.consumers.get(name, ())) == 1 and name not in self.graph_outputs

    def source(self, name: str) -> tuple[str, list[str]]:
        """The tensor whose values, in the same order, `name` holds, and the tensors on the way
        (`name` first, the source last)."""
        path = [name]
        while (node := self.producer(path[-1])) is not None and self._keeps_order(node):
            path.append(node.input[0])
        return path[-1], path

    def producer(self, name: str) -> onnx.NodeProto | None:
        index = self.producers.get(name)
        return None if index is None else self.nodes[index]

    def ancestors(self, name: str) -> set[int]:
        """The indices of every node that `name` depends on."""
        seen: set[int] = set()
        stack = [name]
        while stack:
            index = self.producers.get(stack.pop())
            if index is not None and index not in seen:
                seen.add(index)
                stack.extend(reads(self.nodes[index]))
        return seen

    def slice_range(self, node: onnx.NodeProto) -> dict[int, tuple[int, int]] | None:
        """A Slice's range per axis of its input, (start, stop) after ONNX's clamping, for a Slice
        with constant parameters, steps of 1 and a static input shape; else None."""
        dims = self.shape(node.input[0])
        params = self._slice_params(node)
        if dims is None or params is None:
            return None
        starts, ends, axes, steps = params
        if any(s != 1 for s in steps) or len(starts) != len(ends) or len(axes) != len(starts):
            return None
        ranges = {}
        for start, end, given in zip(starts, ends, axes):
            axis = given + len(dims) if given < 0 else given
            if not 0 <= axis < len(dims):
                return None
            ranges[axis] = tuple(int(np.clip(v + dims[axis] if v < 0 else v, 0, dims[axis])) for v in (start, end))
        return ranges

    def _slice_params(self, node: onnx.NodeProto) -> tuple[list[int], ...] | None:
        """starts, ends, axes, steps: attributes before opset 10, constant inputs since."""
        if self.opset < 10:
            attrs = attributes(node)
            starts = list(attrs.get("starts", ()))
            return starts, list(attrs.get("ends", ())), list(attrs.get("axes", range(len(starts)))), [1] * len(starts)
        values = [self.const(at(node.input, k)) for k in range(1, 5)]
        if values[0] is None or values[1] is None or any(v is None for v, k in zip(values[2:], (3, 4))
                                                         if at(node.input, k)):
            return None
        starts, ends = (v.reshape(-1).tolist() for v in values[:2])
        axes = values[2].reshape(-1).tolist() if values[2] is not None else list(range(len(starts)))
        steps = values[3].reshape(-1).tolist() if values[3] is not None else [1] * len(starts)
        return starts, ends, axes, steps

    def _keeps_order(self, node: onnx.NodeProto) -> bool:
        """True for a node whose output holds its first input's values in the same order."""
        if node.domain not in ("", "ai.onnx") or not node.input:
            return False
        if node.op_type in SAME_ORDER:
            return True
        dims = self.shape(node.input[0])
        if node.op_type == "Transpose" and dims is not None:
            perm = attributes(node).get("perm", range(len(dims))[::-1])
            moved = [axis for axis in perm if dims[axis] != 1]
            return moved == sorted(moved)
        if node.op_type == "Slice" and dims is not None:
            ranges = self.slice_range(node)
            return ranges is not None and all(r == (0, dims[a]) for a, r in ranges.items())
        return False


def attributes(node: onnx.NodeProto) -> dict[str, object]:
    """A node's attributes as plain, hashable values (lists become tuples)."""
    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def at(names: Sequence[str], index: int) -> str:
    """A node's input or output name at `index`; "" when it is absent or left out."""
    return names[index] if index < len(names) else ""


def sorted_live(nodes: Sequence[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """The nodes the graph's outputs depend on, topologically sorted, otherwise in their order."""
    producers = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    live: set[int] = set()
    stack = [producers[name] for name in outputs if name in producers]
    while stack:
        index = stack.pop()
        if index not in live:
            live.add(index)
            stack.extend(producers[n] for n in reads(nodes[index]) if n in producers)
    return topological([nodes[i] for i in sorted(live)])


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape that shape inference can fix; none when it fails on the model."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001  (inference raises its own and C++ errors; then nothing is known)
        return {}
    graph = inferred.graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        dims = declared_dims(value)
        if dims is not None and None not in dims:
            shapes[value.name] = tuple(dims)
    return shapes

"""Trim recurrent outputs to what is read: a layer whose Y only feeds layout operators that pick
a few timesteps (PyTorch's `y[:, -1]`) keeps just those steps' hidden states. The rest alternate
between two buffers, so activation memory no longer grows with the sequence and the steps in
between fold into one loop.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from compiler.ir import Graph, Node
from compiler.ops import RECURRENT_OPS
from compiler.ops.gather import GatherAttrs


def fuse_gathers(graph: Graph) -> Graph:
    """A gather reading other gathers' outputs, which nothing else reads, becomes one gather:
    exporters chain Transpose, Reshape and Gather around a recurrent layer's output, and a Conv's
    padded copy (of its input and a run of zeros) reads the Transpose before it.

    One walk in graph order: a gather's input gathers have already absorbed their own chains, so a
    chain of any length folds into one node in time linear in the nodes."""
    readers = Counter(name for node in graph.nodes for name in node.inputs)
    kept: list[Node | None] = []
    gather_at: dict[str, int] = {}  # a gather's output -> its position in `kept`
    for node in graph.nodes:
        fused = node
        if node.op == "gather":
            positions = {j: gather_at[name] for j, name in enumerate(node.inputs)
                         if name in gather_at and name not in graph.outputs and readers[name] == 1}
            if positions:
                fused = _spliced(graph, node, {j: kept[p] for j, p in positions.items()})
                for p in positions.values():
                    kept[p] = None
            gather_at[fused.outputs[0]] = len(kept)
        kept.append(fused)
    return graph.replace(nodes=tuple(n for n in kept if n is not None))


def _spliced(graph: Graph, outer: Node, inners: dict[int, Node]) -> Node:
    """`outer` reading the inputs of its input gathers `inners` (by input position) in their place,
    each tensor once: each element of its old inputs laid end to end mapped to its place in the new."""
    bases: dict[str, int] = {}  # each new input's first element in the new index space

    def based(names: tuple[str, ...]) -> np.ndarray:
        """Where the elements of `names` laid end to end lie among the new inputs."""
        for name in names:
            bases.setdefault(name, sum(graph.size(n) for n in bases))
        return np.concatenate([np.arange(graph.size(n)) + bases[n] for n in names])

    where = [based(inners[j].inputs)[inners[j].attrs.index] if j in inners else based((name,))
             for j, name in enumerate(outer.inputs)]
    index = np.concatenate(where)[outer.attrs.index]
    inputs = list(bases)
    return Node("gather", outer.source, tuple(inputs), outer.outputs, GatherAttrs(index=index))


def trim_sequence_outputs(graph: Graph) -> Graph:
    graph = fuse_gathers(graph)
    for node in graph.nodes:
        if node.op in RECURRENT_OPS and node.outputs[0]:
            graph = _trim(graph, node)
    return graph


def _trim(graph: Graph, node: Node) -> Graph:
    y = node.outputs[0]
    readers = graph.consumers(y)
    if y in graph.outputs or not readers or any(r.op != "gather" for r in readers):
        return graph
    steps = sorted({int(t) for r in readers for t in _steps_read(graph, node, r)})
    if len(steps) >= node.attrs.steps:
        return graph
    kept = f"{y}@steps"
    shape = list(graph.shapes[y])
    shape[node.attrs.layout] = len(steps)
    shapes = {**graph.shapes, kept: tuple(shape)}
    attrs = dataclasses.replace(node.attrs, y_steps=tuple(steps))
    renamed = Node(node.op, node.source, node.inputs, (kept, *node.outputs[1:]), attrs)
    nodes = tuple(renamed if n is node else _reindexed(graph, n, y, kept, node, steps) if n in readers else n
                  for n in graph.nodes)
    return graph.replace(nodes=nodes, shapes=shapes)


def _segments(graph: Graph, reader: Node) -> list[tuple[str, int, int]]:
    """(input, first global index, size) of each input of a gather's concatenated index space."""
    out, base = [], 0
    for name in reader.inputs:
        out.append((name, base, graph.size(name)))
        base += graph.size(name)
    return out


def _steps_read(graph: Graph, node: Node, reader: Node) -> np.ndarray:
    index = reader.attrs.index
    for name, base, size in _segments(graph, reader):
        if name == node.outputs[0]:
            mine = index[(index >= base) & (index < base + size)] - base
            return _step_of(graph, node, mine)
    return np.zeros(0, np.int64)


def _step_of(graph: Graph, node: Node, flat: np.ndarray) -> np.ndarray:
    shape = graph.shapes[node.outputs[0]]
    return np.unravel_index(flat, shape)[node.attrs.layout] if flat.size else flat


def _reindexed(graph: Graph, reader: Node, y: str, kept: str, node: Node, steps: list[int]) -> Node:
    """The reader with Y replaced by the kept steps and its index map rewritten to match."""
    layout, position = node.attrs.layout, {t: i for i, t in enumerate(steps)}
    compact = list(graph.shapes[y])
    compact[layout] = len(steps)
    new_index = reader.attrs.index.copy()
    new_base = 0
    for name, base, size in _segments(graph, reader):
        inside = (reader.attrs.index >= base) & (reader.attrs.index < base + size)
        local = reader.attrs.index[inside] - base
        if name == y:
            coords = list(np.unravel_index(local, graph.shapes[y]))
            coords[layout] = np.array([position[int(t)] for t in coords[layout]], np.int64)
            local = np.ravel_multi_index(coords, compact)
        new_index[inside] = local + new_base
        new_base += int(np.prod(compact)) if name == y else size
    inputs = tuple(kept if n == y else n for n in reader.inputs)
    return Node(reader.op, reader.source, inputs, reader.outputs, GatherAttrs(index=new_index))

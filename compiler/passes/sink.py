"""Sink pointwise ops below gathers: a Relu (or a table, or a Clip) applied to a layout copy is
applied to what the copy reads instead.

A convolution ends in one gather putting its channels-last output into ONNX's [N, C, ...] order,
and the next convolution begins with one gathering it back channels-last; a Relu between them
keeps the two apart, and each is an element-by-element copy (thousands of one-element VMOVs).
With the Relu applied first, the two gathers meet and passes/trim.py fuses them into one that
copies whole runs. Only a gather that reads every element of its inputs is sunk below, so the
pointwise op never does more work than before; its copies' outputs are named `<output>@<k>`,
which calibration knows as its output (passes/calibrate.py `derived`).
"""

from __future__ import annotations

import numpy as np

from compiler.ir import Graph, Node
from compiler.ops import OPS


def sink_pointwise(graph: Graph) -> Graph:
    """Each pointwise node whose input is a gather's output that only it reads, moved onto the
    gather's inputs, the gather then making the pointwise node's output; repeated until none moves."""
    while (pair := _next_pair(graph)) is not None:
        graph = _sunk(graph, *pair)
    return graph


def _next_pair(graph: Graph) -> tuple[Node, Node] | None:
    producers = {out: node for node in graph.nodes for out in node.outputs}
    for node in graph.nodes:
        gather = producers.get(node.inputs[0]) if OPS[node.op].pointwise else None
        if gather is not None and gather.op == "gather" and _reads_all(graph, gather) \
                and len(graph.consumers(gather.outputs[0])) == 1 and gather.outputs[0] not in graph.outputs:
            return node, gather
    return None


def _reads_all(graph: Graph, gather: Node) -> bool:
    """True when the gather reads every element of its inputs (a permutation, or more)."""
    total = sum(graph.size(name) for name in gather.inputs)
    return np.unique(gather.attrs.index).size == total


def _sunk(graph: Graph, node: Node, gather: Node) -> Graph:
    """The graph with `node` applied to each of `gather`'s inputs and `gather` reading the results."""
    out = node.outputs[0]
    copies = [Node(node.op, node.source, (name,), (f"{out}@{k}",), node.attrs) for k, name in enumerate(gather.inputs)]
    moved = Node("gather", gather.source, tuple(c.outputs[0] for c in copies), (out,), gather.attrs)
    shapes = {name: shape for name, shape in graph.shapes.items() if name != gather.outputs[0]}
    shapes.update({c.outputs[0]: graph.shapes[c.inputs[0]] for c in copies})
    nodes = []
    for n in graph.nodes:
        if n is gather:
            nodes.extend(copies)
        elif n is node:
            nodes.append(moved)
        else:
            nodes.append(n)
    return graph.replace(nodes=tuple(nodes), shapes=shapes)

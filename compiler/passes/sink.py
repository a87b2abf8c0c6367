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
    gather's inputs, the gather then making the pointwise node's output. One walk: a node moves
    past one gather at most, so a chain of them costs time linear in its length."""
    moves = {}  # id of a gather -> the pointwise node that moves before it
    for node in graph.nodes:
        gather = graph.producer(node.inputs[0]) if OPS[node.op].pointwise else None
        if gather is not None and gather.op == "gather" and gather.outputs[0] not in graph.outputs \
                and len(graph.consumers(gather.outputs[0])) == 1 and _reads_all(graph, gather):
            moves[id(gather)] = node
    if not moves:
        return graph
    return _moved(graph, moves)


def _reads_all(graph: Graph, gather: Node) -> bool:
    """True when the gather reads every element of its inputs (a permutation, or more)."""
    total = sum(graph.size(name) for name in gather.inputs)
    return np.unique(gather.attrs.index).size == total


def _moved(graph: Graph, moves: dict[int, Node]) -> Graph:
    """The graph with each moving pointwise node applied to each input of its gather, in the
    gather's place, and the gather in the pointwise node's place, making its output."""
    shapes, nodes, gathers = dict(graph.shapes), [], {id(node): gather for gather in graph.nodes
                                                      if (node := moves.get(id(gather))) is not None}
    for n in graph.nodes:
        if id(n) in moves:
            pointwise, out = moves[id(n)], moves[id(n)].outputs[0]
            copies = [Node(pointwise.op, pointwise.source, (name,), (f"{out}@{k}",), pointwise.attrs)
                      for k, name in enumerate(n.inputs)]
            shapes.update({c.outputs[0]: graph.shapes[c.inputs[0]] for c in copies})
            del shapes[n.outputs[0]]
            nodes.extend(copies)
        elif id(n) in gathers:
            gather = gathers[id(n)]
            nodes.append(Node("gather", gather.source, tuple(f"{n.outputs[0]}@{k}" for k in range(len(gather.inputs))),
                              n.outputs, gather.attrs))
        else:
            nodes.append(n)
    return graph.replace(nodes=tuple(nodes), shapes=shapes)

"""Cut a partitioned model apart: one ONNX model per chip island, and the host graph that calls them.

An island's model is its nodes, with the tensors crossing its edge as graph inputs and outputs
(shapes and types from the plan) and every constant it reads as an initialiser, folded shape
arithmetic included: the chip pipeline compiles it as it compiles any model. The host graph is
the model's other nodes plus one call node per island (isa/partitioned.py), ordered
topologically, keeping the original opsets, so ONNX Runtime or onnx's reference evaluator runs
it once the runtime supplies the islands.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence, Set

import numpy as np
import onnx
from onnx import helper, numpy_helper

from compiler.frontend.onnx_import import node_name
from compiler.frontend.partition import HOST, Island, Partition, node_reads
from isa.partitioned import ISLAND_DOMAIN, ISLAND_OP

Shape = tuple[int, ...]


def island_model(model: onnx.ModelProto, island: Island, consts: Mapping[str, np.ndarray],
                 shapes: Mapping[str, Shape], types: Mapping[str, int], number: int) -> onnx.ModelProto:
    """The island as a model of its own, named '<model>.island<number>'; a node the model left
    unnamed is named as the plan names it (its index in the whole model), so that two islands'
    layers and matrices never share a name (--widths names them across islands)."""
    nodes = [_named(model.graph.node[i], node_name(model.graph.node[i], i)) for i in island.indices]
    read = dict.fromkeys(t for node in nodes for t in node_reads(node))
    inits = [numpy_helper.from_array(np.asarray(consts[t]), t) for t in read if t in consts]
    graph = helper.make_graph(nodes, f"{model.graph.name or 'model'}.island{number}",
                              [_value(t, shapes, types) for t in island.inputs],
                              [_value(t, shapes, types) for t in island.outputs], inits)
    return _model_like(model, graph, [])


def host_model(model: onnx.ModelProto, plan: Partition, calls: Sequence[tuple[list[str], list[str]]],
               consts: Mapping[str, np.ndarray], kept_inputs: Set[str] = frozenset(),
               kept_outputs: Set[str] = frozenset()) -> onnx.ModelProto:
    """The host graph: host nodes and island calls (`calls[k]` = island k's inputs and outputs),
    without the graph inputs and outputs of state an island keeps on chip."""
    graph = model.graph
    hosted = [(p.index, _named(graph.node[p.index], p.name)) for p in plan.of(HOST)]
    called = [(island.indices[-1], call_node(k, *calls[k])) for k, island in enumerate(plan.islands)]
    nodes = topological([node for _, node in sorted(hosted + called, key=lambda pair: pair[0])])
    originals = {init.name: init for init in graph.initializer}
    read = dict.fromkeys(t for node in nodes for t in node_reads(node))
    inits = [originals[t] if t in originals else numpy_helper.from_array(np.asarray(consts[t]), t)
             for t in read if t in originals or t in consts]
    crossing = dict.fromkeys(t for ins, outs in calls for t in (*ins, *outs))
    host = helper.make_graph(nodes, graph.name or "model",
                             [v for v in graph.input if v.name not in originals and v.name not in kept_inputs],
                             [v for v in graph.output if v.name not in kept_outputs], inits,
                             value_info=[_value(t, plan.shapes, plan.types) for t in crossing if t in plan.shapes])
    return _model_like(model, host, [helper.make_opsetid(ISLAND_DOMAIN, 1)])


def _named(node: onnx.NodeProto, name: str) -> onnx.NodeProto:
    """The node, named as the plan names it when the model left it unnamed (the node table's key)."""
    if node.name:
        return node
    named = onnx.NodeProto()
    named.CopyFrom(node)
    named.name = name
    return named


def call_node(index: int, inputs: list[str], outputs: list[str]) -> onnx.NodeProto:
    return helper.make_node(ISLAND_OP, inputs, outputs, name=f"island{index}", domain=ISLAND_DOMAIN, index=index)


def topological(nodes: Sequence[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """The nodes in an order where each comes after the producers of what it reads, as close to
    the given order as that allows (a call node is placed where its island's last node was)."""
    made = {t: i for i, node in enumerate(nodes) for t in node.output if t}
    waiting = [sum(1 for t in set(node_reads(node)) if t in made) for node in nodes]
    readers: dict[int, list[int]] = {}
    for i, node in enumerate(nodes):
        for t in set(node_reads(node)):
            if t in made:
                readers.setdefault(made[t], []).append(i)
    ready = [i for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for reader in readers.get(i, ()):
            waiting[reader] -= 1
            if waiting[reader] == 0:
                heapq.heappush(ready, reader)
    assert len(order) == len(nodes), "the host graph has a cycle: the islands are not convex"
    return order


def _value(name: str, shapes: Mapping[str, Shape], types: Mapping[str, int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, types.get(name, onnx.TensorProto.FLOAT), shapes.get(name))


def _model_like(model: onnx.ModelProto, graph: onnx.GraphProto, extra_opsets: list) -> onnx.ModelProto:
    opsets = [o for o in model.opset_import if o.domain != ISLAND_DOMAIN] + extra_opsets
    made = helper.make_model(graph, opset_imports=opsets, producer_name="rnnaccel")
    made.ir_version = model.ir_version
    return made

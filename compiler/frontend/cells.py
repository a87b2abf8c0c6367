"""Recognise recurrent cells written as plain ONNX arithmetic and rewrite each as a one-step ONNX
LSTM, GRU or RNN node, so that the chip runs it as a recurrent layer.

nn.LSTMCell, nn.GRUCell and nn.RNNCell, Python loops over them, dynamo's nn.RNN (every layer and
direction; cell_sink.py) and TensorFlow's MatMul(Concat([x, h])) cells all reach ONNX unrolled.
cell_graph.py finds each step's projections and element-wise nodes; here every way of reading them
as a cell (which input is x, h or c, which gate block is which, GRU's linear_before_reset, RNN's
activation) is tried, and one is accepted only when the step, run on random data, equals the
rewritten node. Anything else, a near miss included,
is left exactly as it was. The output form (docs/partitioning.md, "Unrolled cells"):

    Unsqueeze(x, 0) -> LSTM/GRU/RNN(X, W, R, B, "", initial_h, initial_c) -> Squeeze(Y_h, 0) = h_t
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from compiler.frontend.cell_graph import CellNodes, GraphIndex, cell_groups
from compiler.frontend.cell_sink import sink_projections
from compiler.frontend.cell_step import Step, borrowed, candidates, step_nodes
from compiler.frontend.onnx_run import session
from compiler.frontend.split import topological

ACTIVATIONS = {"Sigmoid", "Tanh", "Relu"}  # a graph without any has no cell to look for
TOLERANCE = 1e-5  # relative to the largest output; float32 evaluation of the same sums


@dataclass(frozen=True)
class Match:
    """An accepted cell: the nodes it replaces and its one-step node."""

    nodes: tuple[int, ...]
    step: Step


def recognise_cells(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """The model with every recognised cell rewritten, and one note per kind of rewrite."""
    if not ACTIVATIONS & {n.op_type for n in model.graph.node}:
        return model, []
    g = GraphIndex(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    kept: frozenset[str] = frozenset()
    while (sunk := sink_projections(model, g, opset, kept)) is not None:
        rewritten, notes = _recognised(sunk.model, GraphIndex(sunk.model), opset)
        left = sunk.unrecognised(rewritten)
        if not left:
            return _without_dead_nodes(rewritten), notes
        kept |= left  # sunk again without them: their steps stay as they were
    return _recognised(model, g, opset)


def _recognised(model: onnx.ModelProto, g: GraphIndex, opset: int) -> tuple[onnx.ModelProto, list[str]]:
    found = [f for f in (_found(g, cell, opset) for cell in cell_groups(g)) if f is not None]
    remembered: list[tuple] = []
    matches = {f.nodes: _first(f, candidates(g, f.cell, f.data, f.outputs, remembered), opset, remembered)
               for f in found}
    known = list({m.step.W.tobytes(): m.step for m in matches.values() if m and m.step.roles.h}.values())
    for f in found:
        if matches[f.nodes] is None or not matches[f.nodes].step.roles.h:
            matches[f.nodes] = _first(f, borrowed(g, f.cell, f.data, f.outputs, known), opset, []) or matches[f.nodes]
    accepted = _recurrent([m for m in matches.values() if m is not None])
    if not accepted:
        return model, []
    return _rewritten(model, g, accepted, opset), _notes(g, accepted)


def _recurrent(matches: list[Match]) -> list[Match]:
    """The matches that are recurrent: a step with a state, and a step from zero state whose h
    another step reads as its state (a loop's first step). A layer without one (Relu(Gemm(x)))
    computes what an RNN step from zero state computes, but nothing recurs there."""
    carried = {m.step.roles.h for m in matches if m.step.roles.h}
    return [m for m in matches if _has_state(m.step) or m.step.roles.h_out in carried]


def _without_dead_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Without the nodes (and initialisers) nothing reads any more: a sunk sequence projection."""
    nodes, outputs = list(model.graph.node), {o.name for o in model.graph.output}
    while True:
        read = {n for node in nodes for n in node.input} | outputs
        alive = [n for n in nodes if any(o in read for o in n.output)]
        if len(alive) == len(nodes):
            break
        nodes = alive
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    inits = [t for t in model.graph.initializer if t.name in read]
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)
    return model


@dataclass(frozen=True)
class Found:
    """A group of nodes that may be a cell: its interface and its outputs on random inputs."""

    cell: CellNodes
    nodes: tuple[int, ...]
    data: list[str]
    outputs: list[str]
    feeds: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]


def _found(g: GraphIndex, cell: CellNodes, opset: int) -> Found | None:
    nodes = cell.all_nodes(g)
    outputs = _outputs(g, nodes)
    data = _data_inputs(g, nodes)
    shapes = {name: g.shapes.get(name) for name in (*data, *outputs)}
    if not outputs or not all(shapes.values()) or any(0 in s for s in shapes.values()):
        return None
    rng = np.random.default_rng(len(nodes))
    feeds = {name: rng.standard_normal(shapes[name]).astype(np.float32) for name in data}
    expected = _run(_submodel(g, nodes, data, outputs, opset), feeds)
    return None if expected is None else Found(cell, tuple(nodes), data, outputs, feeds, expected)


def _first(found: Found, steps: Iterator[Step], opset: int, remembered: list) -> Match | None:
    """The first step that computes what the nodes compute; its options are tried first next time."""
    for step in steps:
        if _agrees(step, found.feeds, found.expected, opset):
            remembered.insert(0, step.options)
            return Match(found.nodes, step)
    return None


def _has_state(step: Step) -> bool:
    return step.roles.h is not None or step.h0 is not None


def _outputs(g: GraphIndex, nodes: list[int]) -> list[str]:
    """Tensors the nodes make that anything else reads (or the graph returns)."""
    inside = set(nodes)
    return [out for i in nodes for out in g.nodes[i].output
            if out and (out in g.outputs or any(c not in inside for c in g.consumers.get(out, ())))]


def _data_inputs(g: GraphIndex, nodes: list[int]) -> list[str]:
    made = {out for i in nodes for out in g.nodes[i].output}
    names = dict.fromkeys(n for i in nodes for n in g.nodes[i].input if n and n not in made)
    return [n for n in names if n not in g.constants]


def _submodel(g: GraphIndex, nodes: list[int], data: list[str], outputs: list[str],
              opset: int) -> onnx.ModelProto:
    """The matched nodes alone, with the constants they read, as a model of their own."""
    used = {n for i in nodes for n in g.nodes[i].input if n in g.constants}
    graph = helper.make_graph(
        [g.nodes[i] for i in nodes], "cell",
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, g.shapes[n]) for n in data],
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(g.constants[n], n) for n in sorted(used)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    try:
        values = session(model)(feeds)
    except Exception:  # noqa: BLE001 - nodes the float runtime cannot run are simply no cell
        return None
    return dict(zip((o.name for o in model.graph.output), values))


def _agrees(step: Step, feeds: dict[str, np.ndarray], expected: dict[str, np.ndarray], opset: int) -> bool:
    nodes, inits = step_nodes(step, "check", opset)
    used = step.roles.data
    graph = helper.make_graph(
        nodes, "step",
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, feeds[n].shape) for n in used],
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in step.roles.outputs],
        inits)
    got = _run(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]),
               {n: feeds[n] for n in used})
    if got is None or set(got) != set(expected):
        return False
    scale = max(1.0, *(float(np.abs(v).max()) for v in expected.values()))
    return all(np.abs(got[n] - expected[n]).max() <= TOLERANCE * scale for n in expected)


def _rewritten(model: onnx.ModelProto, g: GraphIndex, matches: list[Match], opset: int) -> onnx.ModelProto:
    """The graph with each match's nodes replaced by its step, placed where the last one stood."""
    removed = {i for m in matches for i in m.nodes}
    added: dict[int, list[onnx.NodeProto]] = {}
    inits: dict[str, onnx.TensorProto] = {}
    for match in matches:
        base = (g.nodes[match.nodes[0]].name or f"node{match.nodes[0]}") + "/cell"
        nodes, tensors = step_nodes(match.step, base, opset)
        added[max(match.nodes)] = nodes
        inits.update({t.name: t for t in tensors})
    body = [n for i, node in enumerate(g.nodes) for n in ([] if i in removed else [node]) + added.get(i, [])]
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(topological(_without_dead_constants(body, g.outputs)))
    read = {n for node in out.graph.node for n in node.input}
    kept = [t for t in out.graph.initializer if t.name in read or t.name not in g.consumers]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept + [t for name, t in inits.items() if name not in {k.name for k in kept}])
    return out


def _without_dead_constants(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    read = {n for node in nodes for n in node.input} | outputs
    return [n for n in nodes if n.op_type != "Constant" or n.output[0] in read]


def _notes(g: GraphIndex, matches: list[Match]) -> list[str]:
    kinds = Counter((m.step.kind, m.step.hidden) for m in matches)
    return [f"recognised {count} {kind} cell{'s' if count > 1 else ''} (hidden {hidden}) in "
            f"{'/'.join(_op_types(g, matches, kind, hidden))} nodes; each runs as one {kind} step"
            for (kind, hidden), count in kinds.items()]


def _op_types(g: GraphIndex, matches: list[Match], kind: str, hidden: int) -> Iterator[str]:
    ops = (g.nodes[i].op_type for m in matches if (m.step.kind, m.step.hidden) == (kind, hidden) for i in m.nodes)
    return iter(dict.fromkeys(ops))

"""Re-rolled recurrences: a chain of one-step LSTM/GRU/RNN nodes becomes one layer of T steps.

Streaming-minded code calls a recurrent layer on one frame at a time in a Python loop that carries
the state, and both PyTorch exporters ship that loop unrolled: T one-step nodes with the same
weights (often a copy per step), each starting from the state the one before ended with;
frontend/cells.py writes hand-written cells in the same form. Compiled as they are, they are T
layers of one step: the weights stored T times and no step's input projection overlapping another
step's recurrence. `reroll_layers` replaces each such chain by one node over the steps' inputs, so
the layer's schedule applies (docs/scheduling.md). A chain's steps have the same operator,
attributes and weights (by value); each step's initial state is the previous step's final state,
through nodes that keep its values (graph_view.source). An intermediate c read elsewhere ends a
chain (a layer outputs only its last c); an intermediate h read elsewhere becomes a slice of Y.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from compiler.frontend.graph_view import GraphView, at, attributes, reads, sorted_live
from compiler.frontend.onnx_import import check_model

STATES = {"LSTM": (5, 6), "GRU": (5,), "RNN": (5,)}  # initial_h (and initial_c) inputs
WEIGHTS = {"LSTM": (1, 2, 3, 7), "GRU": (1, 2, 3), "RNN": (1, 2, 3)}  # W, R, B (and peepholes P)
DEFAULTS = {"direction": b"forward", "layout": 0, "input_forget": 0, "linear_before_reset": 0}


@dataclass(frozen=True)
class Chain:
    """Node indices of consecutive steps of one layer, and the layer's batch and hidden size."""

    steps: tuple[int, ...]
    batch: int
    hidden: int


def reroll_layers(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """The model with every chain of two or more one-step recurrent nodes re-rolled, and one note
    per chain; a model without chains is returned as it is."""
    notes = []
    while (chain := _first_chain(view := GraphView(model))) is not None:
        model = _rerolled(model, view, chain)
        node = view.nodes[chain.steps[0]]
        notes.append(f"re-rolled {len(chain.steps)} one-step {node.op_type} nodes (hidden {chain.hidden}) "
                     f"into one {node.op_type} layer of {len(chain.steps)} steps")
    return (check_model(model, "model with re-rolled layers") if notes else model), notes


# -- finding chains ---------------------------------------------------------------------------------

def _first_chain(view: GraphView) -> Chain | None:
    """The chain that starts first in the graph's order: a stacked layer is re-rolled after the
    layer it reads, so its input is the lower layer's Y."""
    signatures = {i: s for i, node in enumerate(view.nodes) if (s := _signature(view, node)) is not None}
    links = {i: p for i in signatures if (p := _previous(view, i, signatures)) is not None}
    successors: dict[int, list[int]] = {}
    for step, previous in links.items():
        successors.setdefault(previous, []).append(step)
    following = {p: s[0] for p, s in successors.items() if len(s) == 1}
    for start in sorted(i for i in signatures if links.get(i) not in following):
        steps = [start]
        while steps[-1] in following:
            steps.append(following[steps[-1]])
        for segment in _independent_segments(view, steps):
            if len(segment) >= 2:
                _, batch, hidden = signatures[start][:3]
                return Chain(tuple(segment), batch, hidden)
    return None


def _signature(view: GraphView, node: onnx.NodeProto) -> tuple | None:
    """What the steps of one layer share (operator, batch, hidden size, attributes, weight values);
    None for a node that is not a one-step, forward, batch-second recurrent node with constant
    weights and no sequence lengths."""
    if node.op_type not in STATES or node.domain not in ("", "ai.onnx") or at(node.input, 4):
        return None
    attrs = DEFAULTS | attributes(node)
    x = view.shape(node.input[0])
    if attrs["direction"] != b"forward" or attrs["layout"] != 0 or x is None or len(x) != 3 or x[0] != 1:
        return None
    weights = [at(node.input, k) for k in WEIGHTS[node.op_type]]
    values = [view.const(name) for name in weights]
    if any(v is None for name, v in zip(weights, values) if name):
        return None
    keys = tuple(None if v is None else (v.dtype.str, v.shape, v.tobytes()) for v in values)
    return node.op_type, x[1], int(attrs.get("hidden_size", 0)), x[2], tuple(sorted(attrs.items())), keys


def _previous(view: GraphView, index: int, signatures: dict[int, tuple]) -> int | None:
    """The step whose final state is this step's initial state, if it is one of the same layer."""
    node = view.nodes[index]
    h = at(node.input, STATES[node.op_type][0])
    origin = view.source(h)[0] if h else ""
    previous = view.producers.get(origin)
    if previous is None or signatures.get(previous) != signatures[index]:
        return None
    if origin not in view.nodes[previous].output[:2]:  # Y and Y_h hold the same values for one step
        return None
    if node.op_type == "LSTM" and not _carries_c(view, node, view.nodes[previous]):
        return None
    return previous


def _carries_c(view: GraphView, node: onnx.NodeProto, previous: onnx.NodeProto) -> bool:
    """True when the step's initial c is the previous step's final c and nothing else reads it."""
    c, final = at(node.input, 6), previous.output[2] if len(previous.output) > 2 else ""
    if not c or not final:
        return False
    origin, path = view.source(c)
    return origin == final and all(view.private(name) for name in path)


def _independent_segments(view: GraphView, steps: list[int]) -> list[list[int]]:
    """The chain cut before each step whose input depends on an earlier step of its segment (a
    decoder feeding back its output): one node cannot read its own result."""
    segments = [[steps[0]]]
    for step in steps[1:]:
        if view.ancestors(view.nodes[step].input[0]) & set(segments[-1]):
            segments.append([])
        segments[-1].append(step)
    return segments


# -- the rewrite ------------------------------------------------------------------------------------

class _Builder:
    """New nodes and constants under fresh names."""

    def __init__(self, model: onnx.ModelProto, prefix: str, opset: int) -> None:
        graph = model.graph
        self.taken = {n for node in graph.node for n in (node.name, *node.input, *node.output)}
        self.taken |= {v.name for v in (*graph.input, *graph.output, *graph.initializer, *graph.value_info)}
        self.prefix, self.opset = prefix, opset
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []

    def fresh(self, base: str) -> str:
        name = next(n for k in itertools.count() if (n := f"{self.prefix}/{base}{k or ''}") not in self.taken)
        self.taken.add(name)
        return name

    def node(self, op: str, inputs: list[str], output: str = "", **attrs) -> str:
        output = output or self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], name=self.fresh(op), **attrs))
        return output

    def ints(self, values: list[int]) -> str:
        name = self.fresh("const")
        self.constants.append(numpy_helper.from_array(np.array(values, np.int64), name))
        return name

    def slice(self, data: str, start: int, stop: int, axis: int, output: str = "") -> str:
        """data[start:stop] along axis: parameters as inputs since opset 10, attributes before."""
        if self.opset < 10:
            return self.node("Slice", [data], output, starts=[start], ends=[stop], axes=[axis])
        return self.node("Slice", [data, self.ints([start]), self.ints([stop]), self.ints([axis])], output)

    def reshape(self, data: str, shape: list[int], output: str = "") -> str:
        return self.node("Reshape", [data, self.ints(shape)], output)


def _rerolled(model: onnx.ModelProto, view: GraphView, chain: Chain) -> onnx.ModelProto:
    """A copy of the model with the chain's steps replaced by one layer: a reverse one when the
    steps read their inputs from the last time step to the first (a bidirectional layer unrolled)."""
    steps = [view.nodes[i] for i in chain.steps]
    first, last = steps[0], steps[-1]
    build = _Builder(model, first.name or first.op_type, view.opset)
    xs = [s.input[0] for s in steps]
    reverse = _time_slices(view, xs) is None and _time_slices(view, xs[::-1]) is not None
    x = _sequence_input(view, build, xs[::-1] if reverse else xs, chain)
    y, y_h = build.fresh("Y"), at(last.output, 1) or build.fresh("Y_h")
    outputs = [y, y_h] + ([at(last.output, 2) or build.fresh("Y_c")] if first.op_type == "LSTM" else [])
    layer = helper.make_node(first.op_type, [x, *first.input[1:]], outputs, name=build.fresh(first.op_type))
    layer.attribute.extend(a for a in first.attribute if a.name != "direction")
    if reverse:
        layer.attribute.append(helper.make_attribute("direction", "reverse"))
    build.nodes.append(layer)
    in_time = steps[::-1] if reverse else steps
    _step_outputs(build, in_time, last, y, chain)
    stacks = _stacks(view, in_time)
    for index in stacks:
        concat = view.nodes[index]
        build.reshape(y, list(view.shape(concat.output[0])), concat.output[0])
    return _replaced(model, view, chain, build, set(stacks))


def _stacks(view: GraphView, steps: list[onnx.NodeProto]) -> list[int]:
    """The Concat nodes that stack every step's h in time order, time outermost (each input's
    dimensions before the axis are 1): each holds the layer's Y in Y's own order, so a Reshape of
    Y replaces it, and nothing reads a step by its index (which streaming could not cut)."""
    hs = [at(step.output, 1) for step in steps]
    found = []
    for index, node in enumerate(view.nodes):
        if node.op_type != "Concat" or len(node.input) != len(hs) or view.shape(node.output[0]) is None:
            continue
        dims = view.shape(node.input[0]) or ()
        axis = attributes(node).get("axis", 0)
        axis = axis + len(dims) if axis < 0 else axis
        if [view.source(name)[0] for name in node.input] == hs and all(d == 1 for d in dims[:axis]):
            found.append(index)
    return found


def _sequence_input(view: GraphView, build: _Builder, xs: list[str], chain: Chain) -> str:
    """The steps' inputs as one [T, batch, input] tensor: the tensor they are consecutive slices of
    when they are (no copies), else their concatenation."""
    found = _time_slices(view, xs)
    if found is None:
        return build.node("Concat", xs, axis=0)
    data, axis, start = found
    dims = view.shape(data)
    steps, rest = len(xs), [k for k in range(len(dims)) if k != axis]
    if (start, start + steps) != (0, dims[axis]):
        data = build.slice(data, start, start + steps, axis)
    if axis != 0:
        data = build.node("Transpose", [data], perm=[axis, *rest])
    wanted = [steps, chain.batch, view.shape(xs[0])[2]]
    return data if [steps, *(dims[k] for k in rest)] == wanted else build.reshape(data, wanted)


def _time_slices(view: GraphView, xs: list[str]) -> tuple[str, int, int] | None:
    """(tensor, axis, first index) when step t's input holds, in order, index first + t of that
    tensor along that axis; else None."""
    found = [_one_index(view, view.source(x)[0]) for x in xs]
    if any(f is None for f in found) or len({f[:2] for f in found}) != 1:
        return None
    data, axis, start = found[0]
    return found[0] if [f[2] for f in found] == list(range(start, start + len(xs))) else None


def _one_index(view: GraphView, name: str) -> tuple[str, int, int] | None:
    """(tensor, axis, index) when `name` is one index of a tensor along one axis, taken by a Slice
    or a Gather of a scalar; else None."""
    node = view.producer(name)
    dims = view.shape(node.input[0]) if node is not None and node.input else None
    if dims is None or node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type == "Gather":
        index, axis = view.const(at(node.input, 1)), int(attributes(node).get("axis", 0))
        if index is None or index.ndim != 0:
            return None
        axis %= len(dims)
        return node.input[0], axis, int(index) % dims[axis]
    ranges = view.slice_range(node) if node.op_type == "Slice" else None
    narrowed = [(a, r) for a, r in (ranges or {}).items() if r != (0, dims[a])]
    if len(narrowed) != 1 or narrowed[0][1][1] - narrowed[0][1][0] != 1:
        return None
    axis, (start, _) = narrowed[0]
    return node.input[0], axis, start


LAST = 2 ** 62  # a Slice end past any axis: `-1:LAST` is the last element


def _step_outputs(build: _Builder, steps: list[onnx.NodeProto], final: onnx.NodeProto, y: str,
                  chain: Chain) -> None:
    """Each step's Y and Y_h under their own names, as slices of the layer's Y (`steps` in time
    order; the Y_h of the step run last, `final`, is the layer's); those nobody reads are dropped
    with the dead nodes. The last time step's Y is Y's last step counted from the end, so the model
    still reads it when streaming cuts Y to one frame."""
    for t, step in enumerate(steps):
        y_t, h_t = at(step.output, 0), at(step.output, 1)
        if y_t:
            build.slice(y, -1, LAST, 0, y_t) if step is steps[-1] else build.slice(y, t, t + 1, 0, y_t)
        if h_t and step is not final:
            build.reshape(build.slice(y, t, t + 1, 0), [1, chain.batch, chain.hidden], h_t)


def _replaced(model: onnx.ModelProto, view: GraphView, chain: Chain, build: _Builder,
              replaced: set[int]) -> onnx.ModelProto:
    """The model with the steps (and the `replaced` nodes) removed, the new nodes where the last
    step was, dead nodes and unread initialisers dropped, the nodes sorted again."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    at = chain.steps[-1]
    gone = set(chain.steps) | replaced
    nodes = ([n for i, n in enumerate(view.nodes[:at]) if i not in gone] + build.nodes
             + [n for i, n in enumerate(view.nodes[at + 1:], at + 1) if i not in gone])
    kept = sorted_live(nodes, {v.name for v in graph.output})
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(build.constants)
    used = {name for node in kept for name in reads(node)} | {v.name for v in (*graph.output, *graph.input)}
    _keep_only(graph.initializer, used)
    made = {out for node in kept for out in node.output} | {v.name for v in graph.input} | used
    _keep_only(graph.value_info, made)
    return copy


def _keep_only(items, names: set[str]) -> None:
    """Drop the entries of a repeated protobuf field whose names are not in `names`."""
    kept = [item for item in items if item.name in names]
    del items[:]
    items.extend(kept)


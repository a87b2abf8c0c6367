"""The ways of reading one matched step as an ONNX LSTM, GRU or RNN node, and that node's form.

A step's projections give W and R per source tensor and the biases; what they do not say (which
input is x, h or c, which output h or c, the order of the gate blocks, GRU's linear_before_reset,
RNN's activation) is enumerated here, most likely first, for cells.py to check numerically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from compiler.frontend.cell_graph import CellNodes, GraphIndex

# gate blocks G -> (ONNX op, source block for each ONNX gate in the usual exporters' orders first,
# the options tried for each order)
KINDS = {
    4: ("LSTM", ((0, 3, 1, 2), (0, 3, 2, 1)), ({},)),  # PyTorch/Keras i,f,g,o; TF1 i,j,f,o -> i,o,f,c
    3: ("GRU", ((1, 0, 2), (0, 1, 2)), ({"linear_before_reset": 1}, {})),  # PyTorch r,z,n; Keras z,r,h
    1: ("RNN", ((0,),), ({}, {"activations": ["Relu"]})),
}


PROJECTIONS = ("MatMul", "Gemm", "Concat")  # the readers of a new h, not of a new c


@dataclass(frozen=True)
class Roles:
    """Which tensors are the step's x, previous h and c (data), and new h and c."""

    x: str
    h: str | None
    c: str | None
    h_out: str
    c_out: str | None
    lifted: frozenset[str] = frozenset()  # states that already have the leading axis: [1, B, H]

    @property
    def data(self) -> list[str]:
        return [n for n in (self.x, self.h, self.c) if n]

    @property
    def outputs(self) -> list[str]:
        return [n for n in (self.h_out, self.c_out) if n]


@dataclass(frozen=True)
class Step:
    """One candidate node: weights in ONNX layout and gate order, its roles and constant states."""

    kind: str
    hidden: int
    W: np.ndarray
    R: np.ndarray
    B: np.ndarray
    order: tuple[int, ...]
    attrs: tuple[tuple[str, object], ...]
    roles: Roles
    h0: np.ndarray | None
    c0: np.ndarray | None

    @property
    def options(self) -> tuple:
        return self.kind, self.order, self.attrs


def candidates(g: GraphIndex, cell: CellNodes, data: list[str], outputs: list[str],
               remembered: list[tuple]) -> Iterator[Step]:
    """Every reading of the cell as a step, the orders and options that matched before first."""
    hidden = g.width(outputs[0])
    if any(g.width(o) != hidden for o in outputs) or not hidden:
        return
    biases = _shifted_biases(g, cell)
    consts = _state_constants(g, cell, data, hidden)
    for roles, h0, c0 in _roles(g, cell, data, outputs, consts, hidden):
        weights = _weights(g, cell, roles, biases)
        if weights is None or weights[0].shape[1] % hidden:
            continue
        gates = weights[0].shape[1] // hidden
        if gates not in KINDS or (gates != 4 and (roles.c or c0 is not None or roles.c_out)):
            continue
        kind, orders, option_list = KINDS[gates]
        tried = [o for o in itertools.permutations(range(gates)) if o not in orders]
        choices = [(order, tuple(sorted(opts.items()))) for order in (*orders, *tried) for opts in option_list]
        choices.sort(key=lambda c: (kind, *c) not in remembered)
        for order, attrs in choices:
            yield _step(kind, hidden, weights, order, attrs, roles, h0, c0)


def borrowed(g: GraphIndex, cell: CellNodes, data: list[str], outputs: list[str],
             known: list[Step]) -> Iterator[Step]:
    """A step from zero state read with the weights of a recognised step that has a state.

    Exporters fold R·0 into the bias of a loop's first step (or drop it), which leaves R unknown
    and the biases merged; any R reads the same there, so the step takes its siblings' weights,
    which lets the steps of one loop share them."""
    hidden = g.width(outputs[0])
    for roles, *_ in _roles(g, cell, data, outputs, {}, hidden):
        if roles.h is None and roles.c is None:
            for step in known:
                if step.hidden == hidden and step.W.shape[2] == g.width(roles.x):
                    yield dataclasses.replace(step, roles=roles, h0=None, c0=None)


def _roles(g: GraphIndex, cell: CellNodes, data: list[str], outputs: list[str],
           consts: dict[str, np.ndarray], hidden: int) -> Iterator[tuple[Roles, np.ndarray | None, np.ndarray | None]]:
    sources = {s for seed in cell.seeds for s in g.affine(seed).terms}
    states = sorted((n for n in data if g.width(n) == hidden), key=lambda n: n not in sources) + [*consts, None]
    projected = sorted(outputs, key=lambda n: not any(g.nodes[c].op_type in PROJECTIONS
                                                      for c in g.consumers.get(n, ())))  # likely h first
    outs = list(itertools.permutations(projected)) if len(outputs) == 2 else [(outputs[0], None)]
    if len(outputs) > 2:
        return
    for x in sorted((n for n in data if n in sources), key=lambda n: g.width(n) == hidden):
        for h, c in itertools.product(states, states):
            if x in (h, c) or (h is not None and h == c) or set(data) - {x, h, c}:
                continue
            for h_out, c_out in outs:
                lifted = frozenset(n for n in (h, c, h_out, c_out) if n and len(g.shapes.get(n, ())) == 3)
                yield (Roles(x, _data(h, consts), _data(c, consts), h_out, c_out, lifted),
                       _zero_is_none(consts.get(h)), _zero_is_none(consts.get(c)))


def _data(name: str | None, consts: dict) -> str | None:
    return None if name is None or name in consts else name


def _zero_is_none(value: np.ndarray | None) -> np.ndarray | None:
    return None if value is None or not np.any(value) else value


def _state_constants(g: GraphIndex, cell: CellNodes, data: list[str], hidden: int) -> dict[str, np.ndarray]:
    """Constants the step reads that could be a previous state: one value per batch row and unit."""
    x_shape = next((g.shapes[n] for n in data if len(g.shapes.get(n, ())) == 2), None)
    if x_shape is None:
        return {}
    size = x_shape[0] * hidden
    read = {n for i in cell.all_nodes(g) for n in g.nodes[i].input if n in g.constants}
    return {n: g.constants[n] for n in sorted(read) if g.constants[n].size == size and g.constants[n].ndim >= 2}


def _weights(g: GraphIndex, cell: CellNodes, roles: Roles, biases: dict[str, np.ndarray]):
    """W [I, N], R [H, N] (None without h), Wb, Rb from the projections; a seed of h alone
    carries R's bias. None when another tensor is projected or a bias differs between rows."""
    h_name = roles.h or _const_source(g, cell)
    w = r = wb = rb = None
    for seed in cell.seeds:
        form = g.affine(seed)
        if set(form.terms) - {roles.x, h_name}:
            return None
        bias = biases[seed]
        w, wb = _plus(w, form.terms.get(roles.x)), _plus(wb, None if roles.x not in form.terms else bias)
        r = _plus(r, form.terms.get(h_name))
        rb = _plus(rb, bias if roles.x not in form.terms else None)
    if w is None or (r is not None and r.shape[1] != w.shape[1]):
        return None
    zeros = np.zeros(w.shape[1])
    wb, rb = _row(wb, zeros), _row(rb, zeros)
    return None if wb is None or rb is None else (w, r, wb, rb)


def _const_source(g: GraphIndex, cell: CellNodes) -> str | None:
    """A constant previous state multiplied by R (a loop's first step from zeros, not folded)."""
    sources = {s for seed in cell.seeds for s in g.affine(seed).terms if s in g.constants}
    return next(iter(sources), None)


def _plus(total: np.ndarray | None, value: np.ndarray | None) -> np.ndarray | None:
    if value is None:
        return total
    return value if total is None else total + value


def _row(bias: np.ndarray | None, zeros: np.ndarray) -> np.ndarray | None:
    """A bias as one row; a bias that differs between batch rows is no cell's."""
    if bias is None:
        return zeros
    rows = np.broadcast_to(bias, np.broadcast_shapes(bias.shape, zeros.shape)).reshape(-1, zeros.size)
    return rows[0] if np.all(rows == rows[0]) else None


def _shifted_biases(g: GraphIndex, cell: CellNodes) -> dict[str, np.ndarray]:
    """Each seed's bias, plus constants added to one gate block (TF1's forget_bias)."""
    biases = {s: g.affine(s).bias for s in cell.seeds}
    for index in cell.gates:
        node = g.nodes[index]
        if node.op_type != "Add":
            continue
        const = next((n for n in node.input if n in g.constants), None)
        block = next((_block(g, n) for n in node.input if n != const), None)
        if const is not None and block is not None and block[0] in biases:
            seed, lo, hi = block
            width = g.width(seed)
            shift = np.zeros(width)
            shift[lo:hi] = np.broadcast_to(g.constants[const].reshape(-1)[-1:] if g.constants[const].size == 1
                                           else g.constants[const].reshape(-1), hi - lo)
            biases[seed] = np.broadcast_to(biases[seed], np.broadcast_shapes(biases[seed].shape, (width,))) + shift
    return biases


def _block(g: GraphIndex, name: str) -> tuple[str, int, int] | None:
    """(projection, first column, end column) when `name` is a last-axis Split or Slice of one."""
    index = g.producer.get(name)
    node = g.nodes[index] if index is not None else None
    if node is None or node.op_type not in ("Split", "Slice"):
        return None
    source, width = node.input[0], g.width(node.input[0])
    if node.op_type == "Split":
        sizes = [g.width(o) for o in node.output]
        j = list(node.output).index(name)
        return source, sum(sizes[:j]), sum(sizes[: j + 1])
    starts, ends = (g.constants.get(n) for n in node.input[1:3])
    if starts is None or ends is None or starts.size != 1:
        return None
    lo, hi = int(starts[0]), int(min(ends[0], width))
    return source, lo % width if lo < 0 else lo, hi


def _step(kind: str, hidden: int, weights, order, attrs, roles: Roles, h0, c0) -> Step:
    w, r, wb, rb = weights

    def gates(matrix: np.ndarray) -> np.ndarray:
        blocks = [matrix[..., k * hidden:(k + 1) * hidden] for k in order]
        return np.concatenate(blocks, axis=-1)

    r = np.zeros((hidden, w.shape[1])) if r is None else r
    bias = np.concatenate([gates(wb), gates(rb)])[None]
    return Step(kind, hidden, gates(w).T[None].astype(np.float32), gates(r).T[None].astype(np.float32),
                bias.astype(np.float32), order, attrs, roles,
                None if h0 is None else h0.reshape(1, -1, hidden), None if c0 is None else c0.reshape(1, -1, hidden))


def content_name(prefix: str, value: np.ndarray) -> str:
    """An initialiser name from its contents, so identical weights in different steps share one."""
    digest = hashlib.sha1(np.ascontiguousarray(value, np.float32).tobytes() + str(value.shape).encode())
    return f"{prefix}/{digest.hexdigest()[:12]}"


def step_nodes(step: Step, base: str, opset: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Unsqueeze(x), the states, the one-step node and Squeeze(Y_h) (and Y_c) under their old names."""
    inits = [numpy_helper.from_array(value, content_name(f"cell/{what}", value))
             for what, value in (("W", step.W), ("R", step.R), ("B", step.B))]
    nodes: list[onnx.NodeProto] = []
    axes = _axes(opset, inits)
    states = []
    for what, name, value in (("h0", step.roles.h, step.h0), ("c0", step.roles.c, step.c0)):
        if name:
            nodes.append(_reshape("Unsqueeze", name, f"{base}/{what}", axes, step.roles.lifted))
            states.append(f"{base}/{what}")
        elif value is not None:
            inits.append(numpy_helper.from_array(value.astype(np.float32), content_name(f"cell/{what}", value)))
            states.append(inits[-1].name)
        else:
            states.append("")
    nodes.insert(0, _reshape("Unsqueeze", step.roles.x, f"{base}/X", axes, step.roles.lifted))
    inputs = [f"{base}/X", *(t.name for t in inits[:3]), "", *states[: 2 if step.kind == "LSTM" else 1]]
    while inputs[-1] == "":
        inputs.pop()
    outputs = ["", f"{base}/Y_h"] + ([f"{base}/Y_c"] if step.roles.c_out else [])
    nodes.append(helper.make_node(step.kind, inputs, outputs, f"{base}", hidden_size=step.hidden,
                                  **dict(step.attrs)))
    nodes.append(_reshape("Squeeze", f"{base}/Y_h", step.roles.h_out, axes, step.roles.lifted))
    if step.roles.c_out:
        nodes.append(_reshape("Squeeze", f"{base}/Y_c", step.roles.c_out, axes, step.roles.lifted))
    return nodes, inits


def _axes(opset: int, inits: list[onnx.TensorProto]) -> str | None:
    """Axis 0 as the initialiser input opset 13 wants, or None for the attribute before it."""
    if opset < 13:
        return None
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "cell/axes0"))
    return "cell/axes0"


def _reshape(op: str, source: str, target: str, axes: str | None,
             lifted: frozenset[str] = frozenset()) -> onnx.NodeProto:
    """Axis 0 added or dropped; a state that has it already (nn.RNN's [1, B, H]) passes as it is."""
    if lifted & {source, target}:
        return helper.make_node("Identity", [source], [target], f"{target}/Identity")
    if axes is None:
        return helper.make_node(op, [source], [target], f"{target}/{op}", axes=[0])
    return helper.make_node(op, [source, axes], [target], f"{target}/{op}")

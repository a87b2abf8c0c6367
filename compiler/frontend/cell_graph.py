"""The graph analysis behind cell recognition (cells.py): which tensors are linear projections of
data, and which element-wise nodes after them make up one recurrent step.

A projection is found by its algebra, not by a node sequence: MatMul or Gemm by a constant weight,
of one tensor or of a Concat of several (TensorFlow's [x, h]), plus constant biases and other
projections in any order. The nodes that read projections through element-wise operators form the
cells; a node belongs to the latest projections that reach it, so one step's nodes never swallow
the next step's, although each step's state flows into the next.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from compiler.frontend.attributes import decode_attributes as node_attributes

# element-wise operators a cell's gates and state update are built from; near misses (another
# activation) are included so their cells are found, then fail the numerical check
GATE_OPS = frozenset({"Split", "Slice", "Sigmoid", "Tanh", "Relu", "HardSigmoid", "LeakyRelu", "Clip",
                      "Mul", "Add", "Sub", "Div", "Neg"})


@dataclass(frozen=True)
class Affine:
    """A tensor as sum(source @ matrix) + bias; `nodes` are the graph nodes (indices) computing it."""

    terms: dict[str, np.ndarray]
    bias: np.ndarray
    nodes: frozenset[int] = field(default_factory=frozenset)

    def __add__(self, other: Affine) -> Affine:
        terms = dict(self.terms)
        for source, matrix in other.terms.items():
            terms[source] = terms[source] + matrix if source in terms else matrix
        return Affine(terms, self.bias + other.bias, self.nodes | other.nodes)


class GraphIndex:
    """Producers, consumers, constants and static shapes of one ONNX graph."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.nodes = list(graph.node)
        self.producer = {out: i for i, n in enumerate(self.nodes) for out in n.output if out}
        self.consumers: dict[str, list[int]] = {}
        for i, node in enumerate(self.nodes):
            for name in node.input:
                self.consumers.setdefault(name, []).append(i)
        self.outputs = {o.name for o in graph.output}
        self.constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        for node in self.nodes:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if node.op_type == "Constant" and value is not None:
                self.constants[node.output[0]] = numpy_helper.to_array(value)
        inferred = _inferred(model)
        self.shapes = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
                       for v in (*inferred.value_info, *inferred.input, *inferred.output)}
        self.shapes.update({name: value.shape for name, value in self.constants.items()})
        self._affine: dict[str, Affine | None] = {}

    def width(self, name: str) -> int:
        return (self.shapes.get(name) or (0,))[-1]

    def affine(self, name: str) -> Affine | None:
        if name not in self._affine:
            self._affine[name] = self._affine_of(name)
        return self._affine[name]

    def _affine_of(self, name: str) -> Affine | None:
        if name in self.constants:
            return Affine({}, self.constants[name].astype(np.float64))
        index = self.producer.get(name)
        rule = AFFINE_RULES.get(self.nodes[index].op_type) if index is not None else None
        return rule(self, index, self.nodes[index]) if rule else None

    def seeds(self) -> list[str]:
        """Projections of data read by an element-wise node that is no projection itself."""
        found = []
        for name in self.producer:
            form = self.affine(name)
            if form is None or not form.terms or name in self.constants:
                continue
            if any(self.nodes[c].op_type in GATE_OPS and self.affine(self.nodes[c].output[0]) is None
                   for c in self.consumers.get(name, ())):
                found.append(name)
        return found

    def descendants(self, name: str, through: frozenset[str] | None = None) -> set[int]:
        """Nodes reachable from `name` (only through `through` operators when given)."""
        seen: set[int] = set()
        stack = list(self.consumers.get(name, ()))
        while stack:
            index = stack.pop()
            node = self.nodes[index]
            if index in seen or (through is not None and (node.op_type not in through
                                                          or self.affine(node.output[0]) is not None)):
                continue
            seen.add(index)
            stack.extend(c for out in node.output for c in self.consumers.get(out, ()))
        return seen


def _inferred(model: onnx.ModelProto) -> onnx.GraphProto:
    """The graph with inferred shapes, or as declared when inference fails (then fewer cells match)."""
    try:
        return onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - onnx raises several types; the importer reports the model's faults
        return model.graph


def _matmul(g: GraphIndex, index: int, node: onnx.NodeProto) -> Affine | None:
    return _projection(g, index, node.input[0], g.constants.get(node.input[1]), None)


def _gemm(g: GraphIndex, index: int, node: onnx.NodeProto) -> Affine | None:
    attrs = node_attributes(node)
    weight = g.constants.get(node.input[1])
    if attrs.get("transA", 0) or weight is None:
        return None
    weight = attrs.get("alpha", 1.0) * (weight.T if attrs.get("transB", 0) else weight)
    bias = g.constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(1)
    return None if bias is None else _projection(g, index, node.input[0], weight, attrs.get("beta", 1.0) * bias)


def _projection(g: GraphIndex, index: int, source: str, weight: np.ndarray | None,
                bias: np.ndarray | None) -> Affine | None:
    if weight is None or weight.ndim != 2:
        return None
    weight = weight.astype(np.float64)
    bias = np.zeros(weight.shape[1]) if bias is None else bias.astype(np.float64)
    parts, nodes = _concat_parts(g, source), {index}
    if parts is None:
        return Affine({source: weight}, bias, frozenset(nodes))
    nodes.add(g.producer[source])
    bounds = np.cumsum([0] + [g.width(p) for p in parts])
    if bounds[-1] != weight.shape[0]:
        return None
    terms = {part: weight[lo:hi] for part, lo, hi in zip(parts, bounds[:-1], bounds[1:])}
    return Affine(terms, bias, frozenset(nodes)) if len(terms) == len(parts) else None


def _concat_parts(g: GraphIndex, name: str) -> list[str] | None:
    """The inputs of a last-axis Concat producing `name`, if that is what produces it."""
    index = g.producer.get(name)
    if index is None or g.nodes[index].op_type != "Concat":
        return None
    axis, rank = node_attributes(g.nodes[index]).get("axis"), len(g.shapes.get(name, ()))
    return list(g.nodes[index].input) if rank and axis in (rank - 1, -1) else None


def _add(g: GraphIndex, index: int, node: onnx.NodeProto) -> Affine | None:
    """A sum of projections; not one whose bias would grow by broadcasting (a projection's bias
    has one value per output feature, and two hostile constants could broadcast to gigabytes)."""
    forms = [g.affine(name) for name in node.input]
    if any(f is None for f in forms) or not _sums_in_place(*(f.bias.shape for f in forms)):
        return None
    total = forms[0] + forms[1]
    return Affine(total.terms, total.bias, total.nodes | {index})


def _sums_in_place(first: tuple[int, ...], second: tuple[int, ...]) -> bool:
    """Whether two biases add without the result outgrowing the larger of them."""
    try:
        shape = np.broadcast_shapes(first, second)
    except ValueError:
        return False
    return math.prod(shape) <= max(math.prod(first), math.prod(second))


def _identity(g: GraphIndex, index: int, node: onnx.NodeProto) -> Affine | None:
    form = g.affine(node.input[0])
    return None if form is None else Affine(form.terms, form.bias, form.nodes | {index})


AFFINE_RULES = {"MatMul": _matmul, "Gemm": _gemm, "Add": _add, "Identity": _identity}


@dataclass(frozen=True)
class CellNodes:
    """One step's nodes: its projections (`seeds`, with their nodes) and the element-wise rest."""

    seeds: tuple[str, ...]
    gates: tuple[int, ...]

    def all_nodes(self, g: GraphIndex) -> list[int]:
        """Its nodes, with those computing only from constants for it (a Split of a folded bias)."""
        nodes = set(self.gates).union(*(g.affine(s).nodes for s in self.seeds))
        read = {g.producer.get(n) for i in nodes for n in g.nodes[i].input if n not in g.constants}
        folded = {i for i in read if i is not None and all(n in g.constants for n in g.nodes[i].input if n)}
        return sorted(nodes | folded)


def cell_groups(g: GraphIndex) -> Iterator[CellNodes]:
    """Group element-wise nodes by the latest projections that reach them: one group per step."""
    seeds = g.seeds()
    reach = {s: g.descendants(s, GATE_OPS) for s in seeds}
    below = {s: g.descendants(s) for s in seeds}
    later = {s: {t for t in seeds if t != s and g.producer[t] in below[s]} for s in seeds}
    cells: dict[str, str] = {s: s for s in seeds}  # seed -> a representative seed of its step

    def step_of(seed: str) -> str:
        while cells[seed] != seed:
            seed = cells[seed]
        return seed

    owned: dict[int, str] = {}
    for index in sorted(set().union(*reach.values()) if reach else ()):
        reaching = {s for s in seeds if index in reach[s]}
        owners = sorted(s for s in reaching if not later[s] & reaching)
        for other in owners[1:]:
            cells[step_of(other)] = step_of(owners[0])
        owned[index] = owners[0]
    groups: dict[str, list[int]] = {}
    for index, owner in owned.items():
        groups.setdefault(step_of(owner), []).append(index)
    for root, gates in groups.items():
        members = sorted((s for s in seeds if step_of(s) == root), key=g.producer.get)
        yield CellNodes(tuple(members), tuple(gates))

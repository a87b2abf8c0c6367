"""`rnnaccel-compile MODEL --check`: every node of a model that cannot be compiled, and why.

A compile stops at the first such node; a user porting a model wants the whole list at once.
Two kinds of problem are told apart, as a host/chip partitioner must tell them apart:

- capability: what the chip and compiler cannot take, node by node. Each node is judged by its
  operator's constraints (capability.py), every failing reason listed; a node that passes is
  converted, so later nodes see the shapes and constants it makes. A node whose conversion
  raises all the same (a malformed model: a weight shape that contradicts hidden_size) is
  listed with that error. A later node that reads the output of a failed node cannot be judged
  (its input shapes are unknown), so it is listed as depending on the node that failed first.
- capacity: whether the whole imported graph fits the target's memories
  (limits.check_fits_target), asked only when every node is capable: a graph with holes has no
  sizes to measure.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from compiler.frontend.capability import node_view, unsupported_reasons
from compiler.frontend.limits import check_fits_target
from compiler.frontend.onnx_import import Builder, convert_view, finish_import, node_name, start_import
from isa.errors import RnnaccelError
from isa.target import Target

CAPABILITY, CAPACITY = "capability", "capacity"


@dataclass(frozen=True)
class Problem:
    node: str  # "" for a capacity problem: its reason names what does not fit
    op_type: str
    reason: str
    kind: str = CAPABILITY
    index: int = -1  # the node's position in the graph (names need not be unique)

    def __str__(self) -> str:
        if self.kind == CAPACITY:
            return f"does not fit the target: {self.reason}"
        return f"node '{self.node}' ({self.op_type}): {self.reason}"


def unsupported_nodes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]] | None = None,
                      target: Target | None = None, streaming: bool = False) -> list[Problem]:
    """Every problem that keeps the model from compiling, in graph order, capacity last; [] if none."""
    builder = start_import(model, shapes)
    blocked: dict[str, str] = {}  # tensor -> the failed node it comes from
    problems = []
    for index, node in enumerate(model.graph.node):
        name = node_name(node, index)
        root = next((blocked[t] for t in node.input if t in blocked), None)
        reasons = [f"depends on unsupported node '{root}'"] if root else _convert(builder, node, name)
        problems += [Problem(name, node.op_type, reason, CAPABILITY, index) for reason in reasons]
        if reasons:
            blocked.update((t, root or name) for t in node.output if t)
    if problems:
        return problems
    graph = finish_import(builder, model)  # graph-level errors (a constant output) still raise
    try:
        check_fits_target(graph, target or Target(), streaming)
    except RnnaccelError as exc:
        return [Problem("", "", str(exc), CAPACITY)]
    return []


def _convert(builder: Builder, node: onnx.NodeProto, name: str) -> list[str]:
    """Why the node cannot be compiled ([] if it can: then it is converted into the builder)."""
    try:
        view = node_view(builder, node)
        reasons = unsupported_reasons(view)
        if not reasons:
            convert_view(builder, node, name, view)
        return reasons
    except RnnaccelError as exc:
        return [str(exc)]


def failed_nodes(problems: list[Problem]) -> int:
    """How many nodes the problems name (a node may have several reasons)."""
    return len({p.index for p in problems if p.kind == CAPABILITY})

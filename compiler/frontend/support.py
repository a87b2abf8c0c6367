"""`rnnaccel-compile MODEL --check`: every node of a model that cannot be compiled, and why.

A compile stops at the first such node; a user porting a model wants the whole list at once.
So this walks the graph like the importer, but a node that fails is recorded and its outputs
are marked as coming from it. A later node that reads such an output cannot be judged (its
input shapes are unknown), so it is listed as depending on the node that failed first.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from compiler.frontend.onnx_import import convert_node, finish_import, node_name, start_import
from isa.errors import RnnaccelError


@dataclass(frozen=True)
class Problem:
    node: str
    op_type: str
    reason: str

    def __str__(self) -> str:
        return f"node '{self.node}' ({self.op_type}): {self.reason}"


def unsupported_nodes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]] | None = None) -> list[Problem]:
    """Every node that cannot be compiled, in graph order; [] if the whole graph imports."""
    builder = start_import(model, shapes)
    blocked: dict[str, str] = {}  # tensor -> the failed node it comes from
    problems = []
    for index, node in enumerate(model.graph.node):
        name = node_name(node, index)
        root = next((blocked[t] for t in node.input if t in blocked), None)
        try:
            if root is not None:
                raise RnnaccelError(f"depends on unsupported node '{root}'")
            convert_node(builder, node, name)
        except RnnaccelError as exc:
            problems.append(Problem(name, node.op_type, str(exc)))
            blocked.update((t, root or name) for t in node.output if t)
    if not problems:
        finish_import(builder, model)  # graph-level errors (a constant output) still raise
    return problems

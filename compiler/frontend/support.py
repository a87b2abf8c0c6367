"""`rnnaccel-compile MODEL --check`: every node of a model that cannot be compiled, and why.

A compile stops at the first such node; a user porting a model wants the whole list at once.
Two kinds of problem are told apart, as a host/chip partitioner must tell them apart:

- capability and per-node capacity: the partition plan (partition.py) judges every node, the
  ones after a host node too (their input shapes come from ONNX shape inference), and lists
  every reason a node stays on the host: a constraint it fails (capability.py), weights or
  sequences too big for the target, or an error converting it (a malformed model: a weight
  shape that contradicts hidden_size).
- capacity of the whole graph: whether the imported graph fits the target's memories
  (limits.check_fits_target), asked when every node is on the chip.

When some nodes stay on the host but others can run on the chip, `partition_lines` says how the
model would be split: the host's operators grouped with counts and reasons, the islands, and
the chip's share of the MACs.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from compiler.frontend.limits import check_fits_target
from compiler.frontend.onnx_import import finish_import
from compiler.frontend.partition import (
    CAPABILITY,
    CAPACITY,
    HOST,
    MALFORMED,
    MOVES_ONLY,
    UNRUNNABLE,
    Partition,
    placed_and_converted,
)
from compiler.passes.compress import Compression
from isa.errors import RnnaccelError
from isa.target import Target


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
    """Every problem that keeps the model from compiling as one chip program, in graph order,
    capacity of the whole graph last; [] if none."""
    return check_model(model, shapes, target, streaming)[0]


def check_model(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]] | None = None,
                target: Target | None = None, streaming: bool = False,
                compression: Compression | None = None) -> tuple[list[Problem], Partition]:
    """The problems (every reason of every host node; else whether the whole graph fits, weights as
    `compression` stores them) and the plan."""
    plan, builder = placed_and_converted(model, shapes, target, streaming, compression)
    problems = [Problem(p.name, p.op_type, reason, CAPABILITY, p.index) for p in plan.of(HOST) if p.why != MOVES_ONLY
                for reason in p.reasons]
    if problems:
        return problems, plan
    graph = finish_import(builder, model)  # every node converted; graph-level errors (a constant output) raise
    try:
        check_fits_target(graph, target or Target(), streaming, compression)
    except RnnaccelError as exc:
        return [Problem("", "", str(exc), CAPACITY)], plan
    return [], plan


def partition_lines(plan: Partition, shown: int = 3) -> list[str]:
    """What --check says of a split model: host operators grouped with counts and reasons, each
    island with its edges, and the chip's share of the MACs. [] when there is nothing to split."""
    host = plan.of(HOST)
    if not host or not plan.islands or any(p.why == MALFORMED for p in host):
        return []
    lines = []
    for op, count in plan.host_ops.items():
        reasons = list(dict.fromkeys(r for p in host if p.op_type == op for r in p.reasons))
        more = f"; and {len(reasons) - shown} more" if len(reasons) > shown else ""
        lines.append(f"host: {op} x{count} ({'; '.join(reasons[:shown])}{more})")
    for number, island in enumerate(plan.islands, 1):
        lines.append(f"island {number}: {len(island.nodes)} node{'s' * (len(island.nodes) != 1)} "
                     f"({_names(island.nodes)}); in: {_names(island.inputs)}; out: {_names(island.outputs)}")
    chip = sum(len(i.nodes) for i in plan.islands)
    share = f"{100 * plan.chip_mac_fraction:.1f} % of MACs" if any(p.macs for p in plan.placements) else "no MACs"
    lines.append(f"chip: {chip} of {chip + len(host)} nodes in {len(plan.islands)} island"
                 f"{'s' * (len(plan.islands) != 1)}, {share}; "
                 f"{plan.boundary_bytes} bytes cross between host and chip per inference")
    return lines


def _names(names: tuple[str, ...], shown: int = 4) -> str:
    if not names:
        return "-"
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def check_failure(problems: list[Problem], plan: Partition, total: int, chip_only: bool = False) -> str | None:
    """Why the model cannot be compiled as asked (--check's status 2), or None."""
    if any(p.kind == CAPACITY for p in problems):
        return "the model does not fit the target"
    refused = [p for p in plan.placements if p.why in (MALFORMED, UNRUNNABLE)]
    if refused:
        return f"{len(refused)} of {total} nodes cannot be compiled"
    if not plan.islands:
        return "nothing in this model runs on the chip"
    if chip_only and plan.needs_host:
        return f"{len(plan.of(HOST))} of {total} nodes need the host (--chip-only)"
    return None

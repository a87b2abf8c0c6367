"""Where the cycles go: the lower bound of a program and its per-layer breakdown.

The bound is what no schedule can beat on this array: max(useful MACs / macs, vector elements /
vec_lanes). Per layer (the ONNX node the listing's .loc names), the breakdown gives its useful
MACs, its span in cycles (first start to last result, overlaps with other layers included), its
MAC utilisation over that span and its own bound, so a user sees how far each layer is from it.
"""

from __future__ import annotations

import bisect

from isa.bounds import bound_cycles, vector_elements
from isa.container import Program


def breakdown(trace: list[dict], program: Program) -> tuple[int, list[dict]]:
    """(the program's bound, one record per layer in order of first appearance)."""
    starts = [loc.pc for loc in program.locs]
    layers: dict[str, dict] = {}
    total_elements = 0
    for record in trace:
        index = bisect.bisect_right(starts, record["pc"]) - 1
        name = program.locs[index].node if index >= 0 else ""
        layer = layers.setdefault(name, {"name": name, "mac_ops": 0, "elements": 0, "first": record["start"],
                                         "last": record["ready"]})
        layer["mac_ops"] += record["macs"]
        layer["first"], layer["last"] = min(layer["first"], record["start"]), max(layer["last"], record["ready"])
        if record["unit"] == "VEC":
            elements = vector_elements(program.code[record["pc"]])
            layer["elements"] += elements
            total_elements += elements
    total_macs = sum(layer["mac_ops"] for layer in layers.values())
    summaries = [_summary(layer, program) for layer in layers.values()]
    return bound_cycles(total_macs, total_elements, program.target), summaries


def _summary(layer: dict, program: Program) -> dict:
    span = layer["last"] - layer["first"]
    return {
        "name": layer["name"],
        "mac_ops": layer["mac_ops"],
        "cycles": span,
        "mac_utilization": layer["mac_ops"] / (program.target.macs * span) if span else 0.0,
        "bound_cycles": bound_cycles(layer["mac_ops"], layer["elements"], program.target),
    }

"""Where the cycles go: the lower bound of a program and its per-layer breakdown.

The bound is what no schedule can beat on this array: max(useful MACs / macs, vector elements /
vec_lanes). Per layer (the ONNX node the listing's .loc names), the breakdown gives its useful
MACs, its span in cycles (first start to last result, overlaps with other layers included), its
MAC utilisation over that span and its own bound (a recurrent layer's recurrence bound too, from
the program), so a user sees how far each layer is from it.
The sequencer's LOOP takes no time and waits only for its strides in weight memory, so the
schedule starts it near cycle 0 wherever it stands: it counts for no layer's span.
"""

from __future__ import annotations

import bisect

from isa.bounds import bound_cycles, vector_elements
from isa.container import Program

UNTIMED_UNITS = frozenset({"SEQ"})


class Breakdown:
    """Per-layer totals, fed one trace record at a time as the schedule is built, so that the
    statistics need no trace kept in memory."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.starts = [loc.pc for loc in program.locs]
        self.layers: dict[str, dict] = {}
        self.total_elements = 0

    def add(self, record: dict) -> None:
        index = bisect.bisect_right(self.starts, record["pc"]) - 1
        name = self.program.locs[index].node if index >= 0 else ""
        layer = self.layers.setdefault(name, {"name": name, "mac_ops": 0, "elements": 0, "first": None, "last": 0})
        layer["mac_ops"] += record["macs"]
        if record["unit"] not in UNTIMED_UNITS:
            first = record["start"] if layer["first"] is None else min(layer["first"], record["start"])
            layer["first"], layer["last"] = first, max(layer["last"], record["ready"])
        if record["unit"] == "VEC":
            elements = vector_elements(self.program.code[record["pc"]])
            layer["elements"] += elements
            self.total_elements += elements

    def result(self) -> tuple[int, list[dict]]:
        """(the program's bound, one record per layer in order of first appearance)."""
        total_macs = sum(layer["mac_ops"] for layer in self.layers.values())
        summaries = [_summary(layer, self.program) for layer in self.layers.values()]
        return bound_cycles(total_macs, self.total_elements, self.program.target), summaries


def _summary(layer: dict, program: Program) -> dict:
    """A recurrent layer's recurrence bound is the compiler's, stored in the program (isa.bounds)."""
    recurrence = dict(program.recurrence)
    span = 0 if layer["first"] is None else layer["last"] - layer["first"]
    return {
        "name": layer["name"],
        "mac_ops": layer["mac_ops"],
        "cycles": span,
        "mac_utilization": layer["mac_ops"] / (program.target.macs * span) if span else 0.0,
        "bound_cycles": bound_cycles(layer["mac_ops"], layer["elements"], program.target),
        **({"recurrence_bound_cycles": recurrence[layer["name"]]} if layer["name"] in recurrence else {}),
    }

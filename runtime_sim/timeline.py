"""The schedule as a Chrome trace-event file (`rnnaccel-sim --timeline`): one track per unit,
one slice per executed instruction, in microseconds at the target's clock. It opens in
Perfetto (ui.perfetto.dev) and chrome://tracing."""

from __future__ import annotations

import bisect
import json

from isa.container import Program
from isa.table import UNITS


def timeline(trace: list[dict], program: Program) -> str:
    mhz, starts = program.target.clock_mhz, [loc.pc for loc in program.locs]
    events = [{"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": unit}}
              for tid, unit in enumerate(UNITS)]
    events.append({"name": "process_name", "ph": "M", "pid": 1, "args": {"name": f"RNNAccel: {program.model}"}})
    for record in trace:
        events.append({"name": record["op"], "cat": record["unit"], "ph": "X", "pid": 1,
                       "tid": UNITS.index(record["unit"]), "ts": record["start"] / mhz,
                       "dur": (record["end"] - record["start"]) / mhz,
                       "args": {"pc": record["pc"], "start": record["start"], "end": record["end"],
                                "ready": record["ready"], "macs": record["macs"],
                                "where": _where(program, starts, record["pc"])}})
    return json.dumps({"traceEvents": events, "displayTimeUnit": "ns"}) + "\n"


def _where(program: Program, starts: list[int], pc: int) -> str:
    index = bisect.bisect_right(starts, pc) - 1
    if index < 0:
        return ""
    loc = program.locs[index]
    return " ".join(part for part in (loc.node, f"L{loc.layer}" if loc.layer >= 0 else "",
                                      f"t={loc.step}" if loc.step >= 0 else "", loc.what) if part)

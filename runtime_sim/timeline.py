"""The schedule as a Chrome trace-event file (`rnnaccel-sim --timeline`): one track per unit,
one slice per executed instruction, in microseconds (a partitioned run: one process per
island, the islands one after the other) at the target's clock. It opens in
Perfetto (ui.perfetto.dev) and chrome://tracing."""

from __future__ import annotations

import bisect
import json

from isa.container import Program
from isa.table import UNITS


def timeline(trace: list[dict], program: Program) -> str:
    return _dump(_events(trace, program, 1, 0.0, f"RNNAccel: {program.model}"))


def islands_timeline(runs: list[tuple[int, list[dict], Program]]) -> str:
    """A partitioned run's islands, one process each, laid out one after the other in time."""
    events, offset = [], 0.0
    for index, trace, program in runs:
        events += _events(trace, program, index + 1, offset, f"RNNAccel island {index}: {program.model}")
        offset += max((r["end"] for r in trace), default=0) / program.target.clock_mhz
    return _dump(events)


def _dump(events: list[dict]) -> str:
    return json.dumps({"traceEvents": events, "displayTimeUnit": "ns"}) + "\n"


def _events(trace: list[dict], program: Program, pid: int, offset: float, name: str) -> list[dict]:
    """One process `pid` named `name`: a track per unit, a slice per instruction, from `offset` us."""
    mhz, starts = program.target.clock_mhz, [loc.pc for loc in program.locs]
    events = [{"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": unit}}
              for tid, unit in enumerate(UNITS)]
    events.append({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": name}})
    for record in trace:
        events.append({"name": record["op"], "cat": record["unit"], "ph": "X", "pid": pid,
                       "tid": UNITS.index(record["unit"]), "ts": offset + record["start"] / mhz,
                       "dur": (record["end"] - record["start"]) / mhz,
                       "args": {"pc": record["pc"], "start": record["start"], "end": record["end"],
                                "ready": record["ready"], "macs": record["macs"],
                                "where": _where(program, starts, record["pc"])}})
    return events


def _where(program: Program, starts: list[int], pc: int) -> str:
    index = bisect.bisect_right(starts, pc) - 1
    if index < 0:
        return ""
    loc = program.locs[index]
    return " ".join(part for part in (loc.node, f"L{loc.layer}" if loc.layer >= 0 else "",
                                      f"t={loc.step}" if loc.step >= 0 else "", loc.what) if part)

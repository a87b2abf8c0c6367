"""The cycle model: when each instruction runs, kept apart from what it computes.

The timing rules themselves (in-order units, the RAW/WAR/WAW scoreboard, latencies) are
isa/timing.py's `Clock`, which the compiler's schedule tuning uses too; this module issues every
executed instruction through it and keeps the figures and the trace. Total cycles run from the
first start (0) to the last `ready`. Because the schedule depends on operands only, never on
data, it is computed once per program and shared by all inferences; and because the scoreboard
enforces RAW/WAR/WAW, executing the semantics in program order gives exactly the values the
timed machine would compute. The energy model's events (isa/energy.py) are counted here too,
per executed instruction, with the cycles that leakage is charged for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from isa.encoding import Instruction
from isa.energy import add_events, instruction_events, no_events
from isa.table import UNITS, evaluate
from isa.target import Target
from isa.timing import Clock, extents


@dataclass
class Timing:
    """The schedule of one program: the totals the statistics report and, when asked for, the
    trace (one record per executed instruction: about a kilobyte each, so never kept unasked)."""

    trace: list[dict] | None = None
    instructions: int = 0
    cycles: int = 0
    mac_ops: int = 0
    weight_bytes_read: int = 0
    unit_busy: dict[str, int] = field(default_factory=lambda: dict.fromkeys(UNITS, 0))
    unit_stall: dict[str, int] = field(default_factory=lambda: dict.fromkeys(UNITS, 0))
    events: dict[str, int] = field(default_factory=no_events)  # the energy model's (isa/energy.py)

    def add(self, record: dict, unit_free: int) -> None:
        """Append one trace record; its stall is the wait after its unit became free."""
        unit = record["unit"]
        self.instructions += 1
        if self.trace is not None:
            self.trace.append(record)
        self.unit_stall[unit] += record["start"] - unit_free
        self.unit_busy[unit] += record["end"] - record["start"]
        self.mac_ops += record["macs"]
        self.weight_bytes_read += sum(n for m, _, n in record["reads"] if m == "wmem")
        self.cycles = max(self.cycles, record["ready"])
        self.events["cycles"] = self.cycles


def schedule(stream: list[tuple[int, Instruction]], target: Target, keep_trace: bool = True,
             observe: Callable[[dict], None] | None = None, reach: dict[str, int] | None = None) -> Timing:
    """Time every executed instruction, (pc, instruction) in the order the sequencer issues them
    (isa.loops.expand), on `target` (addresses must already be bounds-checked). Each record goes
    to `observe`, and to the trace if `keep_trace`; `reach` (from `extents`) saves a pass."""
    tenv = target.env()
    clock = Clock(target, reach or extents(instr.footprint(tenv) for _, instr in stream))
    timing = Timing([] if keep_trace else None)
    for pc, instr in stream:
        reads, writes = instr.footprint(tenv)
        env, unit = instr.env(tenv), instr.op.unit
        free = clock.free[unit]
        start, end, ready = clock.issue(unit, evaluate(instr.op.cycles, env), reads, writes)
        record = {"pc": pc, "op": instr.mnemonic, "unit": unit, "start": start, "end": end, "ready": ready,
                  "reads": reads, "writes": writes, "macs": evaluate(instr.op.macs, env)}
        timing.add(record, free)
        add_events(timing.events, instruction_events(instr, tenv, reads, writes))
        if observe is not None:
            observe(record)
    return timing

"""The cycle model: when each instruction runs, kept apart from what it computes.

The units (isa.table.UNITS: DMA, MAC, VEC, DEC) each run their own instructions in program order
and run concurrently with each other. A hardware scoreboard holds an instruction back until

- its unit is free;
- every address it reads has been written by the earlier writers (RAW: their `ready` time);
- no earlier, unfinished instruction still has to read an address it writes (WAR: the
  readers' `end`), and earlier writes to it have landed (WAW: their `ready`).

An instruction is busy for the table's `cycles` expression, so end = start + busy, and its
result is readable at ready = end + the unit's latency (isa.table.UNIT_LATENCY). Total cycles
run from the first start (0) to the last `ready`. Because the schedule depends on operands
only, never on data, it is computed once per program and shared by all inferences; and
because the scoreboard enforces RAW/WAR/WAW, executing the semantics in program order gives
exactly the values the timed machine would compute.

Bookkeeping is per address, as numpy arrays per memory (latest ready time, latest read end),
so one instruction costs a few slice reductions whatever its length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from isa.encoding import Instruction
from isa.table import MEMORIES, UNIT_LATENCY, UNITS, evaluate
from isa.target import Target


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


class Scoreboard:
    """Per-address times: when the last write to it is readable, when its last reader ends."""

    def __init__(self, extents: dict[str, int]) -> None:
        self.ready = {mem: np.zeros(n, np.int64) for mem, n in extents.items()}
        self.read_end = {mem: np.zeros(n, np.int64) for mem, n in extents.items()}

    @staticmethod
    def _latest(times: dict[str, np.ndarray], ranges: list) -> int:
        return max((int(times[m][a:a + n].max()) for m, a, n in ranges if n), default=0)

    def earliest_start(self, reads: list, writes: list) -> int:
        """The first cycle at which RAW, WAR and WAW all allow the instruction to start."""
        raw = self._latest(self.ready, reads)
        war = self._latest(self.read_end, writes)
        waw = self._latest(self.ready, writes)
        return max(raw, war, waw)

    def record(self, reads: list, writes: list, end: int, ready: int) -> None:
        for m, a, n in reads:
            np.maximum(self.read_end[m][a:a + n], end, out=self.read_end[m][a:a + n])
        for m, a, n in writes:
            self.ready[m][a:a + n] = ready


def extents(footprints: Iterable[tuple[list, list]]) -> dict[str, int]:
    """How far into each memory the program reaches: arrays need be no longer."""
    out = dict.fromkeys(MEMORIES, 0)
    for reads, writes in footprints:
        for m, a, n in reads + writes:
            out[m] = max(out[m], a + n)
    return out


def schedule(stream: list[tuple[int, Instruction]], target: Target, keep_trace: bool = True,
             observe: Callable[[dict], None] | None = None, reach: dict[str, int] | None = None) -> Timing:
    """Time every executed instruction, (pc, instruction) in the order the sequencer issues them
    (isa.loops.expand), on `target` (addresses must already be bounds-checked). Each record goes
    to `observe`, and to the trace if `keep_trace`; `reach` (from `extents`) saves a pass."""
    tenv = target.env()
    board = Scoreboard(reach or extents(instr.footprint(tenv) for _, instr in stream))
    timing, free = Timing([] if keep_trace else None), dict.fromkeys(UNITS, 0)
    latency = {unit: evaluate(expr, tenv) for unit, expr in UNIT_LATENCY.items()}
    for pc, instr in stream:
        reads, writes = instr.footprint(tenv)
        env, unit = instr.env(tenv), instr.op.unit
        start = max(free[unit], board.earliest_start(reads, writes))
        end = start + evaluate(instr.op.cycles, env)
        ready = end + latency[unit]
        board.record(reads, writes, end, ready)
        record = {"pc": pc, "op": instr.mnemonic, "unit": unit, "start": start, "end": end, "ready": ready,
                  "reads": reads, "writes": writes, "macs": evaluate(instr.op.macs, env)}
        timing.add(record, free[unit])
        if observe is not None:
            observe(record)
        free[unit] = end
    return timing

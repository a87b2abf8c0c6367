"""The machine's timing rules (SPEC section 2), written once: each unit issues its own
instructions in program order, and a scoreboard holds an instruction back until

- its unit is free;
- every address it reads has been written by the earlier writers (RAW: their `ready` time);
- no earlier, unfinished instruction still has to read an address it writes (WAR: the
  readers' `end`), and earlier writes to it have landed (WAW: their `ready`).

An instruction is busy for the table's `cycles` expression, so end = start + busy, and its
result is readable at ready = end + the unit's latency (isa.table.UNIT_LATENCY).

The simulator's cycle model (runtime_sim/timing.py) issues every executed instruction through a
`Clock`; the compiler's schedule tuning (compiler/passes/tune.py) issues trial schedules through
the same one, so both judge a schedule by the same rules. Bookkeeping is per address, as numpy
arrays per memory (latest ready time, latest read end), so one instruction costs a few slice
reductions whatever its length.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from isa.table import MEMORIES, UNIT_LATENCY, UNITS, evaluate
from isa.target import Target


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
    """How far into each memory the instructions reach: arrays need be no longer."""
    out = dict.fromkeys(MEMORIES, 0)
    for reads, writes in footprints:
        for m, a, n in reads + writes:
            out[m] = max(out[m], a + n)
    return out


class Clock:
    """The units' in-order issue and the scoreboard: when each instruction, issued in program
    order, starts, ends and has its result readable. `free` is when each unit is next free."""

    def __init__(self, target: Target, reach: dict[str, int]) -> None:
        tenv = target.env()
        self.board = Scoreboard(reach)
        self.free = dict.fromkeys(UNITS, 0)
        self.latency = {unit: evaluate(expr, tenv) for unit, expr in UNIT_LATENCY.items()}

    def issue(self, unit: str, busy: int, reads: list, writes: list) -> tuple[int, int, int]:
        """(start, end, ready) of the next instruction: `busy` cycles on `unit`."""
        start = max(self.free[unit], self.board.earliest_start(reads, writes))
        end = start + busy
        ready = end + self.latency[unit]
        self.board.record(reads, writes, end, ready)
        self.free[unit] = end
        return start, end, ready

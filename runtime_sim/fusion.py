"""Fused execution: independent instructions of the same kind run as one numpy operation.

A warm run costs a few numpy calls per executed instruction, and a recurrent program executes
thousands of small ones (an LSTM step of 64 units on 32 lanes: some 80 instructions on 8 to 32
elements each). The dependencies between them depend on addresses only, so once per program:

- each instruction gets a level, one past every earlier instruction it depends on (it reads
  what that one writes, or writes what that one reads or writes; the scoreboard's RAW, WAR and
  WAW, without the timing);
- the instructions of one level with the same mnemonic and the same FUSABLE settings become one
  fused Step whose operands gather all their elements (a slice when they are adjacent).

Running the fused steps level after level computes exactly what program order computes: two
instructions that touch a common address keep their order, and the rest commute. Element-wise
instructions fuse when every operand is n elements; a matrix-vector product fuses with others
that read the same vector, its weight columns (and biases) joined. The cycle model is untouched:
it still times every instruction in program order (runtime_sim.timing).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from isa.table import OPS
from runtime_sim.semantics import Step

_WRITTEN = sorted({a.memory for op in OPS for a in op.writes})  # the memories instructions write


@dataclass(frozen=True)
class Fusable:
    """Which operands must agree for instructions to fuse, and the (address, length) operand
    pairs whose elements a fused step gathers."""

    same: tuple[str, ...]
    places: tuple[tuple[str, str], ...]


_BINARY = Fusable((), (("dst", "n"), ("a", "n"), ("b", "n")))
_PRODUCT = Fusable(("x", "cols"), (("acc", "rows"),))
FUSABLE = {
    "VADD": _BINARY,
    "VSUB": _BINARY,
    "VMUL": Fusable(("shift",), _BINARY.places),
    "VACT": Fusable(("up",), (("dst", "n"), ("src", "n"))),
    "VRELU": Fusable((), (("dst", "n"), ("src", "n"))),
    "VMOV": Fusable((), (("dst", "n"), ("src", "n"))),
    "VCLAMP": Fusable(("lo", "hi"), (("dst", "n"), ("src", "n"))),
    "VSCALE": Fusable(("mult", "shift"), (("dst", "n"), ("src", "n"))),
    "VRQ": Fusable((), (("dst", "n"), ("src", "n"))),
    "VRQA": Fusable((), (("dst", "n"), ("src", "n"), ("add", "n"))),
    "MV": _PRODUCT,
    "MVB": _PRODUCT,
    "MVA": _PRODUCT,
}


class Levels:
    """Each instruction's level, from its footprint (reads, writes) given in program order: 1 +
    the highest level of an earlier instruction it depends on. Weight memory is never written,
    so reading it orders nothing."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.written = {mem: np.zeros(sizes[mem], np.int64) for mem in _WRITTEN}  # level of the last write
        self.read = {mem: np.zeros(sizes[mem], np.int64) for mem in _WRITTEN}  # highest level of a read
        self.levels = array("q")

    def observe(self, footprints: Iterable[tuple[list, list]]) -> Iterator[tuple[list, list]]:
        """Pass the footprints on, taking each one's level on the way."""
        for reads, writes in footprints:
            self.levels.append(self._add([r for r in reads if r[0] in _WRITTEN], writes))
            yield reads, writes

    def _add(self, reads: list, writes: list) -> int:
        after = [self.written[m][a:a + n] for m, a, n in reads + writes if n]
        after += [self.read[m][a:a + n] for m, a, n in writes if n]
        level = 1 + max((int(times.max()) for times in after), default=0)
        for m, a, n in reads:
            np.maximum(self.read[m][a:a + n], level, out=self.read[m][a:a + n])
        for m, a, n in writes:
            self.written[m][a:a + n] = level
        return level


def fused_steps(steps: Sequence[Step], levels: Sequence[int]) -> tuple[Step, ...]:
    """`steps` (program order, each with its level) as fused steps in an equivalent order."""
    out: list[Step | list[Step]] = []  # steps, and groups to fuse, level by level
    groups: dict[tuple, list[Step]] = {}  # this level's
    for i in np.argsort(levels, kind="stable"):
        step, spec = steps[i], FUSABLE.get(steps[i].instr.mnemonic)
        if spec is None:
            out.append(step)
            continue
        key = (levels[i], step.instr.mnemonic, *(step.args[f] for f in spec.same))
        if key not in groups:
            if groups and next(iter(groups))[0] != levels[i]:
                groups.clear()
            groups[key] = []
            out.append(groups[key])
        groups[key].append(step)
    return tuple(item if isinstance(item, Step) else _fuse(item) for item in out)


def _fuse(members: list[Step]) -> Step:
    """One step for independent instructions of one kind (itself when alone). Independent, they
    run in any order: in that of their first operand's address, so that operands laid out side by
    side become one slice (a view) rather than a gather (a copy, several times as slow)."""
    if len(members) == 1:
        return members[0]
    spec = FUSABLE[members[0].instr.mnemonic]
    members = sorted(members, key=lambda one: one.args[spec.places[0][0]])
    first = members[0]
    places = {name: _gathered([(one.args[name], one.args[length]) for one in members]) for name, length in spec.places}
    totals = {length: sum(one.args[length] for one in members) for _, length in spec.places}
    return Step(first.pc, first.instr, {**first.args, **totals}, first.execute, tuple(members), places)


def _gathered(ranges: list[tuple[int, int]]) -> slice | np.ndarray:
    """The elements of (address, length) ranges in order: a slice when they follow each other."""
    if all(a + n == b for (a, n), (b, _) in zip(ranges, ranges[1:])):
        return slice(ranges[0][0], ranges[-1][0] + ranges[-1][1])
    return np.concatenate([np.arange(a, a + n) for a, n in ranges])

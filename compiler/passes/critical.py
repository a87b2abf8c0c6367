"""Critical-path list scheduling of a step's vector work, for the schedule tuning (passes/tune.py).

Zipping a batch's unit groups one op of each in turn (passes/interleave.py) is blind to timing:
on a wide array the next step's first column chunk of R h waits for the first groups' h, which
the vector unit then finishes together with the others it zips them with. Here a trial's code
is issued by the machine's timing rules (isa.timing, the simulator's) as a list scheduler would:
at each issue, of the streams whose next op can start earliest, the one of the group the next
product needs first (its `rank`: the column chunk its units fall in), then the one with the most
ops left (the longest chain). What it issued, op by op, is the order the tuning then records in
the step's schedule for every step (StepSchedule.order), so every step is the same and the
steps still fold into a loop (passes/reroll.py).
"""

from __future__ import annotations

from collections.abc import Callable

from compiler.backend.emit import instruction
from compiler.kernel import Interleave, Kernel
from isa.encoding import Instruction
from isa.table import evaluate
from isa.target import Target
from isa.timing import Clock, extents


class Issuer:
    """The program's instructions, issued one at a time through the machine's clock (the
    tuning's trials too: tune.ready_times)."""

    def __init__(self, code: list[Instruction], target: Target) -> None:
        tenv = target.env()
        self.code = code
        self.prints = [instr.footprint(tenv) for instr in code]
        self.busy = [evaluate(instr.op.cycles, instr.env(tenv)) for instr in code]
        self.clock = Clock(target, extents(self.prints))

    def issue(self, i: int) -> int:
        """Issue instruction i; when its result is readable."""
        return self.clock.issue(self.code[i].op.unit, self.busy[i], *self.prints[i])[2]

    def earliest(self, i: int) -> int:
        """When instruction i could start as far as its data go (its unit aside)."""
        return self.clock.board.earliest_start(*self.prints[i])

    def free(self, i: int) -> int:
        return self.clock.free[self.code[i].op.unit]


def critical_order(kernel: Kernel, addresses: dict[str, int], target: Target, rank: Callable[[int], int],
                   at: int) -> tuple[int, ...]:
    """The order in which the streams of the kernel's first interleave group from op `at` on
    issue, its ops (as lowered, not yet interleaved, buffers at `addresses`) run in program
    order and each group up to that one list-scheduled; `rank(k)`: how late the next product
    needs stream k (lower first)."""
    groups = sorted(kernel.interleaves, key=lambda g: g.bounds[0])
    upto = next(g for g in groups if g.bounds[0] >= at)
    issuer = Issuer([instruction(op, addresses) for op in kernel.ops[:upto.bounds[-1]]], target)
    done = 0
    for group in groups[:groups.index(upto) + 1]:
        for i in range(done, group.bounds[0]):
            issuer.issue(i)
        order = _listed(issuer, group, rank)
        done = group.bounds[-1]
    return order


def _listed(issuer: Issuer, group: Interleave, rank: Callable[[int], int]) -> tuple[int, ...]:
    """Issue one group's streams by list scheduling; the stream of each op in turn. The streams
    are independent, so a stream's next op can start no earlier than when it became next, and
    that time is kept until it issues."""
    stops = dict(enumerate(group.bounds[1:]))
    heads = dict(enumerate(group.bounds[:-1]))
    ready = {k: issuer.earliest(i) for k, i in heads.items() if i < stops[k]}
    order = []
    while ready:
        start = {k: max(issuer.free(heads[k]), t) for k, t in ready.items()}
        first = min(start.values())
        k = min((k for k, t in start.items() if t == first), key=lambda k: (rank(k), heads[k] - stops[k], k))
        issuer.issue(heads[k])
        order.append(k)
        heads[k] += 1
        if heads[k] < stops[k]:
            ready[k] = issuer.earliest(heads[k])
        else:
            del ready[k]
    return tuple(order)

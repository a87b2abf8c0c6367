"""Interleaving: the independent streams the lowering put side by side (kernel.Interleave), zipped
one op at a time, the ops of a longer stream following when the shorter ones run out, or in the
order the group records (the schedule tuning's critical-path order, passes/critical.py).

The vector unit issues in order and a dependent instruction waits `vec_latency` cycles for its
operand; two independent chains, one op of each in turn, keep it busy where one chain would not
(docs/scheduling.md). Interleaving moves ops only within each recorded range and keeps their
number, so the ranges recorded after it (a layer's waves) stay where they are.
"""

from __future__ import annotations

import collections
import itertools

from compiler.kernel import Interleave, Kernel, MOp


def interleave(kernel: Kernel) -> Kernel:
    """Interleave every recorded group of streams; the kernel then has none left to do."""
    ops = list(kernel.ops)
    for group in kernel.interleaves:
        ops[group.bounds[0]:group.bounds[-1]] = ordered(ops, group) if fits(group) else zipped(ops, group)
    return kernel.replace(ops=tuple(ops), interleaves=())


def zipped(ops: list[MOp], group: Interleave) -> list[MOp]:
    """The streams of `group`, one op of each in turn, each after its delay (in rounds)."""
    delays = group.delays or (0,) * (len(group.bounds) - 1)
    streams = [[None] * late + ops[start:end] for late, (start, end) in zip(delays, itertools.pairwise(group.bounds))]
    assert all(start <= end for start, end in itertools.pairwise(group.bounds)) and group.bounds[-1] <= len(ops)
    return [op for row in itertools.zip_longest(*streams) for op in row if op is not None]


def fits(group: Interleave) -> bool:
    """Whether the group's order names each stream once per op it has. A step's order, chosen on a
    middle step, may not fit every step (an LSTM's first step without a cell state has fewer ops):
    those are zipped."""
    counts = collections.Counter(group.order)
    return bool(group.order) and all(counts[k] == end - start
                                     for k, (start, end) in enumerate(itertools.pairwise(group.bounds)))


def ordered(ops: list[MOp], group: Interleave) -> list[MOp]:
    """The streams of `group` in its order: each entry takes that stream's next op."""
    streams = [iter(ops[start:end]) for start, end in itertools.pairwise(group.bounds)]
    return [next(streams[k]) for k in group.order]

"""Drop dead copies: ops whose every result lands in activation or accumulator buffers that no op
reads, and those buffers.

A convolution reads each run of its windows where the padded copy of its input took it from
(ops/conv.py, ops/depthwise.py `Reader`), so when every run it reads lies inside the input, the
padded copy (and the run of zeros it reads, and that constant's load) is made for nobody. The
lowering cannot know that when it emits the copy, before its readers; this pass, right after
it, can. Ops inside a recorded interleave or loop wave are kept, so those records only move.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from compiler.kernel import Kernel, MOp, Ref
from isa.table import BY_MNEMONIC

FREED = ("amem", "acc")  # memories whose unread buffers are dropped


def drop_dead_copies(kernel: Kernel) -> Kernel:
    """The kernel without its dead ops and buffers (see the module's docstring)."""
    reads = [_buffers(op, "reads") for op in kernel.ops]
    writes = [_buffers(op, "writes") for op in kernel.ops]
    kept = _protected(kernel)
    readers = Counter(name for names in reads for name in names)
    keep_buffers = {t.place.buffer for t in kernel.outputs} | {s.place.buffer for s in kernel.state}
    freed = {n for n, b in kernel.buffers.items() if b.memory in FREED and not b.persistent} - keep_buffers
    writers: dict[str, list[int]] = {}
    for index, names in enumerate(writes):
        for name in names:
            writers.setdefault(name, []).append(index)
    alive = np.ones(len(kernel.ops), bool)
    work = [name for name in freed if not readers[name]]
    while work:
        for index in writers.get(work.pop(), ()):
            if alive[index] and not kept[index] and writes[index] <= freed \
                    and not any(readers[name] for name in writes[index]):
                alive[index] = False
                for name in reads[index]:
                    readers[name] -= 1
                    if not readers[name] and name in freed:
                        work.append(name)
    if alive.all():
        return kernel
    return _without(kernel, alive)


def _buffers(op: MOp, side: str) -> frozenset[str]:
    """The buffers an op reads or writes, from the instruction table's accesses."""
    accesses = getattr(BY_MNEMONIC[op.mnemonic], side)
    return frozenset(value.buffer for a in accesses if isinstance(value := op.operands.get(a.operand), Ref))


def _protected(kernel: Kernel) -> np.ndarray:
    """Ops inside a recorded interleave or loop wave: removing them would change what those passes do."""
    kept = np.zeros(len(kernel.ops), bool)
    for group in kernel.interleaves:
        kept[group.bounds[0]:group.bounds[-1]] = True
    for loop in kernel.loops:
        for start, stop in loop.waves:
            kept[start:stop] = True
    return kept


def _without(kernel: Kernel, alive: np.ndarray) -> Kernel:
    """The kernel with only the `alive` ops, the recorded ranges moved up by the ops removed
    before them, and the activation and accumulator buffers no op touches any more left out."""
    shift = np.concatenate([[0], np.cumsum(~alive)])
    ops = tuple(op for op, live in zip(kernel.ops, alive) if live)
    touched = {v.buffer for op in ops for v in op.operands.values() if isinstance(v, Ref)}
    touched |= {t.place.buffer for t in (*kernel.inputs, *kernel.outputs, *kernel.state)}
    buffers = {n: b for n, b in kernel.buffers.items() if b.memory not in FREED or n in touched or b.persistent}
    kept_before = {}  # a dropped buffer -> the last kept buffer made before it (loop tables follow it)
    last = None
    for name in kernel.buffers:
        last = name if name in buffers else last
        kept_before[name] = last
    loops = tuple(dataclasses.replace(loop, waves=tuple((a - int(shift[a]), b - int(shift[b])) for a, b in loop.waves),
                                      table_after=kept_before[loop.table_after]) for loop in kernel.loops)
    interleaves = tuple(dataclasses.replace(group, bounds=tuple(b - int(shift[b]) for b in group.bounds))
                        for group in kernel.interleaves)
    return kernel.replace(ops=ops, buffers=buffers, loops=loops, interleaves=interleaves)

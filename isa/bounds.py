"""The lower bound on a program's cycles that no schedule can beat on a given array: the larger
of its useful MACs over the MAC lanes and its vector elements over the vector lanes. The
compiler's report and the simulator's statistics both measure against it.

A recurrent layer has a second bound, its recurrence: step t+1's product R h_t needs h_t, so each
step costs at least the product's MAC cycles, `mac_latency`, the vector unit's chain from the
last accumulator to the last h element, and `vec_latency` (docs/scheduling.md). The compiler
measures it from the layer's instructions (ISA costs, no trace) and stores it in the program."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from isa.encoding import Instruction
from isa.table import evaluate
from isa.target import Target


def vector_elements(instr: Instruction) -> int:
    """Elements a vector-unit instruction streams (1 for a scalar one such as VLOG)."""
    return instr["n"] if any(f.name == "n" for f in instr.op.fields) else 1


def bound_cycles(mac_ops: int, elements: int, target: Target) -> int:
    return max(math.ceil(mac_ops / target.macs), math.ceil(elements / target.vec_lanes))


def vector_chain(instrs: Sequence[Instruction], target: Target) -> int:
    """Cycles of the longest dependent run through `instrs` (vector instructions in program order,
    the values they read from elsewhere ready at cycle 0): each starts when what it reads is
    ready, takes its ISA cycles, and its result is readable `vec_latency` later. The vector unit's
    in-order queue is left out, so no schedule runs the chain faster. Each element keeps the
    latest time any write to it is readable, so the walk is linear in the instructions."""
    env, longest = target.env(), 0
    prints = [(instr, *instr.footprint(env)) for instr in instrs]
    extent: dict[str, int] = {}
    for _, reads, writes in prints:
        for memory, address, length in reads + writes:
            extent[memory] = max(extent.get(memory, 0), address + length)
    ready = {memory: np.zeros(size, np.int64) for memory, size in extent.items()}
    for instr, reads, writes in prints:
        start = max((int(ready[m][a:a + n].max()) for m, a, n in reads if n), default=0)
        end = start + evaluate(instr.op.cycles, instr.env(env))
        for m, a, n in writes:
            np.maximum(ready[m][a:a + n], end + target.vec_latency, out=ready[m][a:a + n])
        longest = max(longest, end)
    return longest


def recurrence_total(figures: list[dict]) -> dict:
    """The recurrence bound of islands that run one after the other, from each one's figures (a
    report's total, or statistics): the sum of theirs (an island without recurrent layers adds
    nothing); none when no island has one."""
    bounds = [f["recurrence_bound_cycles"] for f in figures if "recurrence_bound_cycles" in f]
    return {"recurrence_bound_cycles": sum(bounds)} if bounds else {}


def recurrence_cycles(product_macs: int, waves: int, chain: int, target: Target) -> int:
    """The recurrence bound of a layer: its recurrent products' MAC cycles, and per wave of steps
    the accumulators' latency, the vector chain and the vector latency before the next product."""
    return math.ceil(product_macs / target.macs) + waves * (target.mac_latency + chain + target.vec_latency)

"""The lower bound on a program's cycles that no schedule can beat on a given array: the larger
of its useful MACs over the MAC lanes and its vector elements over the vector lanes. The
compiler's report and the simulator's statistics both measure against it."""

from __future__ import annotations

import math

from isa.encoding import Instruction
from isa.target import Target


def vector_elements(instr: Instruction) -> int:
    """Elements a vector-unit instruction streams (1 for a scalar one such as VLOG)."""
    return instr["n"] if any(f.name == "n" for f in instr.op.fields) else 1


def bound_cycles(mac_ops: int, elements: int, target: Target) -> int:
    return max(math.ceil(mac_ops / target.macs), math.ceil(elements / target.vec_lanes))

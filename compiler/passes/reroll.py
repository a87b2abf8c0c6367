"""Loop rerolling: consecutive waves of a recurrent layer that differ only by constant address
steps become one hardware LOOP (isa/loops.py), so code size does not grow with the number of
timesteps. A wave is congruent with the next when every instruction has the same mnemonic and
operands except buffer offsets, and those move by the same amounts from wave to wave. Periods
of one wave and of two (double-buffered state) are tried; the longest run wins.
"""

from __future__ import annotations

import numpy as np

from compiler.kernel import MOp, Ref, Where, pack_ints
from compiler.passes.lowering import Lowering
from isa.loops import STRIDE_SLOTS
from isa.table import BY_MNEMONIC

LOOP_TABLES = "loop strides/"  # buffer-name prefix: the report counts these as code, not weights
PERIODS = (1, 2)
MIN_TRIPS = 3
MAX_STRIDE = 32767
MAX_BODY = (1 << BY_MNEMONIC["LOOP"].field("body").width) - 1
MAX_TRIPS = (1 << BY_MNEMONIC["LOOP"].field("count").width) - 1


def reroll(ctx: Lowering, segments: list[tuple[int, int]], name: str, where: Where) -> None:
    """Fold the longest congruent run of `segments` (op ranges of successive waves) into a LOOP."""
    best = max((_run(ctx.ops, segments, period) for period in PERIODS), key=lambda run: run[1] * run[2])
    first, trips, period, strides = best
    if trips < MIN_TRIPS:
        return
    start, end = segments[first][0], segments[first + trips * period - 1][1]
    body = ctx.ops[start:segments[first + period - 1][1]]
    table = ctx.data(f"{LOOP_TABLES}{name}@{start}", _stride_table(body, strides), "biases")
    loop = MOp("LOOP", {"count": trips, "body": len(body), "strides": table}, Where(where.node, where.layer,
                                                                                     body[0].where.step, what="loop"))
    ctx.ops[start:end] = [loop, *body]


def _run(ops: list[MOp], segments: list[tuple[int, int]], period: int) -> tuple[int, int, int, dict]:
    """(first wave, trips, period, strides) of the longest run of congruent chunks of `period` waves."""
    best = (0, 0, period, {})
    for offset in range(period):
        chunks = [ops[segments[i][0]:segments[i + period - 1][1]]
                  for i in range(offset, len(segments) - period + 1, period)]
        for begin in range(len(chunks)):
            trips, strides = _trips(chunks, begin)
            if trips > best[1] and 0 < len(chunks[begin]) <= MAX_BODY:
                best = (offset + begin * period, trips, period, strides)
            if trips > 1:
                break  # a later start only shortens this run
    return best


def _trips(chunks: list[list[MOp]], begin: int) -> tuple[int, dict]:
    strides = _deltas(chunks[begin], chunks[begin + 1]) if begin + 1 < len(chunks) else None
    if strides is None:
        return 1, {}
    trips = 2
    while begin + trips < len(chunks) and trips < MAX_TRIPS and \
            _deltas(chunks[begin + trips - 1], chunks[begin + trips]) == strides:
        trips += 1
    return trips, strides


def _deltas(a: list[MOp], b: list[MOp]) -> dict | None:
    """{(op index, operand): offset step} if b is a shifted copy of a, else None."""
    if len(a) != len(b):
        return None
    out = {}
    for index, (x, y) in enumerate(zip(a, b)):
        if x.mnemonic != y.mnemonic or x.mnemonic == "LOOP" or x.operands.keys() != y.operands.keys():
            return None
        for key, value in x.operands.items():
            other = y.operands[key]
            if isinstance(value, Ref) and isinstance(other, Ref) and value.buffer == other.buffer:
                step = other.offset - value.offset
                if abs(step) > MAX_STRIDE or step and key not in _advancing(x.mnemonic):
                    return None
                if step:
                    out[(index, key)] = step
            elif value != other:
                return None
    return out


def _advancing(mnemonic: str) -> set[str]:
    """The fields a LOOP can advance: those with a stride slot (isa.loops)."""
    return {f.name for f in BY_MNEMONIC[mnemonic].fields[:STRIDE_SLOTS]}


def _stride_table(body: list[MOp], strides: dict) -> bytes:
    table = np.zeros((len(body), STRIDE_SLOTS), np.int64)
    for index, op in enumerate(body):
        for slot, field in enumerate(BY_MNEMONIC[op.mnemonic].fields[:STRIDE_SLOTS]):
            table[index, slot] = strides.get((index, field.name), 0)
    return pack_ints(table.ravel(), "<i2")

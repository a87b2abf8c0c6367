"""Loop rerolling: consecutive waves of a recurrent layer that differ only by constant address
steps become one hardware LOOP (isa/loops.py), so code size does not grow with the number of
timesteps. A wave is congruent with the next when every instruction has the same mnemonic and
operands except buffer offsets, and those move by the same amounts from wave to wave. Periods
of one wave and of two (double-buffered state) are tried; the longest run wins.

The lowering records each layer's waves (kernel.LoopCandidate); reroll runs after interleave, so
it compares the waves as they will run. Each LOOP reads a stride table from weight memory, which
is laid out in creation order: a table goes where the lowering stood when it made the waves, and
is named after the index of the op at which its loop begins.
"""

from __future__ import annotations

import functools

import numpy as np

from compiler.kernel import Buffer, Kernel, MOp, Ref, Where, pack_ints
from isa.loops import STRIDE_SLOTS
from isa.table import BY_MNEMONIC

LOOP_TABLES = "loop strides/"  # buffer-name prefix: the report counts these as code, not weights
PERIODS = (1, 2)
MIN_TRIPS = 3
MAX_STRIDE = 32767
MAX_BODY = (1 << BY_MNEMONIC["LOOP"].field("body").width) - 1
MAX_TRIPS = (1 << BY_MNEMONIC["LOOP"].field("count").width) - 1


def reroll(kernel: Kernel) -> Kernel:
    """Fold each loop candidate's waves where they repeat, candidates in op order: a fold shortens
    the ops, so the waves of the candidates after it move up by what it removed."""
    starts = [candidate.waves[0][0] for candidate in kernel.loops if candidate.waves]
    assert starts == sorted(starts), "loop candidates out of op order"
    ops, tables, removed = list(kernel.ops), {}, 0
    for candidate in kernel.loops:
        before = len(ops)
        table = fold(ops, [(start - removed, stop - removed) for start, stop in candidate.waves], candidate.where)
        if table is not None:
            tables.setdefault(candidate.table_after, []).append(table)
        removed += before - len(ops)
    return kernel.replace(ops=tuple(ops), buffers=_with_tables(kernel.buffers, tables), loops=())


def fold(ops: list[MOp], segments: list[tuple[int, int]], where: Where) -> Buffer | None:
    """Fold the longest congruent run of `segments` (op ranges of successive waves) into a LOOP, in
    place; the LOOP's stride table, or None when no run is long enough."""
    best = max((_run(ops, segments, period) for period in PERIODS), key=lambda run: run[1] * run[2])
    first, trips, period, strides = best
    if trips < MIN_TRIPS:
        return None
    start, end = segments[first][0], segments[first + trips * period - 1][1]
    body = ops[start:segments[first + period - 1][1]]
    payload = _stride_table(body, strides)
    table = Buffer(f"{LOOP_TABLES}{where.node}@{start}", "wmem", len(payload), payload, "biases")
    loop = MOp("LOOP", {"count": trips, "body": len(body), "strides": Ref(table.name)},
               Where(where.node, where.layer, body[0].where.step, what="loop"))
    ops[start:end] = [loop, *body]
    return table


def _with_tables(buffers: dict[str, Buffer], tables: dict[str, list[Buffer]]) -> dict[str, Buffer]:
    """The buffers in creation order, each stride table right after the buffer it follows."""
    assert tables.keys() <= buffers.keys(), "a stride table follows a buffer that does not exist"
    out: dict[str, Buffer] = {}
    for name, buf in buffers.items():
        out[name] = buf
        for table in tables.get(name, ()):
            assert table.name not in buffers, f"buffer {table.name} made twice"
            out[table.name] = table
    return out


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
        if x.operands == y.operands:
            continue  # the common case, compared in one go
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


@functools.cache
def _advancing(mnemonic: str) -> frozenset[str]:
    """The fields a LOOP can advance: those with a stride slot (isa.loops)."""
    return frozenset(f.name for f in BY_MNEMONIC[mnemonic].fields[:STRIDE_SLOTS])


def _stride_table(body: list[MOp], strides: dict) -> bytes:
    table = np.zeros((len(body), STRIDE_SLOTS), np.int64)
    for index, op in enumerate(body):
        for slot, field in enumerate(BY_MNEMONIC[op.mnemonic].fields[:STRIDE_SLOTS]):
            table[index, slot] = strides.get((index, field.name), 0)
    return pack_ints(table.ravel(), "<i2")

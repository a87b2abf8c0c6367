"""Loop rerolling: consecutive waves of a recurrent layer that differ only by constant address
steps become one hardware LOOP (isa/loops.py), so code size does not grow with the number of
timesteps. A wave is congruent with the next when every instruction has the same mnemonic and
operands except buffer offsets, and those move by the same amounts from wave to wave. Periods
of one wave and of two (double-buffered state) are tried; the longest run wins.

The lowering records each layer's waves (kernel.LoopCandidate); reroll runs after interleave, so
it compares the waves as they will run. A candidate may leave out the alike waves of its middle
(kernel.LoopCandidate.missing): each pair of chunks there compares as a lowered pair before them,
and the run is counted across them in one go, so folding costs the same at any number of steps.

Each LOOP reads a stride table from weight memory, which
is laid out in creation order: a table goes where the lowering stood when it made the waves, and
is named after the index of the op at which its loop begins.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

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
        segments = [(start - removed, stop - removed) for start, stop in candidate.waves]
        table = fold(ops, segments, candidate.where, candidate.missing)
        if table is not None:
            tables.setdefault(candidate.table_after, []).append(table)
        removed += before - len(ops)
    return kernel.replace(ops=tuple(ops), buffers=_with_tables(kernel.buffers, tables), loops=())


@dataclass(frozen=True)
class Waves:
    """A layer's waves, some of them lowered (`segments`) and, with `missing` = (gap, count),
    `count` alike waves left out before segments[gap]. A pair of chunks that touches a missing
    wave lies in the alike middle: it compares as the last lowered pair before the gap whose first
    wave has the same parity (a state alternating between two buffers alternates its strides)."""

    ops: list[MOp]
    segments: list[tuple[int, int]]
    missing: tuple[int, int]
    known: dict[tuple[int, int], dict | None] = field(default_factory=dict)  # (first, period) -> deltas

    def __len__(self) -> int:
        return len(self.segments) + self.missing[1]

    def lowered(self, wave: int) -> int | None:
        """The segment of wave `wave`, or None if it was left out."""
        gap, count = self.missing
        if wave < gap:
            return wave
        return wave - count if wave >= gap + count else None

    def chunk(self, first: int, period: int) -> list[MOp] | None:
        ends = self.lowered(first), self.lowered(first + period - 1)
        if None in ends or ends[1] - ends[0] != period - 1:
            return None
        return self.ops[self.segments[ends[0]][0]:self.segments[ends[1]][1]]

    def touches(self, first: int, period: int) -> bool:
        """Whether the pair of chunks at wave `first` has a wave left out."""
        gap, count = self.missing
        return count > 0 and gap - 2 * period < first < gap + count

    def stand_in(self, first: int, period: int) -> int:
        """The first wave of the lowered pair of chunks that a pair in the alike middle compares as."""
        gap = self.missing[0]
        stand_in = gap - 2 * period - (gap - 2 * period - first) % 2
        assert stand_in >= 1 and self.chunk(stand_in, 2 * period) is not None, "too few waves before the gap"
        return stand_in

    def deltas(self, first: int, period: int) -> dict | None:
        """The strides from the chunk at wave `first` to the next one."""
        if self.touches(first, period):
            first = self.stand_in(first, period)
        if (first, period) not in self.known:
            self.known[first, period] = _deltas(self.chunk(first, period), self.chunk(first + period, period))
        return self.known[first, period]

    def alike_after(self, first: int, period: int, strides: dict | None) -> int:
        """How many pairs of chunks after the one at wave `first` compare as `strides` without a
        look at each: those that touch the left-out waves, when this one does and the next one
        (the other parity) compares so too; else 0."""
        gap, count = self.missing
        if not self.touches(first, period):
            return 0
        pairs = (gap + count - 1 - first) // period
        return pairs if pairs > 0 and self.deltas(first + period, period) == strides else 0

    def length(self, first: int, period: int) -> int:
        chunk = self.chunk(first, period)
        return len(chunk if chunk is not None else self.chunk(self.stand_in(first, period), period))

    def span(self, first: int, last: int) -> tuple[int, int]:
        """The op range from wave `first` to wave `last`, both lowered."""
        ends = self.lowered(first), self.lowered(last)
        assert None not in ends, "a folded run begins or ends on a wave left out"
        return self.segments[ends[0]][0], self.segments[ends[1]][1]


def fold(ops: list[MOp], segments: list[tuple[int, int]], where: Where,
         missing: tuple[int, int] = (0, 0)) -> Buffer | None:
    """Fold the longest congruent run of `segments` (op ranges of successive waves; `missing`: see
    Waves) into a LOOP, in place; the LOOP's stride table, or None when no run is long enough."""
    waves = Waves(ops, segments, missing)
    best = max((_run(waves, period) for period in PERIODS), key=lambda run: run[1] * run[2])
    first, trips, period, strides = best
    if trips < MIN_TRIPS:
        assert not missing[1], "waves left out of a layer whose waves do not fold"
        return None
    start, end = waves.span(first, first + trips * period - 1)
    body = ops[start:waves.span(first, first + period - 1)[1]]
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


def _run(waves: Waves, period: int) -> tuple[int, int, int, dict]:
    """(first wave, trips, period, strides) of the longest run of congruent chunks of `period` waves."""
    best = (0, 0, period, {})
    for offset in range(period):
        chunks = range(offset, len(waves) - period + 1, period)  # each chunk's first wave
        begin = 0
        while begin < len(chunks):
            trips, strides = _trips(waves, chunks, begin, period)
            if trips > best[1] and 0 < waves.length(chunks[begin], period) <= MAX_BODY:
                best = (chunks[begin], trips, period, strides)
            if trips > 1:
                break  # a later start only shortens this run
            begin += 1 + waves.alike_after(chunks[begin], period, None)  # starts alike fail alike
    return best


def _trips(waves: Waves, chunks: range, begin: int, period: int) -> tuple[int, dict]:
    strides = waves.deltas(chunks[begin], period) if begin + 1 < len(chunks) else None
    if strides is None:
        return 1, {}
    trips, most = 2, min(len(chunks) - begin, MAX_TRIPS)
    while trips < most and waves.deltas(first := chunks[begin + trips - 1], period) == strides:
        trips = min(trips + 1 + waves.alike_after(first, period, strides), most)
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
        for slot, operand in enumerate(BY_MNEMONIC[op.mnemonic].fields[:STRIDE_SLOTS]):
            table[index, slot] = strides.get((index, operand.name), 0)
    return pack_ints(table.ravel(), "<i2")

"""The machine-level IR: instructions over symbolic buffers, before addresses exist.

Lowering turns graph nodes into MOps whose address operands are Refs (a buffer and an offset)
and records, as data, what the scheduling passes after it do to those ops: streams to interleave
(Interleave) and waves to fold into hardware loops (LoopCandidate). Allocation gives every buffer
a base address in its memory; emission resolves the Refs and encodes the instructions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from compiler.ir import Packing


class Ref(NamedTuple):
    """An address: `offset` units into buffer `buffer`. A named tuple rather than a frozen
    dataclass: a long sequence makes hundreds of thousands, and reroll compares them all."""

    buffer: str
    offset: int = 0

    def __add__(self, delta: int) -> Ref:  # type: ignore[override]  # an address moves; tuples do not concatenate
        return tuple.__new__(Ref, (self.buffer, self.offset + delta))


@dataclass(frozen=True)
class Buffer:
    """A block of one memory. Weight-memory buffers carry their initial bytes and region; a
    persistent buffer (a streaming program's recurrent state) keeps its value between runs."""

    name: str
    memory: str
    size: int
    data: bytes | None = None
    region: str | None = None
    persistent: bool = False


@dataclass(frozen=True, slots=True)  # one per instruction of a long sequence, before reroll folds them
class Where:
    """What an instruction is for, as the listing's comment and the report tell it."""

    node: str
    layer: int
    step: int = -1
    tile: int = -1
    what: str = ""


@dataclass(frozen=True, slots=True)  # one per instruction of a long sequence, before reroll folds them
class MOp:
    mnemonic: str
    operands: dict[str, int | str | Ref]
    where: Where


@dataclass(frozen=True)
class Interleave:
    """Independent streams of ops, side by side: stream i is ops[bounds[i]:bounds[i + 1]].
    Interleaving them one by one gives the in-order vector unit an independent instruction to
    issue while another waits for its operand (passes/interleave.py). `delays`, if any: how many
    rounds each stream joins late (its first ops wait for a later MAC tile). `order`, if any:
    the stream whose next op comes next, op by op, instead of one op of each in turn."""

    bounds: tuple[int, ...]
    delays: tuple[int, ...] = ()
    order: tuple[int, ...] = ()


@dataclass(frozen=True)
class LoopCandidate:
    """The waves of a recurrent layer, as op ranges [start, end), that reroll tries to fold into a
    LOOP (passes/reroll.py). Its stride table is a weight-memory buffer that goes right after
    `table_after` in creation order, where the lowering stood when it made the waves, because
    weight memory is laid out in creation order.

    `missing` = (gap, count): a layer whose middle waves are all alike was lowered without `count`
    of them, which would stand before waves[gap]; reroll folds as if they were there (each a shifted
    copy of the waves around it), so the lowering's work does not grow with the steps."""

    waves: tuple[tuple[int, int], ...]
    where: Where  # the layer: names the table and the LOOP
    table_after: str
    missing: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class IOTensor:
    name: str
    shape: tuple[int, ...]
    scale: float
    host: Ref
    place: Ref
    packing: Packing | None = None  # a scale per slice (passes/packing.py)


@dataclass(frozen=True)
class StateTensor:
    """A value kept in activation memory between runs (a persistent buffer): a recurrent layer's
    own h or c, or a bound graph input whose pair `output` carries it out. Its shape and scale
    let a host read or write it as floats."""

    name: str
    shape: tuple[int, ...]
    scale: float
    place: Ref
    packing: Packing | None = None
    output: str = ""


@dataclass(frozen=True)
class Kernel:
    buffers: dict[str, Buffer]
    ops: tuple[MOp, ...]
    inputs: tuple[IOTensor, ...]
    outputs: tuple[IOTensor, ...]
    tables: tuple[str, ...] = ()  # activation tables, in the order VACT numbers them
    addresses: dict[str, int] = field(default_factory=dict)
    interleaves: tuple[Interleave, ...] = ()  # left to do: passes/interleave.py
    loops: tuple[LoopCandidate, ...] = ()  # left to do: passes/reroll.py
    state: tuple[StateTensor, ...] = ()
    shared: dict[str, str] = field(default_factory=dict)  # weight buffer asked for -> the one holding its payload

    def replace(self, **changes) -> Kernel:
        return dataclasses.replace(self, **changes)


def pack_ints(values: np.ndarray, dtype: str) -> bytes:
    """Little-endian bytes of an integer array, checked to fit `dtype`."""
    info = np.iinfo(np.dtype(dtype))
    values = np.asarray(values, dtype=np.int64)
    assert values.size == 0 or (values.min() >= info.min and values.max() <= info.max), "value does not fit"
    return values.astype(np.dtype(dtype).newbyteorder("<")).tobytes()

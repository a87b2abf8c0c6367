"""Shared machinery for lowering graph nodes to machine ops over symbolic buffers: buffers, emission,
constants and tables, and the records of what the scheduling passes after lowering do with the
ops (streams to interleave, waves to fold into loops). Matrices (placement and the instructions
that use them) are matrices.py's."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from compiler.ir import Graph
from compiler.kernel import Buffer, Interleave, LoopCandidate, MOp, Ref, StateTensor, Where, pack_ints
from isa.table import BY_MNEMONIC, stride
from isa.target import Target

MIN_RUN = 8  # shorter repeating runs are not worth an LDC each


def period(values: np.ndarray) -> int:
    """The length of the shortest run that `values` repeats (its whole length if none)."""
    n = len(values)
    for run in range(MIN_RUN, n // 2 + 1):
        # values repeat with period `run` when they equal themselves shifted by it; the first few
        # compared alone turn most candidates down without reading a large matrix whole
        if n % run == 0 and values[run] == values[0] and np.array_equal(values[run:], values[:-run]):
            return run
    return n


@functools.cache
def _piecing(mnemonic: str) -> tuple[int, dict[str, int]]:
    """An element-wise op's most elements per instruction and each address operand's stride: read
    from the ISA table once per mnemonic, because a long sequence emits hundreds of thousands."""
    op = BY_MNEMONIC[mnemonic]
    return op.field("n").limit - 1, {a.operand: stride(mnemonic, a.operand) for a in op.reads + op.writes}


@dataclass
class Lowering:
    """The state of lowering one graph: buffers made so far, ops emitted, tensor places, and the
    interleavings and loop candidates recorded for the passes after it."""

    graph: Graph
    target: Target
    buffers: dict[str, Buffer] = field(default_factory=dict)
    ops: list[MOp] = field(default_factory=list)
    places: dict[str, Ref] = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)
    interleaves: list[Interleave] = field(default_factory=list)
    loops: list[LoopCandidate] = field(default_factory=list)
    state: list[StateTensor] = field(default_factory=list)
    stored: dict[tuple[str, bytes], str] = field(default_factory=dict)  # (region, payload) -> its buffer
    shared: dict[str, str] = field(default_factory=dict)  # a weight buffer asked for -> the one that holds it

    def buffer(self, name: str, memory: str, size: int, data: bytes | None = None,
               region: str | None = None, persistent: bool = False) -> Ref:
        assert name not in self.buffers, f"buffer {name} made twice"
        self.buffers[name] = Buffer(name, memory, size, data, region, persistent)
        return Ref(name)

    def state_buffer(self, buffer: str, state: StateTensor) -> Ref:
        """A persistent activation-memory buffer for `state` (its place is set here): kept between
        runs, zeroed for a new stream."""
        place = self.buffer(buffer, "amem", int(np.prod(state.shape, dtype=np.int64)), persistent=True)
        self.state.append(dataclasses.replace(state, place=place))
        return place

    def place(self, tensor: str) -> Ref:
        """A fresh activation-memory buffer for a tensor the node computes."""
        self.places[tensor] = self.buffer(f"t:{tensor}", "amem", self.graph.size(tensor))
        return self.places[tensor]

    def emit(self, mnemonic: str, where: Where, **operands: int | str | Ref) -> None:
        self.ops.append(MOp(mnemonic, operands, where))

    def emit_elementwise(self, mnemonic: str, where: Where, n: int, **operands: int | str | Ref) -> None:
        """Emit an element-wise op over n elements, in as many pieces as its `n` field needs."""
        limit, strides = _piecing(mnemonic)
        if n <= limit:  # one piece, the common case: nothing moves
            self.ops.append(MOp(mnemonic, {"n": n, **operands}, where))
            return
        for start in range(0, n, limit):
            moved = {k: v + start * strides[k] if isinstance(v, Ref) else v for k, v in operands.items()}
            self.emit(mnemonic, where, n=min(limit, n - start), **moved)

    def side_by_side(self, streams: Iterable[Callable[[], None]], delays: tuple[int, ...] = (),
                     order: tuple[int, ...] = ()) -> None:
        """Emit each stream whole, one after the other, and record them to be interleaved one by one
        (passes/interleave.py): emitted whole, each stream's ops are plain to read and test.
        `delays`: the rounds each stream joins the interleaving late; `order`: the streams' ops
        in this order instead (kernel.Interleave)."""
        bounds = [len(self.ops)]
        for emit_stream in streams:
            emit_stream()
            bounds.append(len(self.ops))
        if len(bounds) > 2:
            self.interleaves.append(Interleave(tuple(bounds), delays if any(delays) else (), order))

    def loop_candidate(self, waves: Iterable[tuple[int, int]], where: Where, missing: tuple[int, int] = (0, 0)) -> None:
        """Record waves (op ranges) for reroll to fold; the stride table it may make belongs here in
        creation order, after the last buffer made so far. `missing`: see kernel.LoopCandidate."""
        self.loops.append(LoopCandidate(tuple(waves), where, next(reversed(self.buffers)), missing))

    def activation(self, spec: str, where: Where, n: int, dst: Ref, src: Ref, up: int = 0) -> None:
        """dst = f(src): Relu exactly, anything else through the vector unit's table for `spec`,
        which reads src shifted `up` bits into Q3.12."""
        if spec == "relu":
            self.emit_elementwise("VRELU", where, n, dst=dst, src=src)
            return
        self.emit_elementwise("VACT", where, n, dst=dst, src=src, table=self.table(spec), up=up)

    def table(self, name: str) -> int:
        """The number an instruction names table `name` by, adding the table to the program if new."""
        if name not in self.tables:
            self.tables.append(name)
        return self.tables.index(name)

    def constant(self, name: str, values: np.ndarray, where: Where) -> Ref:
        """An activation-memory copy of int16 constants kept in weight memory, made the first time
        it is asked for. A constant that repeats a shorter run (a broadcast bias) stores the run
        once and copies it as often as it repeats."""
        if name in self.buffers:
            return Ref(name)
        flat = np.asarray(values).ravel()
        run = period(flat)
        src = self.data(f"{name}/value", pack_ints(flat[:run], "<i2"), "biases")
        dst = self.buffer(name, "amem", len(flat))
        for start in range(0, len(flat), run):
            self.emit_elementwise("LDC", where, run, dst=dst + start, src=src)
        return dst

    def data(self, name: str, payload: bytes, region: str) -> Ref:
        """A weight-memory buffer holding `payload`. Weight memory is only read, so a payload the
        region already holds (one initialiser read by several MatMul or Gemm nodes, a zero bias) is
        stored once, whichever op asks: the buffer `name` becomes another name for the first one
        (recorded in `shared`, which the report reads). Asking twice for one name and payload is fine."""
        kept = self.stored.get((region, payload))
        if kept is not None:
            if kept != name:
                self.shared[name] = kept
            return Ref(kept)
        self.stored[(region, payload)] = name
        return self.buffer(name, "wmem", len(payload), payload, region)

    def streams(self, name: str, parts: list[bytes]) -> tuple[Ref, ...]:
        """Consecutive byte strings in one weights buffer; a Ref to the start of each."""
        whole = self.data(name, b"".join(parts), "weights")
        starts = np.cumsum([0] + [len(p) for p in parts[:-1]])
        return tuple(whole + int(start) for start in starts)

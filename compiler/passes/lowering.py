"""Shared machinery for lowering graph nodes to machine ops over symbolic buffers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler.ir import Graph, Node
from compiler.kernel import Buffer, MOp, Ref, Where, pack_ints
from compiler.passes.placement import WEIGHT_DTYPES, MatrixRefs, place_compressed
from isa.table import BY_MNEMONIC, stride
from isa.target import Target

MAX_SPLIT = (1 << BY_MNEMONIC["MV"].field("split").width) - 1
MIN_RUN = 8  # shorter repeating runs are not worth an LDC each


def period(values: np.ndarray) -> int:
    """The length of the shortest run that `values` repeats (its whole length if none)."""
    n = len(values)
    for run in range(MIN_RUN, n // 2 + 1):
        if n % run == 0 and np.array_equal(values, np.tile(values[:run], n // run)):
            return run
    return n


def best_split(rows: int, cols: int, macs: int) -> int:
    """How many lane groups share a tile's columns: a tile of few rows fills the idle lanes with
    other column ranges (SPEC rule 3: ceil(cols/split) + split - 1 cycles on rows x split lanes)."""
    choices = range(1, min(macs // rows, cols, MAX_SPLIT) + 1)
    return min(choices, key=lambda s: (-(-cols // s) + s - 1, s))


@dataclass
class Lowering:
    """The state of lowering one graph: buffers made so far, ops emitted, tensor places."""

    graph: Graph
    target: Target
    buffers: dict[str, Buffer] = field(default_factory=dict)
    ops: list[MOp] = field(default_factory=list)
    places: dict[str, Ref] = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)

    def buffer(self, name: str, memory: str, size: int, data: bytes | None = None,
               region: str | None = None, persistent: bool = False) -> Ref:
        assert name not in self.buffers, f"buffer {name} made twice"
        self.buffers[name] = Buffer(name, memory, size, data, region, persistent)
        return Ref(name)

    def place(self, tensor: str) -> Ref:
        """A fresh activation-memory buffer for a tensor the node computes."""
        self.places[tensor] = self.buffer(f"t:{tensor}", "amem", self.graph.size(tensor))
        return self.places[tensor]

    def emit(self, mnemonic: str, where: Where, **operands: int | str | Ref) -> None:
        self.ops.append(MOp(mnemonic, operands, where))

    def emit_elementwise(self, mnemonic: str, where: Where, n: int, **operands: int | str | Ref) -> None:
        """Emit an element-wise op over n elements, in as many pieces as its `n` field needs."""
        op = BY_MNEMONIC[mnemonic]
        limit = op.field("n").limit - 1
        strides = {a.operand: stride(mnemonic, a.operand) for a in op.reads + op.writes}
        for start in range(0, n, limit):
            moved = {k: v + start * strides[k] if isinstance(v, Ref) else v for k, v in operands.items()}
            self.emit(mnemonic, where, n=min(limit, n - start), **moved)

    def activation(self, spec: str, where: Where, n: int, dst: Ref, src: Ref) -> None:
        """dst = f(src): Relu exactly, anything else through the vector unit's table for `spec`."""
        if spec == "relu":
            self.emit_elementwise("VRELU", where, n, dst=dst, src=src)
            return
        self.emit_elementwise("VACT", where, n, dst=dst, src=src, table=self.table(spec))

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

    def matrix(self, node: Node, key: str) -> MatrixRefs:
        """Put a quantised matrix into weight memory: tiles, biases, requantisation params."""
        q, tiles, base = node.attrs[key].reordered(node.attrs["row_order"][key]), node.attrs["tiles"][key], \
            f"{node.source}/{key}"
        if q.codebook is not None:
            return place_compressed(self, q, tiles, base, Where(node.source, -1, what=f"{key} codebook"))
        dtype = WEIGHT_DTYPES[self.target.weight_bits]
        streams = [pack_ints(q.weights[r0:r1].T.ravel(), dtype) for r0, r1 in tiles]
        params = pack_ints(np.stack([q.mult, q.shift], axis=1).ravel(), "<i2")
        bias = None
        if q.bias is not None:
            bias = self.data(f"{base}/bias", pack_ints(q.bias, "<i4"), "biases")
        return MatrixRefs(q, tiles, self.streams(f"{base}/weights", streams), self.data(f"{base}/requant", params,
                                                                                          "biases"), bias)

    def data(self, name: str, payload: bytes, region: str) -> Ref:
        """A weight-memory buffer holding `payload`."""
        return self.buffer(name, "wmem", len(payload), payload, region)

    def streams(self, name: str, parts: list[bytes]) -> tuple[Ref, ...]:
        """Consecutive byte strings in one weights buffer; a Ref to the start of each."""
        whole = self.data(name, b"".join(parts), "weights")
        starts = np.cumsum([0] + [len(p) for p in parts[:-1]])
        return tuple(whole + int(start) for start in starts)

    def matvec(self, m: MatrixRefs, x: Ref, acc: Ref, where: Where,
               columns: tuple[tuple[int, int], ...] | None = None) -> None:
        """acc[0:rows] = (bias +) W x, one instruction per row tile; with `columns` (plain matrices
        only), per column range and row tile, the later ranges accumulating (MVA), so each range
        can start as soon as its part of x exists."""
        assert columns is None or not m.slots, "compressed matrices have no accumulating form"
        for part, (k0, k1) in enumerate(columns or ((0, m.q.cols),)):
            for index, (r0, r1) in enumerate(m.tiles):
                operands = {"acc": acc + r0, "w": m.weights[index] + k0 * (r1 - r0) * self.target.weight_bytes,
                            "x": x + k0, "rows": r1 - r0, "cols": k1 - k0,
                            "split": best_split(r1 - r0, k1 - k0, self.target.macs)}
                tile_where = Where(where.node, where.layer, where.step, index, where.what)
                if m.nnz:
                    self.emit("MVCS", tile_where, cb=m.slots[index], bits=m.q.codebook.bits, nnz=m.nnz[index],
                              **operands)
                elif m.slots:
                    self.emit("MVC", tile_where, cb=m.slots[index], bits=m.q.codebook.bits, **operands)
                elif part:
                    self.emit("MVA", tile_where, **operands)
                elif m.bias is None:
                    self.emit("MV", tile_where, **operands)
                else:
                    self.emit("MVB", tile_where, bias=m.bias + stride("MVB", "bias") * r0, **operands)

    def requantize(self, m: MatrixRefs, where: Where, dst: Ref, src: Ref, add: Ref | None = None,
                   row: int = 0, rows: tuple[int, int] | None = None) -> None:
        """dst = requantise(acc), plus `add` or (compressed) the bias, for the matrix's stored rows
        `rows` (default all; dst, src and add point at the first of them) of input row `row`."""
        r0, r1 = rows or (0, m.q.rows)
        n = r1 - r0
        if not m.slots:
            if add is None:
                self.emit("VRQ", where, dst=dst, src=src, n=n, q=m.params + stride("VRQ", "q") * r0)
            else:
                self.emit("VRQA", where, dst=dst, src=src, n=n, q=m.params + stride("VRQA", "q") * r0, add=add)
        elif add is not None:
            self.emit("VRQAC", where, dst=dst, src=src, n=n, q=m.params, add=add)
        else:
            per_row = m.q.out_bias is not None and m.q.out_bias.ndim > 1  # one bias vector per input row
            bias = self.zeros(n) if m.out_bias is None else \
                m.out_bias + (row * m.q.rows * per_row + r0) * self.target.weight_bytes
            self.emit("VRQC", where, dst=dst, src=src, n=n, q=m.params, bias=bias, bshift=m.q.bias_shift)

    def zeros(self, n: int) -> Ref:
        """A shared run of zero biases for compressed matrices that have none."""
        name = f"zero biases/{n}"
        if name not in self.buffers:
            self.data(name, bytes(n * self.target.weight_bytes), "biases")
        return Ref(name)

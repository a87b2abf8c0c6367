"""Shared machinery for lowering graph nodes to machine ops over symbolic buffers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler.ir import Graph, Node, QMatrix
from compiler.kernel import Buffer, MOp, Ref, Where, pack_ints
from isa.table import BY_MNEMONIC, CONSTANTS, evaluate
from isa.target import Target


@dataclass(frozen=True)
class MatrixRefs:
    """Where one quantised matrix lives in weight memory."""

    q: QMatrix
    tiles: tuple[tuple[int, int], ...]
    weights: Ref
    params: Ref
    bias: Ref | None


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
               region: str | None = None) -> Ref:
        assert name not in self.buffers, f"buffer {name} made twice"
        self.buffers[name] = Buffer(name, memory, size, data, region)
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
        strides = {a.operand: evaluate(a.length, {**CONSTANTS, "n": 1}) for a in op.reads + op.writes}
        for start in range(0, n, limit):
            moved = {k: v + start * strides[k] if isinstance(v, Ref) else v for k, v in operands.items()}
            self.emit(mnemonic, where, n=min(limit, n - start), **moved)

    def activation(self, spec: str, where: Where, n: int, dst: Ref, src: Ref) -> None:
        """dst = f(src): Relu exactly, anything else through the vector unit's table for `spec`."""
        if spec == "relu":
            self.emit_elementwise("VRELU", where, n, dst=dst, src=src)
            return
        if spec not in self.tables:
            self.tables.append(spec)
        self.emit_elementwise("VACT", where, n, dst=dst, src=src, table=self.tables.index(spec))

    def constant(self, name: str, values: np.ndarray, where: Where) -> Ref:
        """An activation-memory copy of int16 constants kept in weight memory (one LDC)."""
        data = pack_ints(np.asarray(values).ravel(), "<i2")
        src = self.buffer(f"{name}/value", "wmem", len(data), data, "biases")
        dst = self.buffer(name, "amem", len(data) // 2)
        self.emit_elementwise("LDC", where, len(data) // 2, dst=dst, src=src)
        return dst

    def matrix(self, node: Node, key: str) -> MatrixRefs:
        """Put a quantised matrix into weight memory: tiles, biases, requantisation params."""
        q, tiles = node.attrs[key], node.attrs["tiles"][key]
        dtype = {8: "i1", 16: "<i2"}[self.target.weight_bits]
        packed = b"".join(pack_ints(q.weights[r0:r1].T.ravel(), dtype) for r0, r1 in tiles)
        params = pack_ints(np.stack([q.mult, q.shift], axis=1).ravel(), "<i2")
        base = f"{node.source}/{key}"
        weights = self.buffer(f"{base}/weights", "wmem", len(packed), packed, "weights")
        param_ref = self.buffer(f"{base}/requant", "wmem", len(params), params, "biases")
        bias = None
        if q.bias is not None:
            data = pack_ints(q.bias, "<i4")
            bias = self.buffer(f"{base}/bias", "wmem", len(data), data, "biases")
        return MatrixRefs(q, tiles, weights, param_ref, bias)

    def matvec(self, m: MatrixRefs, x: Ref, acc: Ref, where: Where) -> None:
        """acc[0:rows] = (bias +) W x, one instruction per row tile."""
        for index, (r0, r1) in enumerate(m.tiles):
            operands = {"acc": acc + r0, "w": m.weights + r0 * m.q.cols * self.target.weight_bytes, "x": x,
                            "rows": r1 - r0, "cols": m.q.cols}
            tile_where = Where(where.node, where.layer, where.step, index, where.what)
            if m.bias is None:
                self.emit("MV", tile_where, **operands)
            else:
                self.emit("MVB", tile_where, bias=m.bias + 4 * r0, **operands)

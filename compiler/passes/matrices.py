"""A quantised matrix on the chip: where it lives and the instructions that use it.

A plain matrix is its tiles' weights (k-major), a bias at accumulator scale and a requantisation
pair per row. A compressed one is index streams per tile (a pruned one's led by its bitmap),
codebooks loaded into the decompression engine's codebook memory (CBLOAD, on its own unit, so it
overlaps the rest), one requantisation pair, and the bias in the output's format. `matvec` and
`requantize` choose the instruction each form needs (MV, MVB, MVA, MVC, MVCS; VRQ, VRQA, VRQC,
VRQAC)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.ir import Codebook, QMatrix
from compiler.kernel import Ref, Where, pack_ints
from compiler.passes.lowering import Lowering
from compiler.passes.tile import best_split
from isa.bitstream import pack_indices
from isa.errors import RnnaccelError
from isa.table import BY_MNEMONIC, CODEBOOK_SLOT, stride

MAX_KEPT = BY_MNEMONIC["MVCS"].field("nnz").high
WEIGHT_DTYPES = {8: "i1", 16: "<i2"}


@dataclass(frozen=True)
class MatrixRefs:
    """Where one quantised matrix lives: its tiles' weights (or index streams), biases,
    requantisation parameters and, compressed, the codebook slot of each tile."""

    q: QMatrix
    tiles: tuple[tuple[int, int], ...]
    weights: tuple[Ref, ...]  # per tile
    params: Ref
    bias: Ref | None  # at accumulator scale (plain matrices)
    slots: tuple[Ref, ...] = ()  # per tile, compressed matrices
    out_bias: Ref | None = None  # in the output's format (compressed matrices)
    nnz: tuple[int, ...] = ()  # per tile, pruned matrices: the weights each tile keeps (MVCS nnz)


def place_matrix(ctx: Lowering, matrix: QMatrix, source: str, key: str) -> MatrixRefs:
    """Put node `source`'s quantised matrix `key` into weight memory, rows in storage order: tiles
    (or index streams), biases, requantisation params."""
    q, tiles, base = matrix.stored(), matrix.tiles, f"{source}/{key}"
    if q.codebook is not None:
        return place_compressed(ctx, q, tiles, base, Where(source, -1, what=f"{key} codebook"))
    dtype = WEIGHT_DTYPES[ctx.target.weight_bits]
    streams = [pack_ints(q.weights[r0:r1].T.ravel(), dtype) for r0, r1 in tiles]
    params = pack_ints(np.stack([q.mult, q.shift], axis=1).ravel(), "<i2")
    bias = None
    if q.bias is not None:
        bias = ctx.data(f"{base}/bias", pack_ints(q.bias, "<i4"), "biases")
    return MatrixRefs(q, tiles, ctx.streams(f"{base}/weights", streams), ctx.data(f"{base}/requant", params,
                                                                                      "biases"), bias)


def place_compressed(ctx: Lowering, q: QMatrix, tiles: tuple[tuple[int, int], ...], base: str,
                     where: Where) -> MatrixRefs:
    book = q.codebook
    weights = ctx.streams(f"{base}/indices", [tile_stream(book, r0, r1) for r0, r1 in tiles])
    dtype = WEIGHT_DTYPES[ctx.target.weight_bits]
    entries = ctx.data(f"{base}/codebooks", pack_ints(book.entries.ravel(), dtype), "weights")
    slots = ctx.buffer(f"{base}/codebooks:cbm", "cbm", CODEBOOK_SLOT * len(book.entries))
    size = 1 << book.bits
    for g in range(len(book.entries)):
        ctx.emit("CBLOAD", where, dst=slots + g * CODEBOOK_SLOT,
                 src=entries + g * size * ctx.target.weight_bytes, n=size)
    params = ctx.data(f"{base}/requant", pack_ints(np.array([q.mult[0], q.shift[0]]), "<i2"), "biases")
    out_bias = None
    if q.out_bias is not None:
        out_bias = ctx.data(f"{base}/bias", pack_ints(q.out_bias.ravel(), dtype), "biases")
    assert all(len(set(book.group_of_row[r0:r1])) == 1 for r0, r1 in tiles), "a tile uses one codebook"
    tile_slots = tuple(slots + int(book.group_of_row[r0]) * CODEBOOK_SLOT for r0, _ in tiles)
    return MatrixRefs(q, tiles, weights, params, None, tile_slots, out_bias, _kept_counts(book, tiles, base))


def tile_stream(book: Codebook, r0: int, r1: int) -> bytes:
    """A tile's bytes, k-major as the engine reads them: its indices (MVC), or its bitmap and then
    the kept weights' indices (MVCS)."""
    index = book.indices[r0:r1].T
    if book.kept is None:
        return pack_indices(index, book.bits)
    kept = book.kept[r0:r1].T
    return pack_indices(kept, 1) + pack_indices(index[kept], book.bits)


def _kept_counts(book: Codebook, tiles: tuple[tuple[int, int], ...], base: str) -> tuple[int, ...]:
    if book.kept is None:
        return ()
    counts = tuple(int(book.kept[r0:r1].sum()) for r0, r1 in tiles)
    if max(counts) > MAX_KEPT:
        raise RnnaccelError(f"{base}: a MAC tile keeps {max(counts)} weights after pruning, more than one MVCS "
                            f"instruction can stream ({MAX_KEPT}); prune more, or use fewer MAC lanes")
    return counts


def matvec(ctx: Lowering, m: MatrixRefs, x: Ref, acc: Ref, where: Where,
           columns: tuple[tuple[int, int], ...] | None = None, sources: tuple[Ref, ...] = ()) -> None:
    """acc[0:rows] = (bias +) W x, one instruction per row tile; with `columns` (plain matrices
    only), per column range and row tile, the later ranges accumulating (MVA), so each range
    can start as soon as its part of x exists. `sources`, if given, is where each column range's
    part of x lies (a convolution's window is runs apart in memory), else at x + its first column."""
    assert columns is None or not m.slots, "compressed matrices have no accumulating form"
    for part, (k0, k1) in enumerate(columns or ((0, m.q.cols),)):
        for index, (r0, r1) in enumerate(m.tiles):
            operands = {"acc": acc + r0, "w": m.weights[index] + k0 * (r1 - r0) * ctx.target.weight_bytes,
                        "x": sources[part] if sources else x + k0, "rows": r1 - r0, "cols": k1 - k0,
                        "split": best_split(r1 - r0, k1 - k0, ctx.target.macs)}
            tile_where = Where(where.node, where.layer, where.step, index, where.what)
            if m.nnz:
                ctx.emit("MVCS", tile_where, cb=m.slots[index], bits=m.q.codebook.bits, nnz=m.nnz[index],
                          **operands)
            elif m.slots:
                ctx.emit("MVC", tile_where, cb=m.slots[index], bits=m.q.codebook.bits, **operands)
            elif part:
                ctx.emit("MVA", tile_where, **operands)
            elif m.bias is None:
                ctx.emit("MV", tile_where, **operands)
            else:
                ctx.emit("MVB", tile_where, bias=m.bias + stride("MVB", "bias") * r0, **operands)

def requantize(ctx: Lowering, m: MatrixRefs, where: Where, dst: Ref, src: Ref, add: Ref | None = None,
               row: int = 0, rows: tuple[int, int] | None = None) -> None:
    """dst = requantise(acc), plus `add` or (compressed) the bias, for the matrix's stored rows
    `rows` (default all; dst, src and add point at the first of them) of input row `row`."""
    r0, r1 = rows or (0, m.q.rows)
    n = r1 - r0
    if not m.slots:
        if add is None:
            ctx.emit("VRQ", where, dst=dst, src=src, n=n, q=m.params + stride("VRQ", "q") * r0)
        else:
            ctx.emit("VRQA", where, dst=dst, src=src, n=n, q=m.params + stride("VRQA", "q") * r0, add=add)
    elif add is not None:
        ctx.emit("VRQAC", where, dst=dst, src=src, n=n, q=m.params, add=add)
    else:
        per_row = m.q.out_bias is not None and m.q.out_bias.ndim > 1  # one bias vector per input row
        bias = zeros(ctx, n) if m.out_bias is None else \
            m.out_bias + (row * m.q.rows * per_row + r0) * ctx.target.weight_bytes
        ctx.emit("VRQC", where, dst=dst, src=src, n=n, q=m.params, bias=bias, bshift=m.q.bias_shift)


def zeros(ctx: Lowering, n: int) -> Ref:
    """A shared run of zero biases for compressed matrices that have none."""
    return ctx.data(f"zero biases/{n}", bytes(n * ctx.target.weight_bytes), "biases")

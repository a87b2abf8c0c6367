"""Where a quantised matrix lives: the references lowering hands around, and the placement of a
compressed matrix -- index streams per tile (a pruned one's led by its bitmap), codebooks loaded
into the decompression engine's codebook memory (CBLOAD, on its own unit, so it overlaps the
rest), one requantisation pair, and the bias in the output's format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from compiler.ir import Codebook, QMatrix
from compiler.kernel import Ref, Where, pack_ints
from isa.bitstream import pack_indices
from isa.errors import RnnaccelError
from isa.table import BY_MNEMONIC, CODEBOOK_SLOT

if TYPE_CHECKING:
    from compiler.passes.lowering import Lowering

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

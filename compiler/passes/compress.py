"""Codebook compression (NeuCompression): each matrix's weights become `bits`-bit indices into a
small codebook of weight_bits values, which the chip's decompression engine expands on the fly.

The codebook of a row group (a MAC tile, or the whole matrix) is fitted by weighted k-means on
the weights in units of one shared scale. With calibration data it is activation-aware: each
weight's squared error counts in proportion to the mean square of the input it multiplies, and
the weights then take their codebook entries column by column, each column's rounding error
carried into the columns not yet rounded through the inputs' second moments (the
optimal-brain-surgeon update GPTQ uses), so the outputs, not the weights, stay close. One multiplier serves
every row, and the bias moves to the output's format at weight_bits (VRQC adds it), so that the
stored bytes are almost only indices. With pruning, the weights of least (activation-weighted)
magnitude, and every weight that is exactly zero, become zeros that cost one bitmap bit and no
index (MVCS); the codebook is fitted to the kept weights, and the pruned ones' error is carried
like any rounding error (as SparseGPT does). docs/numerics.md states the arithmetic; bench/
measures it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.ir import Codebook, QMatrix
from compiler.memo import Memo
from isa.bitstream import packed_bytes
from isa.numerics import quantize_multiplier
from isa.target import Target

ITERATIONS = 30
REQUANT_PAIR_BYTES = 4  # a compressed matrix's one multiplier and shift, int16 each (passes/matrices.py)
DAMPING = 0.01  # of the mean input power, added to the moments' diagonal: keeps the inverse tame


@dataclass(frozen=True)
class Compression:
    bits: int
    groups: str = "tile"  # "tile": a codebook per MAC row tile; "matrix": one per matrix
    activation_aware: bool = True
    prune: float = 0.0  # at least this fraction of each matrix's weights becomes zero (bitmap-encoded)
    refit: bool = True  # a recurrent layer at 2 bits refitted through time (widths.chosen_width says when not)


def stored_bytes_at_least(weights: np.ndarray, target: Target, comp: Compression | None) -> int:
    """The fewest weight-memory bytes `weights` ([..., rows, cols]: one matrix per leading index)
    take as passes/matrices.py stores them, so that a memory check before quantising never refuses
    what fits: weight_bits each plain; compressed, a `bits` index per weight it keeps (isa.bitstream
    packs a tile's densely), a one-bit bitmap per weight when pruned, a codebook of 2**bits entries
    per row tile (or per matrix) and the requantisation pair. Pruning drops at least the exact zeros
    and `prune` of each matrix, so at most the nonzero weights less that fraction stay; the bias and
    any padding between tiles are left out."""
    count = weights.size
    if comp is None:
        return count * target.weight_bytes
    rows, cols = weights.shape[-2:]
    matrices = count // max(rows * cols, 1)
    kept = max(0, int(np.count_nonzero(weights)) - int(comp.prune * count)) if comp.prune else count
    groups = matrices * (-(-rows // target.macs) if comp.groups == "tile" else 1)
    bitmap = packed_bytes(count, 1) if comp.prune else 0
    books = groups * (1 << comp.bits) * target.weight_bytes
    return packed_bytes(kept, comp.bits) + bitmap + books + matrices * REQUANT_PAIR_BYTES


_FITTED: Memo[QMatrix] = Memo(256)  # compress_matrix's results by their arguments


def compress_matrix(weight: np.ndarray, bias: np.ndarray | None, in_scale: float, out_scale: float,
                    target: Target, comp: Compression, groups: list[np.ndarray],
                    moments: np.ndarray | None, product_budget: float) -> QMatrix:
    """`groups` are the row-index sets that share a codebook; `moments` is E[x xᵀ] of the input.
    A matrix fitted before with the same arguments is not fitted again: `--compress auto`
    (passes/budget.py) quantises a model a few dozen times, each time changing one matrix."""
    return _FITTED.get((in_scale, out_scale, target, comp, product_budget), (weight, bias, moments, *groups),
                       lambda: _fitted(weight, bias, in_scale, out_scale, target, comp, groups, moments,
                                       product_budget))


def _fitted(weight: np.ndarray, bias: np.ndarray | None, in_scale: float, out_scale: float, target: Target,
            comp: Compression, groups: list[np.ndarray], moments: np.ndarray | None,
            product_budget: float) -> QMatrix:
    qmax = (1 << (target.weight_bits - 1)) - 1
    scale = max(float(np.max(np.abs(weight))) / qmax, float(np.max(np.sum(np.abs(weight), axis=1))) / product_budget,
                1e-30)
    units = weight / scale
    aware = moments is not None and comp.activation_aware
    column_weight = np.diag(moments) + 1e-12 if aware else np.ones(weight.shape[1])
    importance = np.broadcast_to(column_weight, weight.shape)
    kept = _kept(units, column_weight, comp.prune) if comp.prune else None
    live = np.ones(weight.shape, bool) if kept is None else kept
    entries, group_of_row = [], np.zeros(weight.shape[0], np.int64)
    for g, rows in enumerate(groups):
        entries.append(codebook(units[rows][live[rows]], importance[rows][live[rows]], comp.bits, qmax))
        group_of_row[rows] = g
    table = np.array(entries, dtype=np.int64)
    books = table[group_of_row].astype(np.float64)
    indices = _assign_compensated(units, books, moments, live) if aware else _nearest_rows(units, books)
    indices = np.where(live, indices, 0)
    expanded = table[group_of_row[:, None], indices] * live
    mult, shift = quantize_multiplier(scale * in_scale / out_scale)
    out_bias, bias_shift = _output_bias(bias, out_scale, qmax)
    return QMatrix(expanded, np.full(weight.shape[0], mult, np.int64), np.full(weight.shape[0], shift, np.int64),
                   None, Codebook(comp.bits, group_of_row, table, indices, kept), out_bias, bias_shift)


def codebook(values: np.ndarray, importance: np.ndarray, bits: int, qmax: int) -> np.ndarray:
    """2**bits integer centroids in [-qmax, qmax] by weighted 1-D k-means (Lloyd), sorted. Values
    that take no more than 2**bits distinct levels (a model trained with shared weights) keep
    exactly those levels; no values at all (a fully pruned group) give zeros."""
    v, w, k = values.ravel(), importance.ravel(), 1 << bits
    levels = np.unique(v)
    if len(levels) <= k:
        padded = np.concatenate([levels, np.full(k - len(levels), levels[-1] if len(levels) else 0.0)])
        return np.sort(np.clip(np.round(padded), -qmax, qmax)).astype(np.int64)
    centroids = _weighted_quantiles(v, w, k)
    for _ in range(ITERATIONS):
        cluster = _assign(v, centroids)
        totals = np.bincount(cluster, w, minlength=len(centroids))
        sums = np.bincount(cluster, w * v, minlength=len(centroids))
        centroids = np.where(totals > 0, sums / np.where(totals > 0, totals, 1), centroids)
    return np.sort(np.clip(np.round(centroids), -qmax, qmax)).astype(np.int64)


def _nearest_rows(units: np.ndarray, books: np.ndarray) -> np.ndarray:
    """Each weight's nearest entry in its own row's codebook (books: rows x entries, sorted)."""
    return np.argmin(np.abs(units[:, :, None] - books[:, None, :]), axis=2)


def _kept(units: np.ndarray, column_weight: np.ndarray, fraction: float) -> np.ndarray:
    """Which weights survive pruning `fraction` of them: the least |w| * rms(x) go first, and a
    weight that is already zero never needs an index."""
    score = np.abs(units) * np.sqrt(column_weight)
    pruned = units == 0
    pruned.ravel()[np.argsort(score, axis=None, kind="stable")[:int(fraction * units.size)]] = True
    return ~pruned


def _assign_compensated(units: np.ndarray, books: np.ndarray, moments: np.ndarray, live: np.ndarray) -> np.ndarray:
    """Round column by column (a pruned weight to zero); push each column's error onto the later
    ones through the inverse of the input moments, so that W x, not W, changes least (GPTQ's
    update, with codebooks)."""
    return compensated(units, [books] * units.shape[1], moments, live)


def compensated(values: np.ndarray, books: list[np.ndarray], moments: np.ndarray, live: np.ndarray) -> np.ndarray:
    """The indices of GPTQ's rounding with a codebook per column: column j takes the nearest entry
    of books[j] (rows x entries, in the values' units) in each row, or zero where `live` is false,
    and its error moves onto the later columns (passes/joint.py rounds several matrices' columns,
    each with its own codebooks, as one)."""
    columns = values.shape[1]
    damped = moments + DAMPING * np.mean(np.diag(moments)) * np.eye(columns) + 1e-12 * np.eye(columns)
    upper = np.linalg.cholesky(np.linalg.inv(damped)).T
    work, indices = values.astype(np.float64), np.zeros(values.shape, np.int64)
    rows = np.arange(values.shape[0])
    for j, book in enumerate(books):
        indices[:, j] = np.argmin(np.abs(work[:, j, None] - book), axis=1)
        error = (work[:, j] - book[rows, indices[:, j]] * live[:, j]) / upper[j, j]
        work[:, j + 1:] -= np.outer(error, upper[j, j + 1:])
    return indices


def _assign(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    order = np.argsort(centroids, kind="stable")
    sorted_c = centroids[order]
    cut = np.searchsorted((sorted_c[1:] + sorted_c[:-1]) / 2, values, side="right")
    return order[cut]


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    targets = (np.arange(k) + 0.5) / k * cumulative[-1]
    return values[order][np.minimum(np.searchsorted(cumulative, targets), len(values) - 1)].astype(np.float64)


def _output_bias(bias: np.ndarray | None, out_scale: float, qmax: int) -> tuple[np.ndarray | None, int]:
    """The bias in output units at weight_bits: out_bias << shift, shift as small as fits."""
    if bias is None:
        return None, 0
    units = np.asarray(bias, dtype=np.float64) / out_scale
    largest = float(np.max(np.abs(units))) if units.size else 0.0
    shift = 0
    while largest / (1 << shift) > qmax and shift < 15:
        shift += 1
    return np.clip(np.round(units / (1 << shift)), -qmax, qmax).astype(np.int64), shift


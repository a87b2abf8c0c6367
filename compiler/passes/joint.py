"""Fitting a recurrent layer's matrices together: W x_t + R h_prev is one pre-activation, so the
rounding error of W can be carried into R's columns, not only into W's later columns.

Compressed one by one (compress.py), each matrix keeps its own product close; at 2 bits a layer
with few inputs cannot keep W x close by itself (a keyword spotter's W: ten columns to carry the
error, four shared values a tile; its product's error stays near a tenth of its power). The
inputs and the state R multiplies are correlated (speech frames, and the state that remembers
them), so the same GPTQ rounding over the columns [x_t, h_prev], with the calibrated step
moments E[z zᵀ] of that concatenation (ops/recurrent/float_cells.py), moves W's error where R
can absorb it. The codebooks stay the ones each matrix fitted; only the indices change, so the
stored bytes do not. docs/benchmarks.md gives what it gains, and what was tried and dropped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from compiler.ir import QMatrix
from compiler.passes.compress import compensated


@dataclass(frozen=True)
class Part:
    """One compressed matrix of the pre-activation: its float weights (original row order), its
    QMatrix, and the scales of the input it multiplies and of the output it is requantised to."""

    weight: np.ndarray
    q: QMatrix
    in_scale: float
    out_scale: float


def fit_jointly(parts: tuple[Part, ...], moments: np.ndarray) -> tuple[QMatrix, ...]:
    """The parts' indices rounded again, together, against `moments` (E[z zᵀ] of their inputs
    side by side, in the parts' order): the first part's error moves into the later parts."""
    values = np.concatenate([p.weight for p in parts], axis=1)
    books = [_books(p) for p in parts for _ in range(p.weight.shape[1])]
    live = np.concatenate([_live(p.q) for p in parts], axis=1)
    indices = compensated(values, books, moments, live)
    cuts = np.cumsum([p.weight.shape[1] for p in parts])[:-1]
    return tuple(_with_indices(p.q, part) for p, part in zip(parts, np.split(indices, cuts, axis=1)))


def _books(p: Part) -> np.ndarray:
    """Each row's codebook in float weights, as the chip applies them: the entries times the one
    multiplier and shift of a compressed matrix, read back."""
    step = float(p.q.mult[0]) * 2.0 ** -float(p.q.shift[0]) * p.out_scale / p.in_scale
    return p.q.codebook.entries[p.q.codebook.group_of_row].astype(np.float64) * step


def _live(q: QMatrix) -> np.ndarray:
    return np.ones(q.weights.shape, bool) if q.codebook.kept is None else q.codebook.kept


def _with_indices(q: QMatrix, indices: np.ndarray) -> QMatrix:
    """`q` with these indices (a pruned weight's index is 0 and its weight 0)."""
    live = _live(q)
    indices = np.where(live, indices, 0)
    book = q.codebook
    weights = book.entries[book.group_of_row[:, None], indices] * live
    return dataclasses.replace(q, weights=weights, codebook=dataclasses.replace(book, indices=indices))

"""The integer primitives the ops' fixed-point semantics share: a matrix-vector product with its
requantisation, and the activations. Built on isa.numerics, the contract's one definition of
rounding, saturation and the activation tables; never on the simulator's instructions."""

from __future__ import annotations

from functools import cache

import numpy as np

from compiler.ir import QMatrix
from isa import numerics as nx


@cache
def table(name: str) -> np.ndarray:
    return nx.activation_table(name)


def activation(spec: str, x: np.ndarray) -> np.ndarray:
    return nx.relu(x) if spec == "relu" else nx.table_lookup(table(spec), x)


EXACT = float(1 << 53)  # float64 holds every integer up to this: sums below it are exact in any order


def accumulate(q: QMatrix, x: np.ndarray) -> np.ndarray:
    """x Wᵀ (+ bias) in integers. In float64 through BLAS when no partial sum can reach 2^53 (int16
    activations times int16 weights reach it only past 2^23 columns), which is exact whatever
    order the sums take and many times faster than an int64 einsum; else in int64."""
    if float(np.max(np.abs(x), initial=0)) * q.largest_row_sum < EXACT:
        acc = (x.astype(np.float64) @ q.float_columns).astype(np.int64)
    else:
        acc = np.einsum("...k,rk->...r", x.astype(np.int64), q.weights)
    return acc if q.bias is None else acc + q.bias


def project(q: QMatrix, x: np.ndarray, addend: np.ndarray | None = None, rows: slice = slice(None)) -> np.ndarray:
    """requantize(q x) of `rows`, plus an addend -- or else a compressed matrix's bias -- before
    the one saturation."""
    if addend is None and q.out_bias is not None:
        addend = np.left_shift(q.out_bias[..., rows], q.bias_shift)
    acc, mult, shift = accumulate(q, x)[..., rows], q.mult[rows], q.shift[rows]
    if addend is None:
        return nx.requantize(acc, mult, shift)
    return nx.requantize_add(acc, mult, shift, addend)

"""Tiling: the split of a matrix's output rows into tiles of at most `macs`, and the unit groups
of a recurrent layer. Quantisation tiles every matrix as it makes it (weights.WeightPolicy), since
compression by tile needs the tiles; the lowering reads them from the matrix.

One tile is one matrix-vector instruction: each of its rows runs on one MAC lane, one input
column per cycle, so a tile of R rows and K columns keeps R lanes busy for K cycles (SPEC
section 2, rule 3). Rows are split as evenly as possible, so that no tile is much smaller
than the others.

A recurrent layer's rows are stored by *unit groups* (ops/recurrent/quantize.py): the gate rows of
a few hidden units sit together (an LSTM: i, o, f and c of 8 units, one 32-row tile at 32 MACs), so
the vector unit can finish those units' new state as soon as their tile is done, while the MAC
array goes on.
"""

from __future__ import annotations

import itertools

import numpy as np


def row_tiles(rows: int, macs: int) -> tuple[tuple[int, int], ...]:
    count = -(-rows // macs)
    bounds = [round(i * rows / count) for i in range(count + 1)]
    return tuple(itertools.pairwise(bounds))


def unit_groups(hidden: int, vec_lanes: int) -> tuple[tuple[int, int], ...]:
    """Hidden units in groups of one vector pass: the vector unit finishes a group with no idle
    lanes, and on a wide array a group's few rows split their columns over the spare lanes, so
    groups stay small and the recurrence's tail short (measured: bench/schedule.py)."""
    return tuple((u, min(u + vec_lanes, hidden)) for u in range(0, hidden, vec_lanes))


def tile_rows(order: np.ndarray, macs: int) -> list[np.ndarray]:
    """The original rows of each tile: what shares a codebook when compressing by tile."""
    return [order[r0:r1] for r0, r1 in row_tiles(len(order), macs)]

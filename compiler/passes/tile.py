"""Tiling: the split of a matrix's output rows into tiles of at most `macs`, and the unit groups
of a recurrent layer. Quantisation tiles every matrix as it makes it (weights.WeightPolicy), since
compression by tile needs the tiles; the lowering reads them from the matrix.

One tile is one matrix-vector instruction: each of its rows runs on one MAC lane, one input
column per cycle, so a tile of R rows and K columns keeps R lanes busy for K cycles (SPEC
section 2, rule 3). Rows are split as evenly as possible, so that no tile is much smaller
than the others; a recurrent layer's matrices instead fill whole tiles and leave one tail, whose
idle lanes a column split fills (`best_split`): even tiles of 57-58 rows on 64 lanes would leave
a tenth of every tile idle.

A recurrent layer's rows are stored by *unit groups* (ops/recurrent/quantize.py): the gate rows of
a few hidden units sit together (an LSTM: i, o, f and c of 8 units, one 32-row tile at 32 MACs), so
the vector unit can finish those units' new state as soon as their tile is done, while the MAC
array goes on.
"""

from __future__ import annotations

import itertools

import numpy as np

from isa.table import BY_MNEMONIC

MAX_SPLIT = (1 << BY_MNEMONIC["MV"].field("split").width) - 1


def row_tiles(rows: int, height: int, tail: bool = False) -> tuple[tuple[int, int], ...]:
    """Tiles of at most `height` rows: as even as possible, or (`tail`) whole tiles and a tail."""
    count = -(-rows // height)
    bounds = [*range(0, rows, height), rows] if tail else [round(i * rows / count) for i in range(count + 1)]
    return tuple(itertools.pairwise(bounds))


def unit_groups(hidden: int, vec_lanes: int) -> tuple[tuple[int, int], ...]:
    """Hidden units in groups of one vector pass: the vector unit finishes a group with no idle
    lanes, and on a wide array a group's few rows split their columns over the spare lanes, so
    groups stay small and the recurrence's tail short (measured: bench/schedule.py)."""
    return tuple((u, min(u + vec_lanes, hidden)) for u in range(0, hidden, vec_lanes))


def tile_rows(order: np.ndarray, height: int, tail: bool = False) -> list[np.ndarray]:
    """The original rows of each tile: what shares a codebook when compressing by tile."""
    return [order[r0:r1] for r0, r1 in row_tiles(len(order), height, tail)]


def best_split(rows: int, cols: int, macs: int) -> int:
    """How many lane groups share a tile's columns: a tile of few rows fills the idle lanes with
    other column ranges (SPEC rule 3: ceil(cols/split) + split - 1 cycles on rows x split lanes)."""
    choices = range(1, min(macs // rows, cols, MAX_SPLIT) + 1)
    return min(choices, key=lambda s: (-(-cols // s) + s - 1, s))


def product_cycles(rows: int, cols: int, height: int, macs: int) -> int:
    """MAC cycles of a matrix-vector product in whole tiles of `height` rows and a tail, each tile
    split at its best."""
    splits = (best_split(r1 - r0, cols, macs) for r0, r1 in row_tiles(rows, height, tail=True))
    return sum(-(-cols // s) + s - 1 for s in splits)


def recurrent_height(hidden: int, gates: int, macs: int, vec_lanes: int) -> int:
    """The tile height of a recurrent matrix R (gates x hidden rows, hidden columns): the power-of-two
    fraction of `macs` whose tiles take the fewest MAC cycles, lanes a tail tile would leave idle
    going to a column split instead (a GRU of 154 units: 462 rows). At least two tiles where there
    are two unit groups, so the vector unit starts on the first tile's units while the array
    computes the next (one tile of 256 rows would hold the whole step's vector work behind it)."""
    rows, fewest = gates * hidden, 2 if len(unit_groups(hidden, vec_lanes)) > 1 else 1
    heights = [h for h in (macs >> k for k in range(macs.bit_length())) if h >= vec_lanes and -(-rows // h) >= fewest]
    return min(heights, key=lambda h: (product_cycles(rows, hidden, h, macs), -h), default=macs)

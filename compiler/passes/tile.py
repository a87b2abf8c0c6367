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
from isa.target import Target

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


def split_cycles(rows: int, cols: int, macs: int) -> int:
    """MAC cycles of one tile of `rows` rows over `cols` columns, split at its best."""
    split = best_split(rows, cols, macs)
    return -(-cols // split) + split - 1


def tile_cycles(rows: int, cols: int, height: int, macs: int) -> list[int]:
    """MAC cycles of each tile of a product in whole tiles of `height` rows and a tail, each tile
    split at its best."""
    return [split_cycles(r1 - r0, cols, macs) for r0, r1 in row_tiles(rows, height, tail=True)]


def recut_tail(tiles: tuple[tuple[int, int], ...], cols: int, macs: int) -> tuple[tuple[int, int], ...]:
    """The tiles with the last two (a whole tile and the tail) cut again where their products
    take the fewest MAC cycles, the first the larger on a tie: a tail of a few rows splits its
    columns many ways and pays a cycle per split (a GRU of 118 units at 64 MACs: 32 + 2 rows take
    60 + 21 cycles, 21 + 13 rows 42 + 33). Neither tile grows past the whole one."""
    if len(tiles) < 2:
        return tiles
    (start, whole), (_, end) = tiles[-2:]
    cut = min(range(whole, max(start, end - (whole - start) - 1), -1),
              key=lambda c: split_cycles(c - start, cols, macs) + split_cycles(end - c, cols, macs))
    return (*tiles[:-2], (start, cut), (cut, end))


def recurrent_height(hidden: int, gates: int, target: Target, vector_cycles: int, directions: int = 1) -> int:
    """The tile height of a recurrent matrix R (gates x hidden rows, hidden columns) by rule of
    thumb: the one of `recurrent_heights` whose step is estimated shortest (`step_estimate`), the
    larger on a tie. The two directions of a bidirectional layer fill each other's waits instead:
    whole tiles of `macs` measured best there (bench/schedule.py). Schedule tuning
    (passes/tune.py) then times the others."""
    if directions > 1:
        return target.macs
    rows = gates * hidden
    return min(recurrent_heights(hidden, gates, target),
               key=lambda h: (step_estimate(rows, hidden, h, target, vector_cycles), -h), default=target.macs)


def recurrent_heights(hidden: int, gates: int, target: Target) -> list[int]:
    """The tile heights worth trying for R: `macs`, `macs/2`, ... down to a vector pass, at least
    two tiles where there are two unit groups: one tile of all of R (a hidden-64 LSTM at 256
    MACs) would hold the whole step's vector work behind the whole product; two let the vector
    unit start on the first tile's groups while the array computes the second's rows."""
    rows, groups = gates * hidden, len(unit_groups(hidden, target.vec_lanes))
    fewest = 2 if groups > 1 else 1
    return [h for h in (target.macs >> k for k in range(target.macs.bit_length()))
            if h >= target.vec_lanes and -(-rows // h) >= fewest]


def group_heights(hidden: int, gates: int, target: Target, tiles: tuple[int, ...] = (2, 3, 4)) -> list[int]:
    """Tile heights of whole unit groups that cut R into so many tiles (where they fit the
    lanes): every tile then completes whole groups, so each batch of the interleaving gets its
    share of chains (a GRU of 64 units at 256 MACs: tiles of three groups, 72 rows)."""
    groups = len(unit_groups(hidden, target.vec_lanes))
    rows = gates * target.vec_lanes
    return [height for count in tiles if count <= groups
            and (height := rows * -(-groups // count)) <= target.macs]


def step_estimate(rows: int, hidden: int, height: int, target: Target, vector_cycles: int) -> int:
    """A step's cycles with R in tiles of `height`: the MAC array's work, or the vector unit's
    (`vector_cycles`) plus what of its wait for the next product the input projection's
    requantisation (rows / vec_lanes) does not fill. The wait is the first tile's product over
    the columns that come last (the second column chunk where R h runs in chunks), between the
    two units' latencies; the vector work of the other tiles overlaps their products."""
    groups = unit_groups(hidden, target.vec_lanes)
    tiles = row_tiles(rows, height, tail=True)
    middle = groups[(len(groups) + 1) // 2][0] if 2 * len(tiles) <= len(groups) else 0
    chunks = [cols for cols in (middle, hidden - middle) if cols]
    mac = sum(sum(tile_cycles(rows, cols, height, target.macs)) for cols in chunks)
    wait = target.mac_latency + target.vec_latency + tile_cycles(rows, chunks[-1], height, target.macs)[0]
    return max(mac, vector_cycles + max(0, wait - -(-rows // target.vec_lanes)))

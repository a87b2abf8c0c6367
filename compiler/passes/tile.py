"""Tiling: split every matrix's output rows into tiles of at most `macs` rows.

One tile is one matrix-vector instruction: each of its rows runs on one MAC lane, one input
column per cycle, so a tile of R rows and K columns keeps R lanes busy for K cycles (SPEC
section 2, rule 3). Rows are split as evenly as possible, so that no tile is much smaller
than the others.
"""

from __future__ import annotations

import itertools

from compiler.ir import Graph, QMatrix
from isa.target import Target


def row_tiles(rows: int, macs: int) -> tuple[tuple[int, int], ...]:
    count = -(-rows // macs)
    bounds = [round(i * rows / count) for i in range(count + 1)]
    return tuple(itertools.pairwise(bounds))


def tile_graph(graph: Graph, target: Target) -> Graph:
    nodes = []
    for node in graph.nodes:
        tiles = {k: row_tiles(v.rows, target.macs) for k, v in node.attrs.items() if isinstance(v, QMatrix)}
        nodes.append(node.with_attrs(tiles=tiles) if tiles else node)
    return graph.replace(nodes=tuple(nodes))


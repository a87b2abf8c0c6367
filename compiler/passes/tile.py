"""Tiling: the order of every matrix's output rows, and their split into tiles of at most `macs`.

One tile is one matrix-vector instruction: each of its rows runs on one MAC lane, one input
column per cycle, so a tile of R rows and K columns keeps R lanes busy for K cycles (SPEC
section 2, rule 3). Rows are split as evenly as possible, so that no tile is much smaller
than the others.

A recurrent layer's rows are regrouped by *unit groups*: the gate rows of a few hidden units sit
together (an LSTM: i, o, f and c of 8 units, one 32-row tile at 32 MACs), so the vector unit can
finish those units' new state as soon as their tile is done, while the MAC array goes on.
"""

from __future__ import annotations

import itertools

import numpy as np

from compiler.ir import RECURRENT_OPS, Graph, Node, QMatrix
from isa.target import Target

CELL_GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # gate rows per hidden unit
MATRIX_GATES = {"qx": None, "qh": None, "qzr": 2, "qhh": 1}  # None: the cell's own count


def row_tiles(rows: int, macs: int) -> tuple[tuple[int, int], ...]:
    count = -(-rows // macs)
    bounds = [round(i * rows / count) for i in range(count + 1)]
    return tuple(itertools.pairwise(bounds))


def unit_groups(hidden: int, vec_lanes: int) -> tuple[tuple[int, int], ...]:
    """Hidden units in groups of one vector pass: the vector unit finishes a group with no idle
    lanes, and on a wide array a group's few rows split their columns over the spare lanes, so
    groups stay small and the recurrence's tail short (measured: bench/schedule.py)."""
    return tuple((u, min(u + vec_lanes, hidden)) for u in range(0, hidden, vec_lanes))


def row_order(node: Node, key: str, rows: int, target: Target) -> np.ndarray:
    """The order in which matrix `key` of `node` stores and computes its rows (original indices)."""
    if node.op not in RECURRENT_OPS:
        return np.arange(rows)
    gates = MATRIX_GATES[key.rstrip("0123456789")] or CELL_GATES[node.op]
    hidden = node.attrs["hidden"]
    groups = unit_groups(hidden, target.vec_lanes)
    return np.concatenate([np.arange(u0, u1) + gate * hidden for u0, u1 in groups for gate in range(gates)])


def tile_rows(order: np.ndarray, macs: int) -> list[np.ndarray]:
    """The original rows of each tile: what shares a codebook when compressing by tile."""
    return [order[r0:r1] for r0, r1 in row_tiles(len(order), macs)]


def tile_graph(graph: Graph, target: Target) -> Graph:
    nodes = []
    for node in graph.nodes:
        keys = [k for k, v in node.attrs.items() if isinstance(v, QMatrix)]
        if not keys:
            nodes.append(node)
            continue
        orders = {k: row_order(node, k, node.attrs[k].rows, target) for k in keys}
        tiles = {k: row_tiles(len(order), target.macs) for k, order in orders.items()}
        nodes.append(node.with_attrs(tiles=tiles, row_order=orders))
    return graph.replace(nodes=tuple(nodes))

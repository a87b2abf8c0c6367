"""The graph IR: small immutable records that every pass takes and returns.

A Graph is a topologically ordered list of Nodes over named tensors whose shapes are all
static. Ops come in named groups so that one rule can cover many ops. Passes add to a node's
`attrs` (a new Node each time, never mutation), and `verify` checks the invariants between
passes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from isa.errors import RnnaccelError

RECURRENT_OPS = frozenset({"lstm", "gru", "rnn"})
MATRIX_OPS = frozenset({"fc"}) | RECURRENT_OPS
ACTIVATION_OPS = frozenset({"relu", "table"})  # "table": attrs["table"] names an isa.numerics table
LAYOUT_OPS = frozenset({"gather"})
SCALE_OPS = frozenset({"rescale"})
CONST_OPS = frozenset({"constant"})
ELEMENTWISE_OPS = frozenset({"add_const", "mul_const", "mul"})  # with a constant of the data's shape, or data
COMMON_SCALE_OPS = frozenset({"gather", "add", "sub"})  # all inputs and the output at one scale
SOFTMAX_OPS = frozenset({"softmax", "logsoftmax"})  # attrs["row"]: the length of each normalised run
ALL_OPS = (MATRIX_OPS | ACTIVATION_OPS | LAYOUT_OPS | SCALE_OPS | CONST_OPS | ELEMENTWISE_OPS | COMMON_SCALE_OPS
           | SOFTMAX_OPS)


@dataclass(frozen=True)
class Node:
    """One operation. `inputs`/`outputs` name tensors; "" marks an absent optional one.

    `source` is the ONNX node it came from, so listings and errors can point back to it.
    """

    op: str
    source: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)

    def with_attrs(self, **attrs: Any) -> Node:
        return dataclasses.replace(self, attrs={**self.attrs, **attrs})


@dataclass(frozen=True)
class Codebook:
    """How a compressed matrix is stored: `bits`-bit indices into a codebook per row group; a
    pruned matrix also has a bitmap of the weights it keeps (the others are zero, no index)."""

    bits: int
    group_of_row: np.ndarray  # int64 (rows,): which codebook each row uses
    entries: np.ndarray  # int64 (groups, 2**bits), within weight_bits
    indices: np.ndarray  # int64 (rows, cols); a pruned weight's index is 0 and not stored
    kept: np.ndarray | None = None  # bool (rows, cols) of a pruned matrix

    def reordered(self, order: np.ndarray) -> Codebook:
        kept = None if self.kept is None else self.kept[order]
        return dataclasses.replace(self, group_of_row=self.group_of_row[order], indices=self.indices[order], kept=kept)


@dataclass(frozen=True)
class QMatrix:
    """A quantised weight matrix (rows x cols) with what requantises its accumulators.

    A compressed matrix (codebook set) has one multiplier and shift for all rows, and its bias
    in the output's format (out_bias << bias_shift, at weight_bits), added when requantising.
    """

    weights: np.ndarray  # int64 (rows, cols), within weight_bits (a compressed matrix: expanded)
    mult: np.ndarray  # int64 (rows,), requantisation multipliers
    shift: np.ndarray  # int64 (rows,)
    bias: np.ndarray | None = None  # int64 (rows,) or (..., rows): one per input row; at accumulator scale
    codebook: Codebook | None = None
    out_bias: np.ndarray | None = None  # int64 (rows,), compressed matrices only
    bias_shift: int = 0

    def reordered(self, order: np.ndarray) -> QMatrix:
        """The same matrix with its rows in `order` (original row indices)."""
        book = None if self.codebook is None else self.codebook.reordered(order)
        return QMatrix(self.weights[order], self.mult[order], self.shift[order], _rows(self.bias, order), book,
                       _rows(self.out_bias, order), self.bias_shift)

    @property
    def rows(self) -> int:
        return self.weights.shape[0]

    @property
    def cols(self) -> int:
        return self.weights.shape[1]


@dataclass(frozen=True)
class Graph:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    nodes: tuple[Node, ...]
    shapes: dict[str, tuple[int, ...]]
    scales: dict[str, float] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Graph:
        return dataclasses.replace(self, **changes)

    def size(self, tensor: str) -> int:
        return int(np.prod(self.shapes[tensor], dtype=np.int64))

    def consumers(self, tensor: str) -> list[Node]:
        return list(self._consumers.get(tensor, ()))

    @cached_property
    def _consumers(self) -> dict[str, list[Node]]:
        """Built once per graph (graphs are immutable), so passes asking per tensor stay linear."""
        readers: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in dict.fromkeys(node.inputs):
                readers.setdefault(name, []).append(node)
        return readers

    def is_used(self, tensor: str) -> bool:
        return bool(tensor) and (tensor in self.outputs or bool(self.consumers(tensor)))


def _rows(values: np.ndarray | None, order: np.ndarray) -> np.ndarray | None:
    """Per-row values (last axis) in `order`; None stays None."""
    return None if values is None else values[..., order]


def verify(graph: Graph) -> Graph:
    """Check the IR's invariants; a failure here is a compiler bug, so it asserts."""
    defined = set(graph.inputs)
    for node in graph.nodes:
        assert node.op in ALL_OPS, f"unknown op {node.op}"
        for name in node.inputs:
            assert not name or name in defined, f"{node.source}: {name} used before it is defined"
        for name in node.outputs:
            assert name not in defined, f"{node.source}: {name} defined twice"
            assert not name or name in graph.shapes, f"{node.source}: {name} has no shape"
        defined.update(n for n in node.outputs if n)
    missing = [o for o in graph.outputs if o not in defined]
    if missing:
        raise RnnaccelError(f"graph output(s) {', '.join(missing)} are not computed by any node")
    return graph

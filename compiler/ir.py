"""The graph IR: small immutable records that every pass takes and returns.

A Graph is a topologically ordered list of Nodes over named tensors whose shapes are all
static. A node's `attrs` is its op's typed attributes record (compiler/ops declares each op);
passes make new Nodes, never mutate one, and compiler/verify.py checks the invariants between
passes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from isa.tensors import slice_scales

# A graph input or output with a scale per slice: (axis, runs of (count, scale) along it).
Packing = tuple[int, tuple[tuple[int, float], ...]]


@dataclass(frozen=True)
class Node:
    """One operation. `inputs`/`outputs` name tensors; "" marks an absent optional one.

    `source` is the ONNX node it came from, so listings and errors can point back to it;
    `attrs` is a frozen record of the type the op declares for the node's stage.
    """

    op: str
    source: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Any

    def with_attrs(self, **changes: Any) -> Node:
        """The node with some attributes changed, in the same record type."""
        return dataclasses.replace(self, attrs=dataclasses.replace(self.attrs, **changes))

    def quantized(self, record: type, **added: Any) -> Node:
        """The node with its attributes carried into the later stage's `record`, plus what it adds."""
        fields = {f.name: getattr(self.attrs, f.name) for f in dataclasses.fields(self.attrs)}
        return dataclasses.replace(self, attrs=record(**fields, **added))


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
    Rows are kept in their original order; `order` is the order they are stored and computed in
    (None: as they are), `tiles` the [r0, r1) runs of that order each MAC instruction computes.
    """

    weights: np.ndarray  # int64 (rows, cols), within weight_bits (a compressed matrix: expanded)
    mult: np.ndarray  # int64 (rows,), requantisation multipliers
    shift: np.ndarray  # int64 (rows,)
    bias: np.ndarray | None = None  # int64 (rows,) or (..., rows): one per input row; at accumulator scale
    codebook: Codebook | None = None
    out_bias: np.ndarray | None = None  # int64 (rows,), compressed matrices only
    bias_shift: int = 0
    order: np.ndarray | None = None
    tiles: tuple[tuple[int, int], ...] = ()

    @cached_property
    def float_columns(self) -> np.ndarray:
        """Wᵀ in float64 and the largest row's sum of |w|: the golden reference's exact BLAS
        product (ops/integer.accumulate), converted once per matrix rather than once per step."""
        return self.weights.T.astype(np.float64)

    @cached_property
    def largest_row_sum(self) -> float:
        return float(np.max(np.sum(np.abs(self.weights), axis=-1), initial=0))

    def stored(self) -> QMatrix:
        """The matrix with its rows in storage order."""
        return self if self.order is None else self.reordered(self.order)

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
    packed: dict[str, Packing] = field(default_factory=dict)  # graph inputs/outputs only (passes/packing.py)
    # State the model carries explicitly, kept on chip between runs: (graph input, graph output)
    # pairs (passes/streaming.py). The output stays in `outputs` (it is computed and quantised like
    # any); the host sees it only with `state_outputs`.
    bound: tuple[tuple[str, str], ...] = ()
    state_outputs: bool = False

    def replace(self, **changes: Any) -> Graph:
        return dataclasses.replace(self, **changes)

    def size(self, tensor: str) -> int:
        return int(np.prod(self.shapes[tensor], dtype=np.int64))

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: self.shapes[name] for name in self.inputs}

    def boundary_scale(self, tensor: str) -> float | np.ndarray:
        """How the host (de)quantises a graph input or output: its scale, or per slice an array
        that broadcasts against it (isa.tensors.TensorDesc.scales)."""
        if tensor not in self.packed:
            return self.scales[tensor]
        axis, runs = self.packed[tensor]
        return slice_scales(self.shapes[tensor], axis, runs)

    @property
    def host_inputs(self) -> tuple[str, ...]:
        """The inputs the host sends each run: all but the bound state."""
        bound = {i for i, _ in self.bound}
        return tuple(n for n in self.inputs if n not in bound)

    @property
    def host_outputs(self) -> tuple[str, ...]:
        """The outputs the host reads each run: bound state's only on request."""
        hidden = set() if self.state_outputs else {o for _, o in self.bound}
        return tuple(n for n in self.outputs if n not in hidden)

    def consumers(self, tensor: str) -> list[Node]:
        return list(self._consumers.get(tensor, ()))

    def producer(self, tensor: str) -> Node | None:
        """The node that makes `tensor`; None for a graph input (or an unknown name)."""
        return self._producers.get(tensor)

    @cached_property
    def _producers(self) -> dict[str, Node]:
        """Built once per graph, as _consumers is."""
        return {name: node for node in self.nodes for name in node.outputs if name}

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

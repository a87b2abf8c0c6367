"""Packed tensors at the host boundary: a scale per slice for a graph input or output that packs
quantities of different ranges (an LSTM state [1, layers, hidden, (h, c)]).

The host quantises and dequantises graph inputs and outputs, so a scale per slice costs the chip
nothing. An input qualifies when only single-input gathers read it: slices one gather reads
together must share a scale (a union-find along each axis); on the axis whose groups' calibrated
ranges differ most, by at least MIN_RATIO, each group gets the scale of its own range and the
gathers reading it keep that scale. An output qualifies when a gather that nothing on the chip
reads writes it from inputs of different scales, each slice along some axis from inputs of one
scale: every slice keeps its inputs' scale, with no rescale. docs/numerics.md, "Packed tensors at
the boundary".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.ir import Graph, Node, Packing
from compiler.ops.gather import input_numbers

MIN_RATIO = 4.0  # ranges closer than this share one scale: a slice scale would gain under 2 bits


@dataclass(frozen=True)
class PackedInputs:
    """The packed graph inputs (name -> packing) and the scale of each gather output reading one."""

    packing: dict[str, Packing]
    reads: dict[str, float]


def packed_inputs(graph: Graph, slice_max: dict[str, tuple[np.ndarray, ...]], scale_of) -> PackedInputs:
    """Every graph input worth a scale per slice; `scale_of(max_abs)` is a range's scale and
    `slice_max[name][axis]` the calibrated max |x| of each slice along `axis`."""
    packing, reads = {}, {}
    for name in graph.inputs:
        readers = graph.consumers(name)
        if not _packable(graph, name, readers, slice_max):
            continue
        found = _best_axis(graph.shapes[name], readers, slice_max[name])
        if found is None:
            continue
        axis, labels, ranges = found
        scale = {label: scale_of(r) for label, r in ranges.items()}
        packing[name] = (axis, _runs([scale[label] for label in labels]))
        for node in readers:
            reads[node.outputs[0]] = scale[labels[_positions(graph.shapes[name], node, axis)[0]]]
    return PackedInputs(packing, reads)


def pinned_input(graph: Graph, name: str, packing: Packing | None) -> PackedInputs | None:
    """Input `name` read at the scales of `packing` (one scale when None): each gather reading it
    then keeps the one scale of the slices it reads; None when some reader mixes scales."""
    readers = graph.consumers(name)
    reads = {node.outputs[0]: None for node in readers if node.op == "gather"}
    if packing is None:
        return PackedInputs({}, {})
    axis, runs = packing
    per_slice = np.repeat([s for _, s in runs], [n for n, _ in runs])
    for node in readers:
        scales = np.unique(per_slice[_positions(graph.shapes[name], node, axis)]) if node.op == "gather" else ()
        if len(scales) != 1 or node.inputs != (name,):
            return None
        reads[node.outputs[0]] = float(scales[0])
    return PackedInputs({name: packing}, reads)


def _packable(graph: Graph, name: str, readers: list[Node], slice_max: dict) -> bool:
    """Read only by single-input gathers, not an output itself, calibrated in this graph's shape."""
    shape = graph.shapes[name]
    return (bool(readers) and name not in graph.outputs and name in slice_max
            and all(n.op == "gather" and n.inputs == (name,) for n in readers)
            and tuple(len(m) for m in slice_max[name]) == tuple(shape))


def _best_axis(shape: tuple[int, ...], readers: list[Node], slice_max: tuple[np.ndarray, ...]):
    """(axis, group label per slice, range per group) of the axis whose groups' ranges differ the
    most, if by at least MIN_RATIO; None otherwise."""
    best, best_ratio = None, MIN_RATIO
    for axis in range(len(shape)):
        labels = _groups(shape, readers, axis)
        ranges = {label: max(float(np.max(slice_max[axis][labels == label])), 1e-6) for label in np.unique(labels)}
        ratio = max(ranges.values()) / min(ranges.values())
        if len(ranges) >= 2 and ratio >= best_ratio:
            best, best_ratio = (axis, labels, ranges), ratio
    return best


def _groups(shape: tuple[int, ...], readers: list[Node], axis: int) -> np.ndarray:
    """A group label per slice along `axis`: slices one gather reads together share a label."""
    labels = np.arange(shape[axis])
    for node in readers:
        together = np.unique(labels[_positions(shape, node, axis)])
        labels[np.isin(labels, together)] = together[0]
    return labels


def _positions(shape: tuple[int, ...], node: Node, axis: int) -> np.ndarray:
    """The slices along `axis` that a gather reads."""
    return np.unique(np.unravel_index(node.attrs.index, shape)[axis])


def packed_output(graph: Graph, node: Node, scales: dict[str, float]) -> Packing | None:
    """A gather writing a graph output that nothing on the chip reads, from inputs of different
    scales: the axis (fewest runs) along which each slice comes from inputs of one scale."""
    out = node.outputs[0]
    if node.op != "gather" or out not in graph.outputs or graph.consumers(out):
        return None
    source = _source_scales(graph, node, scales)
    if len(np.unique(source)) < 2:
        return None
    shape = graph.shapes[out]
    options = [(axis, _slice_scales(source.reshape(shape), axis)) for axis in range(len(shape))]
    runs = [(axis, _runs(s)) for axis, s in options if s is not None]
    return min(runs, key=lambda option: len(option[1]), default=None)


def _source_scales(graph: Graph, node: Node, scales: dict[str, float]) -> np.ndarray:
    """The scale of the input each output element of a gather comes from."""
    which = input_numbers(node.attrs.index, [graph.size(n) for n in node.inputs])
    return np.array([scales[n] for n in node.inputs])[which]


def _slice_scales(source: np.ndarray, axis: int) -> list[float] | None:
    """Each slice's one scale along `axis`, or None if some slice mixes scales."""
    moved = np.moveaxis(source, axis, 0).reshape(source.shape[axis], -1)
    if np.any(moved != moved[:, :1]):
        return None
    return [float(s) for s in moved[:, 0]]


def _runs(per_slice: list[float]) -> tuple[tuple[int, float], ...]:
    """Consecutive slices of one scale as one (count, scale) run."""
    runs: list[list] = []
    for scale in per_slice:
        if runs and runs[-1][1] == scale:
            runs[-1][0] += 1
        else:
            runs.append([1, scale])
    return tuple((count, scale) for count, scale in runs)

"""gather: output element i is element index[i] of the inputs laid end to end (flattened).

Every layout operator (Reshape, Transpose, Slice, Concat, Expand, ...) on computed data becomes
one gather (frontend/layout_ops.py). It moves values without changing them, so all its inputs
and its output share one scale. A contiguous selection of one input is an alias (no code);
anything else is copied run by run (VMOV).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from compiler.ir import Node
from compiler.kernel import Where
from compiler.ops.registry import OpDef, Scales, register, same_as_inputs
from compiler.passes.lowering import Lowering


@dataclass(frozen=True, kw_only=True)
class GatherAttrs:
    index: np.ndarray  # int64, one entry per output element


def gather(node: Node, *xs: np.ndarray) -> np.ndarray:
    """The same in float and in integers: values are only moved. A contiguous selection of one
    input is a view of it, as the program's is an alias (a long sequence's values not copied)."""
    index = node.attrs.index
    flats = [x.reshape(x.shape[0], -1) for x in xs]
    first = _run_start(index)
    if len(flats) == 1 and first is not None:
        return flats[0][:, first:first + len(index)]
    flat = flats[0] if len(flats) == 1 else np.concatenate(flats, axis=1)  # one input: no copy of it
    return flat[:, index]


def _run_start(index: np.ndarray) -> int | None:
    """The first element of an index that selects consecutive elements (0 for an empty one), else None."""
    first = int(index[0]) if len(index) else 0
    return first if np.array_equal(index, np.arange(first, first + len(index))) else None


def lower_gather(ctx: Lowering, node: Node, where: Where) -> None:
    index = node.attrs.index
    sizes = [ctx.graph.size(n) for n in node.inputs]
    first = _run_start(index)
    if len(sizes) == 1 and first is not None:
        ctx.places[node.outputs[0]] = ctx.places[node.inputs[0]] + first
        return
    out = ctx.place(node.outputs[0])
    bases, source = np.cumsum([0] + sizes), input_numbers(index, sizes)
    for start, stop in _runs(index, source):
        src = ctx.places[node.inputs[source[start]]] + int(index[start] - bases[source[start]])
        ctx.emit_elementwise("VMOV", where, stop - start, dst=out + start, src=src)


def input_numbers(index: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Which input (of these sizes, laid end to end) each entry of a flat index reads."""
    return np.searchsorted(np.cumsum(sizes), index, side="right")


def _runs(index: np.ndarray, source: np.ndarray) -> list[tuple[int, int]]:
    """Maximal [start, stop) stretches of the output that copy consecutive elements of one input."""
    breaks = np.flatnonzero((np.diff(index) != 1) | (np.diff(source) != 0)) + 1
    edges = [0, *breaks.tolist(), len(index)]
    return list(itertools.pairwise(edges))


def common_input_scale(node: Node, scales: Scales) -> float:
    """The coarsest of the inputs' scales: every input is brought to it, none saturates."""
    return max(scales.inputs)


register(OpDef("gather", "layout", GatherAttrs, gather, gather, same_as_inputs, lower_gather,
               common_scale=common_input_scale))

"""conv: one group of a convolution, a fully connected layer applied to windows of its input.

The frontend (frontend/conv_ops.py) lays the input out channels-last with its zero padding, so a
window is a few contiguous runs of activation memory: one run for a 1-D kernel of dilation 1, one
per kernel row for a 2-D one, one per tap when dilated or grouped. The node holds the weight as
[out, window] (taps, then channels: the runs' order), `offsets`, each window element's place
relative to the window's start, and `starts`, each output position's window start. Its output is
[positions, out], channels-last; `padded` says which taps of each window are padding.
Quantisation and weight placement are fc's (per output channel); the lowering is one
matrix-vector product per position: MV (or MVB) over the first run, MVA over the others, then
the requantisation. The runs (or parts of runs) that lie in padding are left out (SPEC rule 3: a
lane that multiplies padding does no useful work). Several positions run side by side, one run
of each in turn, each into its own accumulator, so an MVA does not wait for the accumulator the
previous instruction wrote (SPEC rule 2), and two sets of accumulators take turns, so the next
group need not wait for this one's requantisations. Positions whose windows have the same runs,
in lines of evenly spaced starts, differ only by address steps, so reroll folds each line into a
LOOP (of two groups per trip). A run that is one stretch of the gather that made the input (the
padded copy) is read where that gather read it, so the products need not wait for the copy. A
compressed matrix has no accumulating form: its window, padding included, is read as one run
(copied to one first if it has several: VMOV).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from compiler.ir import Node, QMatrix
from compiler.kernel import Ref, Where
from compiler.ops.fc import FcAttrs, parameters, quantized_matrix
from compiler.ops.integer import project
from compiler.ops.registry import OpDef, free_scale, register
from compiler.passes.lowering import Lowering
from compiler.passes.matrices import MatrixRefs, best_split, matvec, place_matrix, requantize
from compiler.passes.reroll import MIN_TRIPS
from isa.target import Target

CONV = "conv"
MAX_IN_FLIGHT = 4  # positions whose products run side by side, at most
WINDOW_ELEMENTS = 1 << 22  # window elements made at once by the float and integer semantics


@dataclass(frozen=True, kw_only=True)
class ConvAttrs(FcAttrs):
    offsets: np.ndarray  # int64 [window]: each window element's place from the window's start
    starts: np.ndarray  # int64 [positions]: where each output position's window starts
    group: int = 0  # which group of the ONNX Conv: names its buffers apart from its siblings'
    padding: int = 0  # window elements, over all positions, that read zero padding
    padded: np.ndarray | None = None  # bool [positions, taps]: which taps of each window are padding


@dataclass(frozen=True, kw_only=True)
class QuantConvAttrs(ConvAttrs):
    q: QMatrix


def by_windows(product: Callable[[np.ndarray], np.ndarray]) -> Callable[[Node, np.ndarray], np.ndarray]:
    """An op's semantics from `product`, the matrix applied to windows [samples, positions,
    window]: the windows of x (read, never changed: the same in float and in integers), made a
    bounded number of elements at a time, since together they hold each input element up to
    window-size times."""

    def run(node: Node, x: np.ndarray) -> np.ndarray:
        flat, starts, offsets = x.reshape(x.shape[0], -1), node.attrs.starts, node.attrs.offsets
        step = max(1, WINDOW_ELEMENTS // max(1, len(x) * len(offsets)))
        return np.concatenate([product(node, flat[:, starts[i:i + step, None] + offsets[None, :]])
                               for i in range(0, len(starts), step)], axis=1)

    return run


def float_product(node: Node, windows: np.ndarray) -> np.ndarray:
    y = windows @ node.attrs.weight.T.astype(np.float64)
    return y if node.attrs.bias is None else y + node.attrs.bias


def quantize_conv(node: Node, scales: dict[str, float], policy) -> Node:
    """fc's rule; the input is a flat buffer, not rows of the matrix's columns, so compression is not
    activation-aware (calibration keeps no moments of the windows)."""
    return node.quantized(QuantConvAttrs, q=quantized_matrix(node, scales, policy, features=False))


def runs(offsets: np.ndarray, kept: np.ndarray | None = None) -> tuple[tuple[int, int], ...]:
    """The [k0, k1) stretches of the window that are contiguous in memory (and, given `kept`, hold
    only kept elements): one MV (or MVA) each."""
    edges = np.diff(offsets) != 1
    if kept is not None:
        edges |= np.diff(kept) != 0
    breaks = np.flatnonzero(edges) + 1
    pieces = itertools.pairwise([0, *breaks.tolist(), len(offsets)])
    return tuple((k0, k1) for k0, k1 in pieces if kept is None or kept[k0])


def kept_runs(attrs: ConvAttrs, position: int) -> tuple[tuple[int, int], ...]:
    """The runs of a position's window that read input, padding left out (SPEC rule 3: a lane that
    multiplies padding does no useful work); a window wholly in padding keeps its runs, since its
    output is the bias and an instruction must write the accumulator."""
    if attrs.padded is None or not attrs.padded[position].any():
        return runs(attrs.offsets)
    kept = np.repeat(~attrs.padded[position], len(attrs.offsets) // attrs.padded.shape[1])
    return runs(attrs.offsets, kept) or runs(attrs.offsets)


def lower_conv(ctx: Lowering, node: Node, where: Where) -> None:
    key = f"group{node.attrs.group}"
    m = place_matrix(ctx, node.attrs.q, node.source, key)
    x, y = Reader.of(ctx, node.inputs[0]), ctx.place(node.outputs[0])
    positions = range(len(node.attrs.starts))
    plans = [runs(node.attrs.offsets) if m.slots else kept_runs(node.attrs, p) for p in positions]
    rows = lines(node.attrs.starts, plans)
    flight = 1 if m.slots else in_flight(ctx, m, runs(node.attrs.offsets), max(map(len, rows)))
    # two sets of accumulators in turn, so the next group's products need not wait for this
    # group's requantisations
    accs = [ctx.buffer(f"{node.source}/{key}/acc{k}", "acc", m.q.rows) for k in range(2 * flight)]
    window = None
    if m.slots and len(runs(node.attrs.offsets)) > 1:
        window = ctx.buffer(f"{node.source}/{key}/window", "amem", len(node.attrs.offsets))
    groups = itertools.count()
    for row in rows:
        waves = []
        for first in range(0, len(row), flight):
            positions, at = row[first:first + flight].tolist(), len(ctx.ops)
            held = accs[next(groups) % 2 * flight:][:flight]
            ctx.side_by_side([lambda p=p, acc=acc: _position(ctx, node, m, x, y, p, plans[p], acc, window, where)
                              for p, acc in zip(positions, held)])
            waves.append((at, len(ctx.ops)))
        ctx.loop_candidate(waves, where)


@dataclass(frozen=True)
class Reader:
    """Where a run of the conv's input is read: where the gather that made the input (the padded,
    channels-last copy) took it from, when that is one stretch of one of its inputs, so the
    products need not wait for the copy; else in the input itself."""

    place: Ref
    index: np.ndarray | None = None  # the gather's: input element -> element of its inputs end to end
    sources: tuple[Ref, ...] = ()  # the gather's inputs' places
    bases: np.ndarray | None = None  # where each of them starts, end to end

    @classmethod
    def of(cls, ctx: Lowering, tensor: str) -> Reader:
        made = ctx.graph.producer(tensor)
        if made is None or made.op != "gather" or not all(name in ctx.places for name in made.inputs):
            return cls(ctx.places[tensor])
        sizes = [ctx.graph.size(name) for name in made.inputs]
        return cls(ctx.places[tensor], made.attrs.index, tuple(ctx.places[name] for name in made.inputs),
                   np.cumsum([0, *sizes]))

    def run(self, start: int, n: int) -> Ref:
        """Where the n input elements from `start` on can be read."""
        if self.index is None:
            return self.place + start
        taken = self.index[start:start + n]
        source = int(np.searchsorted(self.bases, taken[0], side="right")) - 1
        if np.any(np.diff(taken) != 1) or taken[-1] >= self.bases[source + 1]:
            return self.place + start
        return self.sources[source] + int(taken[0] - self.bases[source])


def _position(ctx: Lowering, node: Node, m: MatrixRefs, x: Reader, y: Ref, position: int,
              columns: tuple[tuple[int, int], ...], acc: Ref, window: Ref | None, where: Where) -> None:
    """One output position: its window's product into `acc`, then the requantisation into y."""
    start, offsets = int(node.attrs.starts[position]), node.attrs.offsets
    product = Where(where.node, where.layer, what="Wx")
    if m.slots:  # no accumulating form: the whole window, padding included, read as one run
        read = x.run(start + int(offsets[0]), len(offsets)) if window is None else \
            _copy_window(ctx, product, window, x, start, offsets)
        matvec(ctx, m, read, acc, product)
    else:
        sources = tuple(x.run(start + int(offsets[k0]), k1 - k0) for k0, k1 in columns)
        matvec(ctx, m, sources[0], acc, product, columns, sources)
    requantize(ctx, m, Where(where.node, where.layer, what="requantise"), y + position * m.q.rows, acc)


def in_flight(ctx: Lowering, m: MatrixRefs, columns: tuple[tuple[int, int], ...], row: int) -> int:
    """How many positions run side by side, one run of each in turn, each into its own accumulator:
    enough that the other positions' (and row tiles') instructions fill the mac_latency cycles
    before an MVA may read the accumulator it continues (SPEC rule 2); but few enough that a line
    of `row` positions still folds (MIN_TRIPS trips of two groups). One run: no chain to hide."""
    if len(columns) < 2:
        return 1
    shortest = min(-(-(k1 - k0) // s) + s - 1 for k0, k1 in columns for r0, r1 in m.tiles
                   for s in [best_split(r1 - r0, k1 - k0, ctx.target.macs)])
    others = -(-ctx.target.mac_latency // shortest)  # instructions needed between two of a chain
    return max(1, min(MAX_IN_FLIGHT, -(-(others + 1) // len(m.tiles)), row // (2 * MIN_TRIPS)))


def lines(starts: np.ndarray, plans: list[tuple[tuple[int, int], ...]]) -> list[np.ndarray]:
    """The positions as loop candidates: those whose windows have the same runs (`plans`: the
    border positions' are trimmed of padding), in lines of evenly spaced starts, so that the
    positions side by side have the same shape and each line's groups fold into one LOOP."""
    alike: dict[tuple, list[int]] = {}
    for position, plan in enumerate(plans):
        alike.setdefault(plan, []).append(position)
    return [np.asarray(group)[line] for group in alike.values() for line in _lines(starts[group])]


def _lines(starts: np.ndarray) -> list[np.ndarray]:
    """Evenly spaced runs of `starts`: its rows, or its columns where there are more rows than
    columns (a tall, narrow output, as a spectrogram's), so that each loop folds more trips."""
    rows = evenly_spaced(starts)
    order, width = np.arange(len(starts)), rows[0].stop
    if len(rows) > width and all(r.stop - r.start == width for r in rows):
        order = order.reshape(-1, width).T.ravel()
    return [order[line] for line in evenly_spaced(starts[order])]


def evenly_spaced(starts: np.ndarray) -> list[slice]:
    """Runs of positions whose windows start the step of the first two apart (a row of a 2-D output,
    a whole 1-D one), each a loop candidate: a loop's addresses move by one step per trip."""
    steps = np.diff(starts)
    edges = [0, *(np.flatnonzero(steps != steps[:1]) + 1).tolist(), len(starts)]
    return [slice(a, b) for a, b in itertools.pairwise(edges)]


def _copy_window(ctx: Lowering, where: Where, window: Ref, x: Reader, start: int, offsets: np.ndarray) -> Ref:
    """The window's runs copied into one run, `window`: a compressed matrix has no accumulating form."""
    for k0, k1 in runs(offsets):
        ctx.emit_elementwise("VMOV", where, k1 - k0, dst=window + k0, src=x.run(start + int(offsets[k0]), k1 - k0))
    return window


def padding_macs(node: Node, target: Target) -> int:
    """Each window element multiplied from the padding costs a MAC in every row: all of them for a
    compressed matrix (its window is copied whole), else only those of windows wholly in padding."""
    attrs = node.attrs
    if isinstance(attrs, QuantConvAttrs) and attrs.q.codebook is not None or attrs.padded is None:
        return attrs.padding * len(attrs.weight)
    return int(attrs.padded.all(axis=1).sum()) * len(attrs.offsets) * len(attrs.weight)


register(OpDef(CONV, "matrix", ConvAttrs, by_windows(float_product),
               by_windows(lambda node, windows: project(node.attrs.q, windows)), free_scale, lower_conv,
               QuantConvAttrs, quantize_conv, parameters=parameters, padding_macs=padding_macs))

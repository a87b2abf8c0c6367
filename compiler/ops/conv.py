"""conv: one group of a convolution, a fully connected layer applied to windows of its input.

The frontend (frontend/conv_ops.py) lays the input out channels-last with its zero padding, so a
window is a few contiguous runs of activation memory: one run for a 1-D kernel of dilation 1, one
per kernel row for a 2-D one, one per tap when dilated or grouped. The node holds the weight as
[out, window] (taps, then channels: the runs' order), `offsets`, each window element's place
relative to the window's start, and `starts`, each output position's window start. Its output is
[positions, out], channels-last. Quantisation and weight placement are fc's (per output channel);
the lowering is one matrix-vector product per position: MV (or MVB) over the first run, MVA over
the others, then the requantisation, into one of two accumulators in turn (so the next product
need not wait for this requantisation); the positions differ only by address steps, so reroll
folds them into a LOOP (of two positions per trip). A compressed matrix has no accumulating
form: its window is copied to one run first (VMOV).
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
from compiler.passes.matrices import MatrixRefs, matvec, place_matrix, requantize

CONV = "conv"
WINDOW_ELEMENTS = 1 << 22  # window elements made at once by the float and integer semantics


@dataclass(frozen=True, kw_only=True)
class ConvAttrs(FcAttrs):
    offsets: np.ndarray  # int64 [window]: each window element's place from the window's start
    starts: np.ndarray  # int64 [positions]: where each output position's window starts
    group: int = 0  # which group of the ONNX Conv: names its buffers apart from its siblings'
    padding: int = 0  # window elements, over all positions, that read zero padding


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


def runs(offsets: np.ndarray) -> tuple[tuple[int, int], ...]:
    """The [k0, k1) stretches of the window that are contiguous in memory: one MV (or MVA) each."""
    breaks = np.flatnonzero(np.diff(offsets) != 1) + 1
    return tuple(itertools.pairwise([0, *breaks.tolist(), len(offsets)]))


def lower_conv(ctx: Lowering, node: Node, where: Where) -> None:
    key = f"group{node.attrs.group}"
    m = place_matrix(ctx, node.attrs.q, node.source, key)
    x, y = ctx.places[node.inputs[0]], ctx.place(node.outputs[0])
    accs = [ctx.buffer(f"{node.source}/{key}/acc{k}", "acc", m.q.rows) for k in range(2)]
    offsets, columns = node.attrs.offsets, runs(node.attrs.offsets)
    gathered = m.slots and len(columns) > 1
    window = ctx.buffer(f"{node.source}/{key}/window", "amem", len(offsets)) if gathered else None
    waves = []
    for position, start in enumerate(node.attrs.starts.tolist()):
        first, acc = len(ctx.ops), accs[position % 2]
        product = Where(where.node, where.layer, what="Wx")
        if window is not None:
            _copy_window(ctx, product, window, x + start, offsets, columns)
            matvec(ctx, m, window, acc, product)
        else:
            _window_product(ctx, m, x + start, offsets, columns, acc, product)
        requantize(ctx, m, Where(where.node, where.layer, what="requantise"), y + position * m.q.rows, acc)
        waves.append((first, len(ctx.ops)))
    for row in evenly_spaced(node.attrs.starts):
        ctx.loop_candidate(waves[row], where)


def evenly_spaced(starts: np.ndarray) -> list[slice]:
    """Runs of positions whose windows start the step of the first two apart (a row of a 2-D output,
    a whole 1-D one), each a loop candidate: a loop's addresses move by one step per trip."""
    steps = np.diff(starts)
    edges = [0, *(np.flatnonzero(steps != steps[:1]) + 1).tolist(), len(starts)]
    return [slice(a, b) for a, b in itertools.pairwise(edges)]


def _window_product(ctx: Lowering, m: MatrixRefs, start: Ref, offsets: np.ndarray,
                    columns: tuple[tuple[int, int], ...], acc: Ref, where: Where) -> None:
    """acc = (bias +) W window, reading each run of the window where it lies."""
    if len(columns) == 1:
        matvec(ctx, m, start + int(offsets[0]), acc, where)
        return
    matvec(ctx, m, start, acc, where, columns, tuple(start + int(offsets[k0]) for k0, _ in columns))


def _copy_window(ctx: Lowering, where: Where, window: Ref, start: Ref, offsets: np.ndarray,
                 columns: tuple[tuple[int, int], ...]) -> None:
    """The window's runs copied into one run: a compressed matrix has no accumulating form."""
    for k0, k1 in columns:
        ctx.emit_elementwise("VMOV", where, k1 - k0, dst=window + k0, src=start + int(offsets[k0]))


def padding_macs(node: Node) -> int:
    """Each window element read from the padding costs a MAC in every row."""
    return node.attrs.padding * len(node.attrs.weight)


register(OpDef(CONV, "matrix", ConvAttrs, by_windows(float_product),
               by_windows(lambda node, windows: project(node.attrs.q, windows)), free_scale, lower_conv,
               QuantConvAttrs, quantize_conv, parameters=parameters, padding_macs=padding_macs))

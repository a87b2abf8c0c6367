"""Reductions, pooling and padding: ReduceSum, ReduceMean, GlobalAveragePool, AveragePool,
MaxPool; Pad.

Each becomes one `reduce` node (compiler/ops/reduce.py): runs of consecutive elements, each
summed and divided by a constant, or its maximum taken. When the elements an output reads are
not already consecutive -- reduced axes that are not the last ones, pooling windows -- a
`gather` lays them out run after run first, as a layout operator would. A window clipped by
padding is a shorter run: padding never takes memory (a max ignores it; an average divides by
what count_include_pad asks for).

Pad (constant mode) is a layout copy: a `gather` from the data and a `constant` of fill values
(one per padded element; weight memory keeps one, which LDC copies), every output element taken
from the one or the other.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from compiler.frontend.capability import Constraint, NodeView, constants_from, declare
from compiler.frontend.registry import operator
from compiler.ir import Node
from compiler.ops.constant import ConstantAttrs
from compiler.ops.gather import GatherAttrs
from compiler.ops.reduce import ReduceAttrs, float_reduce
from isa.errors import RnnaccelError
from isa.table import BY_MNEMONIC

# one run is one VRSUM or VRMAX: their `n` fields bound it
RUN_LIMIT = min(BY_MNEMONIC[m].field("n").high for m in ("VRSUM", "VRMAX"))


@dataclass(frozen=True)
class Runs:
    """What a reduction reads: `index` lists the input elements run after run (None: the input as
    it lies), `lengths` each run's length, `divisors` what each run's sum is divided by."""

    index: np.ndarray | None
    lengths: np.ndarray
    divisors: np.ndarray
    shape: tuple[int, ...]  # the output's


def _emit(b, node, name: str, kind: str, runs: Runs) -> None:
    """The reduction as a `reduce` node (after a gather if the runs are not the input's order), or
    folded to a constant when the input is one."""
    x, out = node.input[0], node.output[0]
    attrs = ReduceAttrs(kind=kind, runs=runs.lengths, divisors=runs.divisors if kind == "sum" else None)
    if b.is_const(x):
        values = b.const(x).ravel()[runs.index] if runs.index is not None else b.const(x)
        b.consts[out] = float_reduce(Node("reduce", name, (), (), attrs), values[None]).astype(np.float32)
        b.consts[out] = b.consts[out].reshape(runs.shape)
        return
    if runs.index is not None:
        laid_out = f"{name}/runs"
        b.emit(Node("gather", name, (x,), (laid_out,), GatherAttrs(index=runs.index)), {laid_out: (len(runs.index),)})
        x = laid_out
    b.emit(Node("reduce", name, (x,), (out,), attrs), {out: runs.shape})


def axes_runs(shape: tuple[int, ...], axes: list[int], keepdims: int, mean: bool) -> Runs:
    """Reduce `axes` (all, if none are given): the kept axes move first, the reduced ones last."""
    rank = len(shape)
    if any(not -rank <= a < rank for a in axes):
        raise RnnaccelError(f"axes {list(axes)} are out of range for an input of rank {rank}")
    reduced = sorted({a % rank for a in axes}) if axes else list(range(rank))
    kept = [i for i in range(rank) if i not in reduced]
    perm = kept + reduced
    length = int(np.prod([shape[i] for i in reduced], dtype=np.int64))
    count = int(np.prod(shape, dtype=np.int64)) // max(length, 1)
    index = None if perm == list(range(rank)) else np.arange(np.prod(shape)).reshape(shape).transpose(perm).ravel()
    out = tuple(1 if i in reduced else d for i, d in enumerate(shape)) if keepdims else tuple(shape[i] for i in kept)
    return Runs(index, np.full(count, length, np.int64), np.full(count, length if mean else 1, np.float64), out)


def _reduce_axes(b, node, name: str, mean: bool, axes, keepdims: int, noop_with_empty_axes: int) -> None:
    """ReduceSum or ReduceMean: the axes from the input (opset 13 or 18 on) or the attribute."""
    given = node.input[1] if len(node.input) > 1 and node.input[1] else None
    chosen = [int(a) for a in (b.const(given).ravel() if given is not None else axes or [])]
    if not chosen and noop_with_empty_axes:
        return _copy(b, node, name)
    _emit(b, node, name, "sum", axes_runs(b.shape(node.input[0]), chosen, keepdims, mean))


def _copy(b, node, name: str) -> None:
    """The input unchanged (a reduction over no axes): the constant itself, or an alias of the data."""
    x, out = node.input[0], node.output[0]
    if b.is_const(x):
        b.consts[out] = b.const(x)
        return
    b.emit(Node("gather", name, (x,), (out,), GatherAttrs(index=np.arange(np.prod(b.shape(x))))), {out: b.shape(x)})


@operator
def ReduceSum(b, node, name: str, *, axes=None, keepdims=1, noop_with_empty_axes=0) -> None:
    """the exact sum of each run in an accumulator (VRSUM), requantised (VRQ); axes that are not the
    last ones are laid out last by a gather first"""
    _reduce_axes(b, node, name, False, axes, keepdims, noop_with_empty_axes)


@operator
def ReduceMean(b, node, name: str, *, axes=None, keepdims=1, noop_with_empty_axes=0) -> None:
    """ReduceSum with the division by the count folded into the requantisation multiplier"""
    _reduce_axes(b, node, name, True, axes, keepdims, noop_with_empty_axes)


@operator
def GlobalAveragePool(b, node, name: str) -> None:
    """the mean over every axis after the channel: already consecutive runs, so no gather"""
    shape = b.shape(node.input[0])
    _emit(b, node, name, "sum", axes_runs(shape, list(range(2, len(shape))), 1, True))


@dataclass(frozen=True)
class Window:
    """One pooling axis: its input length, kernel, stride, dilation and padding at each end."""

    size: int
    kernel: int
    stride: int
    dilation: int
    begin: int
    end: int

    def outputs(self, ceil_mode: int) -> int:
        span = self.size + self.begin + self.end - (self.kernel - 1) * self.dilation - 1
        count = (-(-span // self.stride) if ceil_mode else span // self.stride) + 1
        return count - 1 if ceil_mode and (count - 1) * self.stride >= self.size + self.begin else count

    def taps(self, output: int) -> tuple[np.ndarray, int]:
        """The input positions output `output` reads (padding left out), and how many of its taps lie
        inside the padded input (count_include_pad's divisor, clipped as ONNX Runtime does)."""
        positions = output * self.stride - self.begin + self.dilation * np.arange(self.kernel)
        inside = positions[(positions >= 0) & (positions < self.size)]
        return inside, int(np.sum(positions < self.size + self.end))


def _windows(shape: tuple[int, ...], kernel_shape, strides, pads, dilations, auto_pad: str) -> list[Window]:
    spatial = shape[2:]
    rank = len(spatial)
    strides, dilations = strides or [1] * rank, dilations or [1] * rank
    pads = list(pads or [0] * 2 * rank)
    lengths = {"kernel_shape": (len(kernel_shape), rank), "strides": (len(strides), rank),
               "dilations": (len(dilations), rank), "pads": (len(pads), 2 * rank)}
    for what, (given, wanted) in lengths.items():
        if given != wanted:
            raise RnnaccelError(f"{what} has {given} values but the input has {rank} spatial axes (wants {wanted})")
    if min(*kernel_shape, *strides, *dilations) < 1 or min(pads) < 0:
        raise RnnaccelError(f"kernel_shape {list(kernel_shape)}, strides {list(strides)} and dilations "
                            f"{list(dilations)} must be positive, pads {pads} not negative")
    for i, (size, k, s, d) in enumerate(zip(spatial, kernel_shape, strides, dilations)):
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small = total // 2
            pads[i], pads[i + rank] = (small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small)
        elif auto_pad == "VALID":
            pads[i] = pads[i + rank] = 0
    return [Window(*dims) for dims in zip(spatial, kernel_shape, strides, dilations, pads[:rank], pads[rank:])]


def pool_runs(shape: tuple[int, ...], windows: list[Window], ceil_mode: int, count_include_pad: int) -> Runs:
    """Each channel's windows, run after run in output order: per output position the flat offsets
    it reads, repeated for every (batch, channel) plane."""
    spatial = shape[2:]
    offsets, lengths, divisors = [], [], []
    for position in itertools.product(*(range(w.outputs(ceil_mode)) for w in windows)):
        taps = [w.taps(o) for w, o in zip(windows, position)]
        grid = np.ix_(*(inside for inside, _ in taps))
        flat = np.ravel_multi_index(grid, spatial) if spatial else np.zeros(1, np.int64)
        offsets.append(np.broadcast_to(flat, [len(t[0]) for t in taps]).ravel())
        lengths.append(offsets[-1].size)
        divisors.append(np.prod([t[1] for t in taps]) if count_include_pad else lengths[-1])
    if not offsets or min(lengths) == 0:
        raise RnnaccelError("a window reads only padding, or there is no window (kernel larger than the padded input)")
    planes = int(np.prod(shape[:2]))
    plane = int(np.prod(spatial))
    pattern = np.concatenate(offsets)
    index = (np.arange(planes)[:, None] * plane + pattern[None, :]).ravel()
    out = (*shape[:2], *(w.outputs(ceil_mode) for w in windows))
    return Runs(index, np.tile(lengths, planes).astype(np.int64), np.tile(divisors, planes).astype(np.float64), out)


@operator
def AveragePool(b, node, name: str, *, kernel_shape, strides=None, pads=None, dilations=None, auto_pad="NOTSET",
                ceil_mode=0, count_include_pad=0) -> None:
    """each window's sum (VRSUM) times 1/count (VRQ); windows laid out by a gather, clipped at the
    padding"""
    shape = b.shape(node.input[0])
    windows = _windows(shape, kernel_shape, strides, pads, dilations, auto_pad)
    _emit(b, node, name, "sum", pool_runs(shape, windows, ceil_mode, count_include_pad))


@operator
def MaxPool(b, node, name: str, *, kernel_shape, strides=None, pads=None, dilations=None, auto_pad="NOTSET",
            ceil_mode=0, storage_order=0) -> None:
    """each window's maximum (VRMAX), exact; windows laid out by a gather, padding left out"""
    shape = b.shape(node.input[0])
    windows = _windows(shape, kernel_shape, strides, pads, dilations, auto_pad)
    _emit(b, node, name, "max", pool_runs(shape, windows, ceil_mode, 0))


def _pad_widths(rank: int, pads, axes) -> list[tuple[int, int]]:
    """(before, after) per axis from ONNX's [x1_begin, x2_begin, ..., x1_end, ...] over `axes`."""
    pads = [int(p) for p in np.asarray(pads).ravel()]
    chosen = [int(a) % rank for a in np.asarray(axes).ravel()] if axes is not None else list(range(rank))
    if len(pads) != 2 * len(chosen):
        raise RnnaccelError(f"pads has {len(pads)} values for {len(chosen)} axes (wants {2 * len(chosen)})")
    widths = [(0, 0)] * rank
    for i, axis in enumerate(chosen):
        widths[axis] = (pads[i], pads[i + len(chosen)])
    return widths


def pad_index(shape: tuple[int, ...], widths: list[tuple[int, int]]) -> tuple[np.ndarray, int]:
    """The padded tensor as indices into [data, fill] laid end to end, and how many fill elements it
    reads: each padded position its own, so the gather copies the fill in runs. A negative width
    crops."""
    size = int(np.prod(shape, dtype=np.int64))
    index = np.pad(np.arange(size).reshape(shape), [(max(a, 0), max(b, 0)) for a, b in widths], constant_values=-1)
    index = index[tuple(slice(max(-a, 0), index.shape[i] - max(-b, 0)) for i, (a, b) in enumerate(widths))]
    fill = index < 0
    index[fill] = size + np.arange(int(fill.sum()))
    return index, int(fill.sum())


@operator
def Pad(b, node, name: str, *, mode="constant", pads=None, value=0.0) -> None:
    """constant mode: a copy of the data (VMOV) around a fill constant copied from weight memory (LDC)"""
    x, out = node.input[0], node.output[0]
    inputs = [b.const(n) if n else None for n in node.input[1:4]] + [None] * 3
    widths = _pad_widths(len(b.shape(x)), inputs[0] if inputs[0] is not None else pads, inputs[2])
    fill_value = float(np.asarray(inputs[1]).ravel()[0]) if inputs[1] is not None and inputs[1].size else value
    index, count = pad_index(b.shape(x), widths)
    if b.is_const(x):
        b.consts[out] = np.append(b.const(x).ravel(), np.full(count, fill_value, b.const(x).dtype))[index]
        return
    fill = f"{name}/fill"
    b.emit(Node("constant", fill, (), (fill,), ConstantAttrs(value=np.full(count, fill_value, np.float32))),
           {fill: (count,)})
    b.emit(Node("gather", name, (x, fill), (out,), GatherAttrs(index=index.ravel())), {out: index.shape})


def _longest_run(view: NodeView) -> int:
    """The longest run the node reduces (a window's taps, or the reduced axes' product)."""
    shape = view.input(0).shape
    if view.op_type in ("AveragePool", "MaxPool"):
        return int(np.prod(view.attr("kernel_shape") or [1]))
    if view.op_type == "GlobalAveragePool":
        return int(np.prod(shape[2:]))
    given = view.input(1).value
    axes = given if given is not None else view.attr("axes")
    chosen = [int(a) for a in np.asarray(axes if axes is not None else [], np.int64).ravel()]
    return int(np.prod([shape[a % len(shape)] for a in chosen] if chosen else shape))


RUN = Constraint(f"on computed data, a reduced run (window) must be at most {RUN_LIMIT} elements",
                 lambda v: v.input(0).is_const or _longest_run(v) <= RUN_LIMIT, _longest_run)


def _pool_rank(view: NodeView) -> bool:
    return view.input(0).rank >= 3


POOL_RANK = Constraint("the input must be [N, C, spatial axes...] with at least one spatial axis", _pool_rank,
                       lambda v: f"rank {v.input(0).rank}")
CONSTRAINTS = {
    "ReduceSum": (constants_from(1, ["axes"]), RUN),
    "ReduceMean": (constants_from(1, ["axes"]), RUN),
    "GlobalAveragePool": (RUN,),
    "AveragePool": (POOL_RANK, RUN),
    "MaxPool": (POOL_RANK, RUN, Constraint("the Indices output is not supported", lambda v: len(v.outputs) <= 1)),
    "Pad": (Constraint("mode must be 'constant' (edge, reflect and wrap are not supported)",
                       lambda v: v.attr("mode", "constant") == "constant", lambda v: repr(v.attr("mode"))),
            constants_from(1, ["pads", "constant_value", "axes"])),
}
declare(CONSTRAINTS)

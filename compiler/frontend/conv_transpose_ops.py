"""ConvTranspose (1-D and 2-D) on the MAC array, as ordinary convolutions: no zeros inserted.

A transposed convolution of stride s scatters each input element over the kernel: output o sums
x[i] W[k] over i s + k d = o + pad. Inserting s - 1 zeros between input elements would make it a
convolution, but those lanes would multiply padding. Instead, per axis, the outputs o = r mod s
(phase r) form a stride-1 convolution of the input with the taps k d = r + pad (mod s), flipped
(the largest k reads the smallest input index), their input indices d / gcd(d, s) apart. Each
phase is one `conv` node per group (ops/conv.py) over one channels-last, zero-padded copy of the
input (frontend/conv_ops.py's), and one gather interleaves the phases into [N, C, ...]. An output
whose window holds no input element (a phase without taps, the outputs output_padding or
output_shape adds at the end) is the bias alone: the gather reads it from a constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

import numpy as np

from compiler.frontend.capability import declare
from compiler.frontend.compute_ops import constant_weight
from compiler.frontend.conv_ops import Geometry, conv_constraints, padded_input, window_padding, windows
from compiler.frontend.limits import check_elements
from compiler.frontend.registry import operator, padded, unsupported
from compiler.ir import Node
from compiler.ops.constant import ConstantAttrs
from compiler.ops.conv import ConvAttrs
from compiler.ops.gather import GatherAttrs


@dataclass(frozen=True)
class AxisPhase:
    """The outputs residue, residue + stride, ... of one axis, as a stride-1 convolution."""

    residue: int
    count: int  # outputs in this phase
    taps: tuple[int, ...]  # kernel indices in window order: the kernel flipped
    first: int  # the input index output `residue`'s window starts at (negative: in the padding)
    step: int  # input elements between consecutive taps


@dataclass(frozen=True)
class Axis:
    """One spatial axis: its phases that have taps, the zeros the shared padded input needs, the
    output length."""

    phases: tuple[AxisPhase, ...]
    stride: int
    begin: int
    end: int
    out: int


def _pads(size: int, stride: int, full: int, auto_pad: str, given: tuple[int, int],
          target: int | None) -> tuple[int, int]:
    """The zeros cropped from each end of the full output (`full` long; negative: outputs added).
    output_shape (or auto_pad SAME: size x stride) fixes the total, split as Conv's SAME splits it."""
    if target is None and auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        return (0, 0) if auto_pad == "VALID" else given
    total = full - (size * stride if target is None else target)
    if total < 0:  # a longer output than the full one: ONNX Runtime adds the outputs at the end
        return 0, total
    return (total // 2, total - total // 2) if auto_pad == "SAME_UPPER" else (total - total // 2, total // 2)


def axis(size: int, kernel: int, stride: int, dilation: int, begin: int, end: int) -> Axis:
    """The phases of one axis whose full output (stride (size - 1) + (kernel - 1) dilation + 1, plus
    output_padding) is cropped by `begin` and `end`."""
    out = stride * (size - 1) + (kernel - 1) * dilation + 1 - begin - end
    step = dilation // math.gcd(dilation, stride)
    by_residue: dict[int, list[int]] = {}
    for k in reversed(range(kernel)):  # each tap serves one phase; phases without taps are the bias alone
        by_residue.setdefault((k * dilation - begin) % stride, []).append(k)
    phases = []
    for residue, taps in sorted((r, t) for r, t in by_residue.items() if r < out):
        count = len(range(residue, out, stride))
        reads = {k: (residue + begin - k * dilation) // stride for k in taps}  # the input output `residue` reads
        kept = tuple(k for k in taps if -count < reads[k] < size)  # the others read padding alone
        if kept:
            phases.append(AxisPhase(residue, count, kept, reads[kept[0]], step))
    low = min((p.first for p in phases), default=0)
    high = max((p.first + p.count - 1 + (len(p.taps) - 1) * p.step for p in phases), default=size - 1)
    return Axis(tuple(phases), stride, max(0, -low), max(0, high - size + 1), out)


def _attribute(value, rank: int, default: int, what: str) -> tuple[int, ...]:
    value = tuple(value) if value else (default,) * rank
    if len(value) != rank:
        raise unsupported(f"{what} {list(value)} for {rank} spatial axes")
    return value


def axes(spatial: tuple[int, ...], kernel: tuple[int, ...], auto_pad: str, strides, dilations, pads,
         output_padding, output_shape) -> tuple[Axis, ...]:
    rank = len(spatial)
    strides, dilations = _attribute(strides, rank, 1, "strides"), _attribute(dilations, rank, 1, "dilations")
    extra, given = _attribute(output_padding, rank, 0, "output_padding"), _attribute(pads, 2 * rank, 0, "pads")
    shape = tuple(output_shape or ())
    targets = shape or (None,) * rank
    if min(strides + dilations) < 1 or min(extra + given) < 0 or len(targets) != rank:
        raise unsupported(f"strides {list(strides)}, dilations {list(dilations)}, pads {list(given)}, "
                          f"output_padding {list(extra)} and output_shape {list(shape)}")
    result = []
    for a, (size, k, s, d, e, t) in enumerate(zip(spatial, kernel, strides, dilations, extra, targets)):
        full = s * (size - 1) + e + (k - 1) * d + 1
        begin, end = _pads(size, s, full, auto_pad, (given[a], given[a + rank]), t)
        result.append(axis(size, k, s, d, begin, end - e))
    if min(a.out for a in result) < 1:
        raise unsupported(f"an output of shape {[a.out for a in result]}")
    return tuple(result)


@operator
def ConvTranspose(b, node, name: str, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                  output_padding=None, output_shape=None, pads=None, strides=None):
    """On the MAC array: per phase of the output (stride s: s per axis) and group, a conv node over
    one channels-last, zero-padded copy of the input; one gather interleaves them."""
    x, w, bias_name = padded(node.input, 3)
    shape, weight = tuple(b.shape(x)), constant_weight(b, w, "ConvTranspose weight")
    channels = shape[1]
    if weight.ndim != len(shape) or group < 1 or channels % group or weight.shape[0] != channels \
            or (kernel_shape and tuple(kernel_shape) != weight.shape[2:]):
        raise unsupported(f"a ConvTranspose weight of shape {list(weight.shape)} (group {group}) "
                          f"for an input of shape {list(shape)}")
    out_channels = weight.shape[1] * group
    bias = constant_weight(b, bias_name, "ConvTranspose bias") if bias_name else np.zeros(out_channels, np.float32)
    if bias.shape != (out_channels,):
        raise unsupported(f"a ConvTranspose bias of shape {list(bias.shape)} for {out_channels} output channels")
    spatial = axes(shape[2:], weight.shape[2:], auto_pad, strides, dilations, pads, output_padding, output_shape)
    check_elements("the ConvTranspose's output", (shape[0], *(a.out for a in spatial), out_channels))
    g = Geometry(weight.shape[2:], (1,) * len(spatial), (1,) * len(spatial), tuple(a.begin for a in spatial),
                 tuple(a.end for a in spatial), tuple(a.out for a in spatial))
    source, is_padding = padded_input(b, name, x, shape, g)
    layer = Layer(name, (shape[0], *(s + a.begin + a.end for s, a in zip(shape[2:], spatial)), channels),
                  spatial, weight, bias if bias_name else None, group, source, is_padding)
    index = np.full((shape[0], *g.out, out_channels), -1, np.int64)
    for number, phases in enumerate(product(*(a.phases for a in spatial))):
        layer.phase(b, number, phases, index)
    inputs, total = list(layer.outputs), layer.elements
    if (index < 0).any():
        inputs.append(f"{name}/bias")  # the interleave's (not the layer's matrix work: the report's row)
        b.emit(Node("constant", f"{name}/channels-first", (), (inputs[-1],), ConstantAttrs(value=bias)),
               {inputs[-1]: bias.shape})
        index = np.where(index < 0, total + np.arange(out_channels), index)
    index = np.moveaxis(index, -1, 1)
    b.emit(Node("gather", f"{name}/channels-first", tuple(inputs), (node.output[0],),
                GatherAttrs(index=index.ravel())), {node.output[0]: index.shape})


@dataclass
class Layer:
    """A ConvTranspose's parts shared by its phases, and the conv nodes emitted so far."""

    name: str
    padded_shape: tuple[int, ...]  # [N, spatial..., C] with the zeros
    spatial: tuple[Axis, ...]
    weight: np.ndarray  # [C, M / group, k...]
    bias: np.ndarray | None
    group: int
    source: str
    is_padding: np.ndarray
    outputs: tuple[str, ...] = ()
    elements: int = 0  # of the emitted outputs together: where the next one starts in the gather

    def phase(self, b, number: int, phases: tuple[AxisPhase, ...], index: np.ndarray) -> None:
        """Emit the phase's conv nodes (one per group), over the positions whose window holds an
        input element, and record in `index` (channels-last output) where the gather finds each
        output element; the others keep -1: they are the bias alone."""
        starts, offsets = self._phase_windows(phases, 0)
        real = ~self.is_padding[starts[:, None] + offsets[None, :]].all(axis=1)  # alike in every group
        if not real.any():
            return
        per_group = self.weight.shape[1]
        where = index[(slice(None), *(slice(p.residue, None, a.stride) for p, a in zip(phases, self.spatial)))]
        for k in range(self.group):
            found = self.elements + (np.cumsum(real) - 1)[:, None] * per_group + np.arange(per_group)
            where[..., k * per_group:(k + 1) * per_group] = np.where(real[:, None], found, -1).reshape(
                *where.shape[:-1], per_group)
            self._emit(b, number * self.group + k, phases, real)

    def _emit(self, b, key: int, phases: tuple[AxisPhase, ...], real: np.ndarray) -> None:
        """Group `key % group`'s conv node over the `real` positions of the phase: its matrix is
        the phase's taps of the group's rows of W, as [M / group, taps x channels]."""
        group, channels, per_group = key % self.group, self.weight.shape[0] // self.group, self.weight.shape[1]
        starts, offsets = self._phase_windows(phases, group * channels)
        starts = starts[real]
        w = self.weight[group * channels:(group + 1) * channels][(slice(None), slice(None),
                                                                  *np.ix_(*(p.taps for p in phases)))]
        attrs = ConvAttrs(weight=np.ascontiguousarray(np.moveaxis(w, 0, -1).reshape(per_group, -1)),
                          bias=None if self.bias is None else self.bias[group * per_group:(group + 1) * per_group],
                          offsets=offsets, starts=starts, group=key,
                          **window_padding(self.is_padding, starts, offsets, channels))
        out = f"{self.name}/phase{key // self.group}/group{group}"
        b.emit(Node("conv", self.name, (self.source,), (out,), attrs), {out: (len(starts), per_group)})
        self.outputs, self.elements = (*self.outputs, out), self.elements + len(starts) * per_group

    def _phase_windows(self, phases: tuple[AxisPhase, ...], first_channel: int) -> tuple[np.ndarray, np.ndarray]:
        """conv_ops' windows of a stride-1 convolution, moved to where the phase's first one starts."""
        rank = len(phases)
        g = Geometry(tuple(len(p.taps) for p in phases), (1,) * rank, tuple(p.step for p in phases),
                     (0,) * rank, (0,) * rank, tuple(p.count for p in phases))
        starts, offsets = windows(self.padded_shape, g, self.weight.shape[0] // self.group, first_channel)
        steps = np.cumprod((self.padded_shape[1:] + (1,))[::-1])[::-1][1:-1]
        origin = sum(int(step) * (p.first + a.begin) for step, p, a in zip(steps, phases, self.spatial))
        return starts + origin, offsets


declare({"ConvTranspose": conv_constraints("ConvTranspose", "transposed convolution")})

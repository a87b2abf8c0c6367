"""Conv (1-D and 2-D) on the MAC array.

A convolution is a fully connected layer applied to windows of its input. The input is copied
channels-last with its zero padding (one gather, reading a run of zeros for the padding), so each
window is a few contiguous runs of memory; each group becomes a `conv` node (ops/conv.py) that
multiplies its weight [out/group, taps x channels/group] by every window -- except when each group
is one input channel (depthwise): then each channel multiple is a `depthwise` node
(ops/depthwise.py), a lane per channel, as a matrix of one row would use one lane; one gather puts the
groups' channels-last outputs back in ONNX's [N, C, spatial...] order (a Transpose or Reshape
after it fuses with that gather); that gather is a node of its own (`name/channels-first`), so the
report's row for the Conv is its matrix work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.frontend.capability import Constraint, NodeView, constant, declare
from compiler.frontend.compute_ops import constant_weight
from compiler.frontend.registry import operator, padded, unsupported
from compiler.ir import Node
from compiler.ops.constant import ConstantAttrs
from compiler.ops.conv import ConvAttrs
from compiler.ops.depthwise import DepthwiseAttrs
from compiler.ops.gather import GatherAttrs

RANKS = (3, 4)  # [N, C, L] and [N, C, H, W]


@dataclass(frozen=True)
class Geometry:
    """A convolution's shape arithmetic, per spatial axis."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    begin: tuple[int, ...]  # zeros before the input
    end: tuple[int, ...]  # zeros after it
    out: tuple[int, ...]


def _same_pads(size: int, kernel: int, stride: int, dilation: int, upper: bool) -> tuple[int, int]:
    """SAME_UPPER/SAME_LOWER: ceil(size / stride) outputs, the odd zero after (upper) or before."""
    total = max(0, (-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size)
    return (total // 2, total - total // 2) if upper else (total - total // 2, total // 2)


def geometry(spatial: tuple[int, ...], kernel: tuple[int, ...], auto_pad: str, strides, dilations, pads) -> Geometry:
    rank = len(spatial)
    strides, dilations = tuple(strides or (1,) * rank), tuple(dilations or (1,) * rank)
    if len(strides) != rank or len(dilations) != rank or min(strides + dilations) < 1:
        raise unsupported(f"strides {list(strides)} and dilations {list(dilations)} for {rank} spatial axes")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pairs = [_same_pads(*a, auto_pad == "SAME_UPPER") for a in zip(spatial, kernel, strides, dilations)]
        begin, end = tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
    else:
        given = tuple(pads or (0,) * 2 * rank) if auto_pad == "NOTSET" else (0,) * 2 * rank
        if len(given) != 2 * rank or min(given) < 0:
            raise unsupported(f"pads {list(given)} for {rank} spatial axes")
        begin, end = given[:rank], given[rank:]
    out = tuple((s + b + e - (k - 1) * d - 1) // st + 1
                for s, b, e, k, d, st in zip(spatial, begin, end, kernel, dilations, strides))
    if min(out) < 1:
        raise unsupported(f"a kernel of {list(kernel)} (dilations {list(dilations)}) over padded input "
                          f"{[s + b + e for s, b, e in zip(spatial, begin, end)]}")
    return Geometry(tuple(kernel), strides, dilations, begin, end, out)


def _padded_index(shape: tuple[int, ...], g: Geometry) -> tuple[np.ndarray, int]:
    """The index of the channels-last padded copy of x [N, C, spatial...] into x (then zeros): each
    padding run reads consecutive zeros from x.size on. Returns it and the longest run of zeros."""
    index = np.moveaxis(np.arange(int(np.prod(shape))).reshape(shape), 1, -1)
    index = np.pad(index, [(0, 0), *zip(g.begin, g.end), (0, 0)], constant_values=-1).ravel()
    pad = index < 0
    if not pad.any():
        return index, 0
    run_start = np.maximum.accumulate(np.where(pad & ~np.r_[False, pad[:-1]], np.arange(len(pad)), 0))
    index[pad] = int(np.prod(shape)) + (np.arange(len(pad)) - run_start)[pad]
    return index, int((np.arange(len(pad)) - run_start)[pad].max()) + 1


def windows(padded: tuple[int, ...], g: Geometry, channels: int, first: int) -> tuple[np.ndarray, np.ndarray]:
    """Window starts (one per output position, batch entries included) and offsets (taps, then the
    group's `channels` from channel `first`) in the channels-last padded input of shape `padded`."""
    steps = np.cumprod((padded[1:] + (1,))[::-1])[::-1]  # elements per step of each axis
    spatial = steps[1:-1]
    starts = np.zeros(1, np.int64)
    for count, step in [(padded[0], steps[0]), *zip(g.out, spatial * np.array(g.strides))]:
        starts = (starts[:, None] + np.arange(count) * step).ravel()
    taps = np.zeros(1, np.int64)
    for k, step in zip(g.kernel, spatial * np.array(g.dilations)):
        taps = (taps[:, None] + np.arange(k) * step).ravel()
    offsets = (taps[:, None] + first + np.arange(channels)).ravel()
    return starts.astype(np.int64), offsets.astype(np.int64)


@operator
def Conv(b, node, name: str, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
         strides=None):
    """On the MAC array: a matrix per group times windows read in place from a channels-last,
    zero-padded copy of the input; depthwise (every group one input channel) a lane per channel.

    Each group is a conv node (depthwise: each channel multiple a depthwise node); one gather puts
    their channels-last outputs back in [N, C, ...]."""
    x, w, bias_name = padded(node.input, 3)
    shape, weight = tuple(b.shape(x)), constant_weight(b, w, "Conv weight")
    channels, out_channels = shape[1], weight.shape[0]
    if weight.ndim != len(shape) or group < 1 or channels % group or out_channels % group \
            or weight.shape[1] * group != channels or (kernel_shape and tuple(kernel_shape) != weight.shape[2:]):
        raise unsupported(f"a weight of shape {list(weight.shape)} (group {group}) for an input of shape {list(shape)}")
    bias = constant_weight(b, bias_name, "Conv bias") if bias_name else None
    if bias is not None and bias.shape != (out_channels,):
        raise unsupported(f"a Conv bias of shape {list(bias.shape)} for {out_channels} output channels")
    g = geometry(shape[2:], weight.shape[2:], auto_pad, strides, dilations, pads)
    source, is_padding = padded_input(b, name, x, shape, g)
    padded_shape = (shape[0], *(s + p + q for s, p, q in zip(shape[2:], g.begin, g.end)), channels)
    if group == channels > 1:
        return _depthwise(b, node, name, source, is_padding, padded_shape, g, weight, bias)
    per_group, outputs = out_channels // group, []
    matrix = np.moveaxis(weight, 1, -1).reshape(out_channels, -1)  # [out, taps x channels/group]
    for k in range(group):
        starts, offsets = windows(padded_shape, g, channels // group, k * (channels // group))
        rows = slice(k * per_group, (k + 1) * per_group)
        attrs = ConvAttrs(weight=np.ascontiguousarray(matrix[rows]), bias=None if bias is None else bias[rows],
                          offsets=offsets, starts=starts, group=k,
                          **window_padding(is_padding, starts, offsets, channels // group))
        outputs.append(f"{name}/group{k}" if group > 1 else f"{name}/channels-last")
        b.emit(Node("conv", name, (source,), (outputs[-1],), attrs), {outputs[-1]: (len(starts), per_group)})
    order = np.arange(len(starts) * out_channels).reshape(group, len(starts), per_group)
    _channels_first(b, node, name, tuple(outputs), order.transpose(1, 0, 2).reshape(len(starts), out_channels), g)


def window_padding(is_padding: np.ndarray, starts: np.ndarray, offsets: np.ndarray, channels: int) -> dict:
    """A conv node's `padding` (window elements, over all positions, that read padding) and
    `padded` (which taps, of `channels` elements each, of each window are padding; None if none)."""
    in_padding = is_padding[starts[:, None] + offsets[None, :]]
    return {"padding": int(in_padding.sum()), "padded": in_padding[:, ::channels] if in_padding.any() else None}


def _depthwise(b, node, name: str, source: str, is_padding: np.ndarray, padded_shape: tuple[int, ...],
               g: Geometry, weight: np.ndarray, bias: np.ndarray | None) -> None:
    """A depthwise Conv (each group one input channel) as `multiplier` depthwise nodes, node j
    making output channels c·multiplier + j; one gather interleaves them into [N, C, ...]."""
    channels, out_channels = padded_shape[-1], weight.shape[0]
    multiplier = out_channels // channels
    starts, taps = windows(padded_shape, g, 1, 0)
    padded = window_padding(is_padding, starts, taps, 1)["padded"]
    kernels = weight.reshape(out_channels, -1)
    bias = np.zeros(out_channels, np.float32) if bias is None else bias
    outputs = []
    for j in range(multiplier):
        attrs = DepthwiseAttrs(weight=np.ascontiguousarray(kernels[j::multiplier]), bias=bias[j::multiplier],
                               taps=taps, starts=starts, padded=padded, multiple=j)
        outputs.append(f"{name}/depthwise{j}" if multiplier > 1 else f"{name}/channels-last")
        b.emit(Node("depthwise", name, (source,), (outputs[-1],), attrs), {outputs[-1]: (len(starts), channels)})
    order = np.arange(len(starts) * out_channels).reshape(multiplier, len(starts), channels)
    _channels_first(b, node, name, tuple(outputs), order.transpose(1, 2, 0).reshape(len(starts), out_channels), g)


def _channels_first(b, node, name: str, outputs: tuple[str, ...], order: np.ndarray, g: Geometry) -> None:
    """One gather of the nodes' outputs (concatenated) into ONNX's [N, C, spatial...]: `order`
    [positions, out channels] says where in the concatenation each output element is."""
    batch = order.shape[0] // int(np.prod(g.out))
    index = np.moveaxis(order.reshape(batch, *g.out, order.shape[-1]), -1, 1)
    out = node.output[0]
    b.emit(Node("gather", f"{name}/channels-first", outputs, (out,), GatherAttrs(index=index.ravel())),
           {out: index.shape})


def padded_input(b, name: str, x: str, shape: tuple[int, ...], g: Geometry) -> tuple[str, np.ndarray]:
    """The channels-last copy of x with its zero padding, as a gather (of x and a run of zeros),
    and which of its elements are padding."""
    index, zeros = _padded_index(shape, g)
    inputs = (x,)
    if zeros:
        inputs = (x, f"{name}/zeros")
        b.emit(Node("constant", name, (), (inputs[1],), ConstantAttrs(value=np.zeros(zeros, np.float32))),
               {inputs[1]: (zeros,)})
    out = f"{name}/padded"
    b.emit(Node("gather", name, inputs, (out,), GatherAttrs(index=index)), {out: (len(index),)})
    return out, index >= int(np.prod(shape))


def _computed_input(view: NodeView) -> bool:
    return not view.input(0).is_const


def conv_constraints(op: str, kind: str) -> tuple[Constraint, ...]:
    """What a convolution (Conv, ConvTranspose) needs: constant W and B, a computed 1-D or 2-D X."""
    return (constant(1, "W"), constant(2, "B"),
            Constraint(f"X must be rank 3 or 4 (a 1-D or 2-D {kind})", lambda v: v.input(0).rank in RANKS,
                       lambda v: f"rank {v.input(0).rank}"),
            Constraint(f"X must be computed data (a {op} of constants is not folded)", _computed_input,
                       lambda v: f"constant '{v.input(0).name}'"))


CONSTRAINTS = {"Conv": conv_constraints("Conv", "convolution")}
declare(CONSTRAINTS)

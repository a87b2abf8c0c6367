"""depthwise: a convolution whose every output channel reads one input channel of its own.

As a matrix per group (ops/conv.py) it would be one row per instruction: one lane of the array
busy. Here the lanes are the channels: MVDB and MVDA (isa/table.py) give lane r channel r of each
tap, one tap per cycle, so a tile of up to `macs` channels takes as many cycles as the kernel has
taps. The frontend (frontend/conv_ops.py) lays the input out channels-last with its zero padding,
as for conv; the node holds the weight [channels, taps] (channel c's kernel, taps in the input's
order), `taps`, each tap's place relative to a window's start (channel 0; channel c is c further
on), and `starts`, each output position's window start. Its output is [positions, channels].

Lowering: a window's taps fall into runs of equal step (a kernel row of a 2-D kernel; the whole
kernel of a 1-D one), an instruction each, the later ones accumulating. An accumulation waits
`mac_latency` cycles for the accumulator it continues (SPEC rule 2), so the products of several
positions go out run by run, enough of them in flight for the runs between two of one position's
to cover that latency; one VRQ per position requantises all its channels. Groups of positions
alternate between two sets of accumulators, so a group's products never wait for the previous
group's requantisation, and reroll folds the groups into a LOOP. With fewer channels than lanes
and stride 1 along the last axis, consecutive positions' windows are one run of memory, so one
instruction takes several positions side by side (lane p·channels + c: position p, channel c),
the weights stored once per position it takes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from compiler.ir import Node, QMatrix
from compiler.kernel import Ref, Where
from compiler.ops.conv import WINDOW_ELEMENTS, Reader, evenly_spaced
from compiler.ops.fc import parameters
from compiler.ops.registry import OpDef, free_scale, register
from compiler.passes.lowering import Lowering
from compiler.passes.matrices import MatrixRefs, place_matrix, requantize
from compiler.passes.weights import WeightPolicy
from isa import numerics as nx
from isa.table import BY_MNEMONIC, stride
from isa.target import Target

DEPTHWISE = "depthwise"
MAX_STEP = BY_MNEMONIC["MVDA"].field("step").high
MAX_TAPS = BY_MNEMONIC["MVDA"].field("taps").high
MAX_IN_FLIGHT = 8  # positions whose products interleave: enough for any run of 1 tap at mac_latency 4


@dataclass(frozen=True, kw_only=True)
class DepthwiseAttrs:
    weight: np.ndarray  # float32 [channels, taps]
    bias: np.ndarray  # float32 [channels] (zeros when the Conv has none: MVDB always preloads one)
    taps: np.ndarray  # int64 [taps]: each tap's place from the window's start
    starts: np.ndarray  # int64 [positions]: where each output position's window starts
    padded: np.ndarray | None = None  # bool [positions, taps]: which taps of each window are padding
    multiple: int = 0  # which of a channel multiplier's nodes: names its buffers apart from its siblings'


@dataclass(frozen=True, kw_only=True)
class QuantDepthwiseAttrs(DepthwiseAttrs):
    q: QMatrix


def windows(node: Node, x: np.ndarray, positions: slice) -> np.ndarray:
    """x's windows for `positions`: [samples, positions, taps, channels]."""
    channels = np.arange(len(node.attrs.weight))
    index = node.attrs.starts[positions, None, None] + node.attrs.taps[None, :, None] + channels[None, None, :]
    return x.reshape(len(x), -1)[:, index]


def by_positions(product):
    """An op's semantics from `product` (the node and its windows -> [samples, positions,
    channels]), made a bounded number of positions at a time: the windows hold each input element
    up to taps times."""

    def run(node: Node, x: np.ndarray) -> np.ndarray:
        starts, size = node.attrs.starts, len(x) * node.attrs.weight.size
        step = max(1, WINDOW_ELEMENTS // max(1, size))
        return np.concatenate([product(node, windows(node, x, slice(i, i + step)))
                               for i in range(0, len(starts), step)], axis=1)

    return run


def float_product(node: Node, w: np.ndarray) -> np.ndarray:
    return np.einsum("sptc,ct->spc", w, node.attrs.weight.astype(np.float64)) + node.attrs.bias


def integer_product(node: Node, w: np.ndarray) -> np.ndarray:
    q = node.attrs.q
    acc = np.einsum("sptc,ct->spc", w.astype(np.int64), q.weights) + q.bias
    return nx.requantize(acc, q.mult, q.shift)


def quantize_depthwise(node: Node, scales: dict[str, float], policy: WeightPolicy) -> Node:
    """Per channel, as fc quantises per row; never compressed: the weights are a few taps per
    channel, and the depthwise instructions read them plain."""
    plain = dataclasses.replace(policy, compression=None)
    a = node.attrs
    q = plain.matrix(a.weight, a.bias, scales[node.inputs[0]], scales[node.outputs[0]])
    return node.quantized(QuantDepthwiseAttrs, q=q)


def tap_runs(taps: np.ndarray) -> tuple[tuple[int, int, int], ...]:
    """(t0, t1, step): the kernel's taps cut into runs of equal step an instruction can walk (a
    step too long for the field, or too many taps, starts a new run)."""
    out, t0 = [], 0
    while t0 < len(taps):
        step = int(taps[t0 + 1] - taps[t0]) if t0 + 1 < len(taps) else 0
        t1 = t0 + 1
        if 0 <= step <= MAX_STEP:
            while t1 < len(taps) and t1 - t0 < MAX_TAPS and taps[t1] - taps[t1 - 1] == step:
                t1 += 1
        out.append((t0, t1, step if t1 - t0 > 1 else 0))
        t0 = t1
    return tuple(out)


def kept_runs(runs: tuple[tuple[int, int, int], ...], padded: np.ndarray | None) -> tuple[tuple[int, int, int], ...]:
    """A window's runs without the taps at their ends that lie in padding (SPEC rule 3: a lane that
    multiplies padding does no useful work); a window wholly in padding keeps its first run,
    since its output is the bias and an instruction must write the accumulator."""
    if padded is None or not padded.any():
        return runs
    kept = []
    for t0, t1, step in runs:
        inside = t0 + np.flatnonzero(~padded[t0:t1])
        if inside.size:
            a, b = int(inside[0]), int(inside[-1]) + 1
            kept.append((a, b, step if b - a > 1 else 0))
    return tuple(kept) or runs[:1]


def plans(node: Node, pack: int) -> list[tuple[tuple[int, int, int], ...]]:
    """Each position's runs of taps, `pack` positions to an instruction: padding left out, unless
    that costs its row MAC cycles (a trimmed border position cannot share an instruction with its
    untrimmed neighbours, and on a narrow row the extra instructions cost more than the padding taps)."""
    runs, padded, starts = tap_runs(node.attrs.taps), node.attrs.padded, node.attrs.starts
    trimmed = [kept_runs(runs, None if padded is None else padded[p]) for p in range(len(starts))]
    full = [runs] * len(starts)
    chosen = []
    for r in evenly_spaced(starts):
        row = range(r.start, r.stop)
        cheaper = _cycles(_packs(row, full, pack), full) < _cycles(_packs(row, trimmed, pack), trimmed)
        chosen.extend((full if cheaper else trimmed)[r])
    return chosen


def _cycles(packs: list[range], plans: list) -> int:
    """The MAC cycles of a row's packs (a tap per cycle, per tile alike)."""
    return sum(t1 - t0 for pack in packs for t0, t1, _ in plans[pack.start])


def in_flight(runs: tuple[tuple[int, int, int], ...], tiles: int, latency: int) -> int:
    """Positions whose products interleave: with one run there is nothing to wait for; otherwise
    enough that the other products between two runs of one position cover `latency` cycles."""
    if len(runs) == 1:
        return 1
    shortest = min(t1 - t0 for t0, t1, _ in runs)
    products = -(-latency // shortest) + 1  # products in flight, so the ones between cover latency
    return min(MAX_IN_FLIGHT, -(-products // tiles))


def packing(starts: np.ndarray, channels: int, macs: int) -> int:
    """Positions one instruction computes side by side: when the positions of each output row are
    `channels` apart (stride 1 along the last axis), a window's taps for consecutive positions are
    one run of memory, so lane p·channels + c can take position p's channel c; that fills the
    lanes when there are fewer channels than lanes."""
    steps = np.concatenate([np.diff(starts[r]) for r in evenly_spaced(starts)])
    return max(1, macs // channels) if np.all(steps == channels) else 1


def waves(starts: np.ndarray, plans: list, group: int, channels: int, pack: int,
          acc_entries: int) -> list[list[list[range]]]:
    """The loop candidates, each a list of waves, each a list of packs (consecutive positions of
    one plan, computed by one instruction). Interleaving needs `group` packs in flight; a whole
    output row is one wave when two rows' accumulators fit in a quarter of accumulator memory, so
    the rows alike fold into one loop; otherwise each row is a candidate, its packs `group` at a time."""
    rows = [_packs(range(r.start, r.stop), plans, pack) for r in evenly_spaced(starts)]
    widths = {sum(map(len, row)) for row in rows}
    if group > 1 and len(widths) == 1 and 2 * max(widths) * channels <= acc_entries // 4:
        return [rows]
    return [[row[k:k + group] for k in range(0, len(row), group)] for row in rows]


def _packs(row: range, plans: list, pack: int) -> list[range]:
    """The row's positions in packs of at most `pack`, each of positions with one plan."""
    out, first = [], row.start
    for p in range(row.start + 1, row.stop + 1):
        if p == row.stop or plans[p] != plans[first] or p - first == pack:
            out.append(range(first, p))
            first = p
    return out


def replicated(q: QMatrix, copies: int) -> QMatrix:
    """q with its channels repeated `copies` times: the rows of a pack of positions side by side."""
    if copies == 1:
        return q
    return dataclasses.replace(q, weights=np.tile(q.weights, (copies, 1)), mult=np.tile(q.mult, copies),
                               shift=np.tile(q.shift, copies), bias=np.tile(q.bias, copies),
                               tiles=((0, copies * q.rows),))


def lower_depthwise(ctx: Lowering, node: Node, where: Where) -> None:
    key, q, starts = f"multiple{node.attrs.multiple}", node.attrs.q, node.attrs.starts
    x, y = Reader.of(ctx, node.inputs[0]), ctx.place(node.outputs[0])
    channels, pack = q.rows, packing(starts, q.rows, ctx.target.macs)
    planned = plans(node, pack)
    group = in_flight(tap_runs(node.attrs.taps), len(q.tiles), ctx.target.mac_latency)
    candidates = waves(starts, planned, group, channels, pack, ctx.target.acc_entries)
    sizes = {len(pack) for candidate in candidates for wave in candidate for pack in wave}
    matrices = {k: place_matrix(ctx, replicated(q, k), node.source, key if k == 1 else f"{key}x{k}") for k in sizes}
    size = max(sum(map(len, wave)) for candidate in candidates for wave in candidate) * channels
    accs = [ctx.buffer(f"{node.source}/{key}/acc{k}", "acc", size) for k in range(2)]
    product, requant = Where(where.node, where.layer, what="Wx"), Where(where.node, where.layer, what="requantise")
    for candidate in candidates:
        spans = []
        for n, wave in enumerate(candidate):
            offsets = np.cumsum([0, *map(len, wave)])[:-1] * channels
            places = [Place(matrices[len(pack)], pack.start, accs[n % 2] + int(o), planned[pack.start])
                      for pack, o in zip(wave, offsets)]
            start = len(ctx.ops)
            _products(ctx, node, x, places, product)
            for place in places:
                requantize(ctx, place.m, requant, y + place.position * channels, place.acc)
            spans.append((start, len(ctx.ops)))
        ctx.loop_candidate(spans, where)


@dataclass(frozen=True)
class Place:
    """One instruction's worth of positions: their matrix (the channels once per position), the
    first position, the accumulators and the runs of taps."""

    m: MatrixRefs
    position: int
    acc: Ref
    runs: tuple[tuple[int, int, int], ...]


def _products(ctx: Lowering, node: Node, x: Reader, places: list[Place], where: Where) -> None:
    """acc = bias + the depthwise product, for each place: run by run, and within a run place by
    place, so one place's accumulations are apart."""
    starts, taps = node.attrs.starts, node.attrs.taps
    for index in range(max(len(place.runs) for place in places)):
        for place in (place for place in places if index < len(place.runs)):
            t0, t1, step = place.runs[index]
            for tile, (r0, r1) in enumerate(place.m.tiles):
                rows = r1 - r0
                read = x.run(int(starts[place.position] + taps[t0]) + r0, (t1 - t0 - 1) * step + rows)
                operands = {"acc": place.acc + r0, "w": place.m.weights[tile] + t0 * rows * ctx.target.weight_bytes,
                            "x": read, "rows": rows, "taps": t1 - t0, "step": step}
                tile_where = Where(where.node, where.layer, where.step, tile, where.what)
                if index:
                    ctx.emit("MVDA", tile_where, **operands)
                else:
                    ctx.emit("MVDB", tile_where, bias=place.m.bias + stride("MVDB", "bias") * r0, **operands)


def padding_macs(node: Node, target: Target) -> int:
    """Each tap multiplied from the padding costs a MAC in each channel's lane: those of windows
    wholly in padding, and of rows where leaving padding out would cost cycles (`plans`)."""
    padded = node.attrs.padded
    if padded is None:
        return 0
    channels = len(node.attrs.weight)
    planned = plans(node, packing(node.attrs.starts, channels, target.macs))
    return sum(int(padded[p, t0:t1].sum()) for p, runs in enumerate(planned) for t0, t1, _ in runs) * channels


register(OpDef(DEPTHWISE, "matrix", DepthwiseAttrs, by_positions(float_product), by_positions(integer_product),
               free_scale, lower_depthwise, QuantDepthwiseAttrs, quantize_depthwise, parameters=parameters,
               padding_macs=padding_macs))

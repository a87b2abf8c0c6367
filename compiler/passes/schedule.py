"""The schedule: every node lowered, in graph order, to machine ops over buffers, then those ops
interleaved and folded into loops. Three passes, each a function a test can call alone, which the
pipeline runs in this order:

    lower       Graph -> Kernel: each node's ops in plain order, and as data what the two passes
                after it do: streams to interleave and waves to fold (kernel.Interleave,
                kernel.LoopCandidate)
    interleave  the recorded streams zipped one op at a time (passes/interleave.py)
    reroll      each recurrent layer's repeating waves folded into a hardware LOOP, with its
                stride table (passes/reroll.py)

Lowering LOADs the inputs, lowers each node by its op's lowering (compiler/ops) and STOREs the outputs. Ops are
emitted in dependency order and the chip's scoreboard overlaps what it can: the DMA, MAC and
vector units run concurrently wherever the data allow, so the order of emission decides what
overlaps.

A recurrent layer (ops/recurrent/lower.py) emits its steps in waves: wave k holds step k of every
direction and batch element. A step (ops/recurrent/cells.py) is its MAC part first, W x_t (+ b), its
requantisation and R h_{t-1} per row tile (in two accumulating column chunks on wide arrays),
then the vector work per unit group: each group's gates, activations and state update, which can
start as soon as the tile holding the group's rows is done; the groups finished by the same tile
are emitted one after the other and interleaved afterwards (a GRU without linear_before_reset
waits for all of r*h before its candidate's product). The next step's W x does not wait for h, so
the array runs it while the vector unit finishes. Waves that differ only by address strides fold
into one hardware LOOP (reroll), compared after interleaving, as they will run.
docs/scheduling.md says why, with a timeline.
"""

from __future__ import annotations

import itertools

import numpy as np

from compiler.ir import Graph
from compiler.kernel import IOTensor, Kernel, Ref, StateTensor, Where
from compiler.ops import MATRIX_OPS, OPS
from compiler.passes.lowering import Lowering
from compiler.passes.streaming import store_runs
from isa.target import Target


def lower(graph: Graph, target: Target) -> Kernel:
    """Every node's ops in plain order, with the interleavings and loop candidates still to do."""
    ctx = Lowering(graph, target)
    for name, output in graph.bound:
        ctx.places[name] = ctx.state_buffer(f"state:{name}", StateTensor(
            name, graph.shapes[name], graph.scales[name], Ref(name), graph.packed.get(name), output))
    inputs = tuple(_io(ctx, name, ctx.place(name), "input") for name in graph.host_inputs)
    for tensor in inputs:
        ctx.emit_elementwise("LOAD", Where("input", -1, what=tensor.name), _size(tensor), dst=tensor.place,
                             src=tensor.host)
    layers = itertools.count()
    for node in graph.nodes:
        layer = next(layers) if node.op in MATRIX_OPS else -1
        OPS[node.op].lower(ctx, node, Where(node.source, layer))
    for name, output in graph.bound:
        _store_state(ctx, name, output)
    outputs = tuple(_io(ctx, name, ctx.places[name], "output") for name in graph.host_outputs)
    for tensor in outputs:
        ctx.emit_elementwise("STORE", Where("output", -1, what=tensor.name), _size(tensor), dst=tensor.host,
                             src=tensor.place)
    return Kernel(ctx.buffers, tuple(ctx.ops), inputs, outputs, tuple(ctx.tables),
                  interleaves=tuple(ctx.interleaves), loops=tuple(ctx.loops), state=tuple(ctx.state),
                  shared=ctx.shared)


def _store_state(ctx: Lowering, name: str, output: str) -> None:
    """The run's new state into the bound input's buffer, after every reader of the old one: a
    copy, or VSCALE where the output's scale is not the input's (passes/streaming.store_runs)."""
    where = Where(name, -1, what="state")
    src, dst = ctx.places[output], ctx.places[name]
    for start, stop, rescale in store_runs(ctx.graph, name, output):
        if rescale is None:
            if src + start != dst + start:
                ctx.emit_elementwise("VMOV", where, stop - start, dst=dst + start, src=src + start)
        else:
            ctx.emit_elementwise("VSCALE", where, stop - start, dst=dst + start, src=src + start,
                                 mult=rescale[0], shift=rescale[1])


def _io(ctx: Lowering, name: str, place: Ref, role: str) -> IOTensor:
    """A graph input or output in host memory; a model may output one of its inputs as it is, so
    the two roles have buffers of their own."""
    host = ctx.buffer(f"host:{role}:{name}", "host", ctx.graph.size(name))
    return IOTensor(name, ctx.graph.shapes[name], ctx.graph.scales[name], host, place, ctx.graph.packed.get(name))


def _size(tensor: IOTensor) -> int:
    return int(np.prod(tensor.shape, dtype=np.int64))

"""The schedule: every node lowered, in graph order, to machine ops over buffers, then those ops
interleaved and folded into loops. Three passes, each a function a test can call alone, which the
pipeline runs in this order:

    lower       Graph -> Kernel: each node's ops in plain order, and as data what the two passes
                after it do: streams to interleave and waves to fold (kernel.Interleave,
                kernel.LoopCandidate)
    interleave  the recorded streams zipped one op at a time (passes/interleave.py)
    reroll      each recurrent layer's repeating waves folded into a hardware LOOP, with its
                stride table (passes/reroll.py)

Lowering LOADs the inputs, lowers each node by its kind (LOWER) and STOREs the outputs. Ops are
emitted in dependency order and the chip's scoreboard overlaps what it can: the DMA, MAC and
vector units run concurrently wherever the data allow, so the order of emission decides what
overlaps.

A recurrent layer (lower_recurrent) emits its steps in waves: wave k holds step k of every
direction and batch element. A step (lower_cells) is its MAC part first, W x_t (+ b), its
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

import dataclasses
import itertools
from collections.abc import Callable

import numpy as np

from compiler.ir import MATRIX_OPS, RECURRENT_OPS, SOFTMAX_OPS, Graph, Node
from compiler.kernel import IOTensor, Kernel, Ref, Where
from compiler.passes.lower_elementwise import PAIR_OPS, lower_add_const, lower_mul_const, lower_pair
from compiler.passes.lower_recurrent import lower_recurrent
from compiler.passes.lower_softmax import lower_softmax
from compiler.passes.lowering import Lowering
from compiler.passes.matrices import MatrixRefs, matvec, place_matrix, requantize
from isa.table import CONSTANTS
from isa.target import Target


def lower(graph: Graph, target: Target) -> Kernel:
    """Every node's ops in plain order, with the interleavings and loop candidates still to do."""
    ctx = Lowering(graph, target)
    inputs = tuple(_io(ctx, name, ctx.place(name), "input") for name in graph.inputs)
    for tensor in inputs:
        ctx.emit_elementwise("LOAD", Where("input", -1, what=tensor.name), _size(tensor), dst=tensor.place,
                             src=tensor.host)
    matrices = [n for n in graph.nodes if n.op in MATRIX_OPS]
    for node in graph.nodes:
        layer = matrices.index(node) if node in matrices else -1
        LOWER[node.op](ctx, node, Where(node.source, layer))
    outputs = tuple(_io(ctx, name, ctx.places[name], "output") for name in graph.outputs)
    for tensor in outputs:
        ctx.emit_elementwise("STORE", Where("output", -1, what=tensor.name), _size(tensor), dst=tensor.host,
                             src=tensor.place)
    return Kernel(ctx.buffers, tuple(ctx.ops), inputs, outputs, tuple(ctx.tables),
                  interleaves=tuple(ctx.interleaves), loops=tuple(ctx.loops))


def _io(ctx: Lowering, name: str, place: Ref, role: str) -> IOTensor:
    """A graph input or output in host memory; a model may output one of its inputs as it is, so
    the two roles have buffers of their own."""
    host = ctx.buffer(f"host:{role}:{name}", "host", ctx.graph.size(name))
    return IOTensor(name, ctx.graph.shapes[name], ctx.graph.scales[name], host, place)


def _size(tensor: IOTensor) -> int:
    return int(np.prod(tensor.shape, dtype=np.int64))


def lower_fc(ctx: Lowering, node: Node, where: Where) -> None:
    m = place_matrix(ctx, node, "q")
    x, y = ctx.places[node.inputs[0]], ctx.place(node.outputs[0])
    acc = ctx.buffer(f"{node.source}/acc", "acc", m.q.rows)
    for row in range(ctx.graph.size(node.inputs[0]) // m.q.cols):
        matvec(ctx, _row_bias(m, row), x + row * m.q.cols, acc, Where(where.node, where.layer, what="Wx"))
        requantize(ctx, m, Where(where.node, where.layer, what="requantise"), y + row * m.q.rows, acc, row=row)


def _row_bias(m: MatrixRefs, row: int) -> MatrixRefs:
    """A bias that differs per input row holds one vector per row: point this row's MVB at its own."""
    if m.bias is None or m.q.bias.ndim == 1:
        return m
    return dataclasses.replace(m, bias=m.bias + row * m.q.rows * CONSTANTS["acc_bytes"])


def lower_activation(ctx: Lowering, node: Node, where: Where) -> None:
    spec = node.attrs.get("table", node.op)
    ctx.activation(spec, where, ctx.graph.size(node.outputs[0]), ctx.place(node.outputs[0]), ctx.places[node.inputs[0]])


def lower_rescale(ctx: Lowering, node: Node, where: Where) -> None:
    ctx.emit_elementwise("VSCALE", Where(where.node, where.layer, what="rescale"), ctx.graph.size(node.outputs[0]),
                         dst=ctx.place(node.outputs[0]), src=ctx.places[node.inputs[0]],
                         mult=node.attrs["mult"], shift=node.attrs["shift"])


def lower_constant(ctx: Lowering, node: Node, where: Where) -> None:
    ctx.places[node.outputs[0]] = ctx.constant(f"t:{node.outputs[0]}", node.attrs["q"], where)


def lower_gather(ctx: Lowering, node: Node, where: Where) -> None:
    """A contiguous selection of one input is an alias; anything else is copied run by run."""
    index = node.attrs["index"]
    sizes = [ctx.graph.size(n) for n in node.inputs]
    first = int(index[0]) if len(index) else 0
    if len(sizes) == 1 and np.array_equal(index, np.arange(first, first + len(index))):
        ctx.places[node.outputs[0]] = ctx.places[node.inputs[0]] + first
        return
    out = ctx.place(node.outputs[0])
    bases = np.cumsum([0] + sizes)
    for start, stop in _runs(index, bases):
        source = int(np.searchsorted(bases, index[start], side="right") - 1)
        src = ctx.places[node.inputs[source]] + int(index[start] - bases[source])
        ctx.emit_elementwise("VMOV", where, stop - start, dst=out + start, src=src)


def _runs(index: np.ndarray, bases: np.ndarray) -> list[tuple[int, int]]:
    """Maximal [start, stop) stretches of the output that copy consecutive elements of one input."""
    source = np.searchsorted(bases, index, side="right")
    breaks = np.flatnonzero((np.diff(index) != 1) | (np.diff(source) != 0)) + 1
    edges = [0, *breaks.tolist(), len(index)]
    return list(itertools.pairwise(edges))


LOWER: dict[str, Callable[[Lowering, Node, Where], None]] = {
    "fc": lower_fc,
    **dict.fromkeys(RECURRENT_OPS, lower_recurrent),
    "relu": lower_activation,
    "table": lower_activation,
    "rescale": lower_rescale,
    "constant": lower_constant,
    "gather": lower_gather,
    "add_const": lower_add_const,
    "mul_const": lower_mul_const,
    **dict.fromkeys(PAIR_OPS, lower_pair),
    **dict.fromkeys(SOFTMAX_OPS, lower_softmax),
}

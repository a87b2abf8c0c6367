"""Streaming: a program that takes one frame per invocation and keeps the state on chip.

A deployed keyword spotter does not wait for a second of audio and then run the whole sequence;
it feeds each frame as it arrives. A streaming compile imports the model twice: with its
whole-sequence shapes, to calibrate on real sequences, and with the time axis of its inputs
shrunk to one frame (`frame_shapes`). `mark_streaming` then marks every recurrent layer whose
state the model does not carry itself, so that lowering keeps its h and c in buffers that persist
between invocations. The scales come from the whole-sequence calibration, so frame after frame the
program computes exactly what the whole-sequence program computes at each step (tests check it
bit for bit).

A model that carries its state explicitly, `(frame, state_in) -> (out, state_out)`, has it bound
instead (`bind_state`, pairs from frontend/state.py): the input lives in a persistent buffer the
host never sends, and at the end of each run the output is stored into it, copied where the two
scales agree and rescaled where they do not (`store_runs`, which the golden reference reads too).
A model whose recurrence is already one frame long (or that has none, like a convolution's
history buffer) needs no shrinking.

What a stream cannot do is refused here, in terms of the model: a reverse direction (it needs the
last frame first), sequence lengths (a stream has no end), an initial state no pair binds, and
layers that disagree on the number of steps (then no one input axis is time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from compiler.ir import Graph, Node
from compiler.ops import OPS, RECURRENT_OPS
from compiler.ops.conv import CONV
from isa.errors import RnnaccelError
from isa.numerics import quantize_multiplier

Rescale = tuple[int, int] | None  # VSCALE's (mult, shift), or None for a plain copy


@dataclass(frozen=True)
class StateBinding:
    """A program's state pairs, kept on chip between runs or (not `on_chip`) fed back by the host,
    and whether the host still reads the outputs of those on chip."""

    pairs: Mapping[str, str]
    state_outputs: bool = False
    on_chip: bool = True

    def mine(self, graph: Graph) -> dict[str, str]:
        """The pairs whose input and output this graph has (an island has only some)."""
        return {n: o for n, o in self.pairs.items() if n in graph.inputs and o in graph.outputs}

    def bind(self, graph: Graph) -> Graph:
        """The graph with its pairs kept on chip between runs, when they are."""
        bound = tuple(self.mine(graph).items()) if self.on_chip else ()
        return graph.replace(bound=bound, state_outputs=self.state_outputs)


def store_runs(graph: Graph, name: str, output: str) -> list[tuple[int, int, Rescale]]:
    """How a run's new state `output` goes into bound input `name`: [start, stop) runs of elements
    with one rescale each (scales may differ per slice of a packed tensor)."""
    shape = graph.shapes[name]
    ratio = (np.broadcast_to(graph.boundary_scale(output), shape) /
             np.broadcast_to(graph.boundary_scale(name), shape)).ravel()
    edges = [0, *(np.flatnonzero(np.diff(ratio)) + 1).tolist(), len(ratio)]
    return [(start, stop, None if ratio[start] == 1.0 else quantize_multiplier(float(ratio[start])))
            for start, stop in zip(edges, edges[1:])]


def per_frame(graph: Graph) -> bool:
    """A graph with bound state whose recurrent layers (if any) run one step: the model already
    takes one frame per run, and compiles as it is, each layer starting where its bound state says."""
    return bool(graph.bound) and all(n.attrs.steps == 1 for n in graph.nodes if n.op in RECURRENT_OPS)


def frame_shapes(graph: Graph) -> dict[str, tuple[int, ...]]:
    """The whole-sequence graph's input shapes with the time axis made one frame; bound state
    keeps its shape, and a model without a recurrence longer than a frame keeps all of them."""
    layers = _recurrent(graph)
    _check_no_windows(graph)
    for check in STREAMABLE:
        for node in layers:
            check(graph, node)
    steps = {n.attrs.steps for n in layers}
    if len(steps) > 1:
        raise RnnaccelError(f"--streaming: the recurrent layers run different numbers of steps ({sorted(steps)}), "
                            "so no one input axis is time")
    time = steps.pop() if steps else 1
    return {name: _one_frame(name, graph.shapes[name], time) for name in graph.host_inputs}


def check_frame_local(whole: Graph, frame: Graph) -> None:
    """Every reduction of the one-frame graph must reduce what it reduced in the whole sequence:
    a mean, pool, normalisation or softmax whose rows shrank with the time axis (LayerNorm over
    [time, features], a pool or ReduceMean over time) would see one frame where it saw them all."""
    before = {(n.source, n.op): OPS[n.op].rows(n) for n in whole.nodes}
    for node in frame.nodes:
        rows = OPS[node.op].rows(node)
        if rows is not None and before.get((node.source, node.op)) not in (None, rows):
            raise RnnaccelError(f"--streaming: node '{node.source}' ({node.op}) reduces across time steps, which one "
                                "frame per run cannot give it; compile without --streaming, or keep what it needs in a "
                                "state the model carries (--state IN=OUT)")


def mark_streaming(graph: Graph) -> Graph:
    """Mark each recurrent layer of the one-frame graph whose state no pair carries to keep it
    between invocations."""
    for node in graph.nodes:
        if node.op in RECURRENT_OPS and node.attrs.steps != 1:
            raise RnnaccelError(f"--streaming: layer '{node.source}' still runs {node.attrs.steps} steps "
                                "with one frame per input: its time axis does not come from an input's")
    return graph.replace(nodes=tuple(n.with_attrs(stream=True) if _keeps_own_state(n) else n for n in graph.nodes))


def _keeps_own_state(node: Node) -> bool:
    return node.op in RECURRENT_OPS and not any(node.inputs[1:])


def _recurrent(graph: Graph) -> list[Node]:
    layers = [n for n in graph.nodes if n.op in RECURRENT_OPS]
    if not layers and not graph.bound:
        raise RnnaccelError("--streaming needs a recurrent layer (LSTM, GRU or RNN) or a state the model carries "
                            "as an input and output (--state IN=OUT), and this model has neither")
    return layers


def _check_no_windows(graph: Graph) -> None:
    """A convolution reads windows of its input, across time too: one frame at a time it would see
    zeros where the frames before it were. A model that keeps that history in a state it carries
    (--state) takes one frame per run already and is never shrunk, so never comes here."""
    conv = next((n for n in graph.nodes if n.op == CONV), None)
    if conv is not None:
        raise RnnaccelError(f"--streaming: Conv '{conv.source}' reads windows of its input, which one frame per "
                            "run cannot give it; carry the frames it needs in a state the model takes as an input "
                            "and gives as an output (--state IN=OUT), or compile without --streaming")


def _check_forward(graph: Graph, node: Node) -> None:
    if node.attrs.directions != ("forward",):
        raise RnnaccelError(f"--streaming: layer '{node.source}' runs {'/'.join(node.attrs.directions)}; a reverse "
                            "direction needs the sequence's last frame first")


def _check_state_bound(graph: Graph, node: Node) -> None:
    unbound = [t for t in node.inputs[1:] if t and not _from_bound(graph, t)]
    if unbound:
        raise RnnaccelError(f"--streaming: layer '{node.source}' takes its initial state from '{unbound[0]}', which "
                            "no state pair carries from run to run; name the graph input and output that carry it "
                            "with --state IN=OUT")


def _check_no_end(graph: Graph, node: Node) -> None:
    a = node.attrs
    if any(length != a.steps for length in a.seq_lens):
        raise RnnaccelError(f"--streaming: layer '{node.source}' has sequence_lens {list(a.seq_lens)}; a stream has "
                            "no end to stop at")


# what every layer must allow, checked over all layers in this order: a reverse direction first,
# since no --state could make it stream, so an error that suggests one would mislead
STREAMABLE = (_check_forward, _check_state_bound, _check_no_end)


def _from_bound(graph: Graph, tensor: str) -> bool:
    """Whether `tensor` is a bound input, or layout of one only (a slice of a packed state)."""
    bound = {name for name, _ in graph.bound}
    producer = graph.producer(tensor)
    if producer is None:
        return tensor in bound
    return producer.op == "gather" and all(_from_bound(graph, t) for t in producer.inputs)


def _one_frame(name: str, shape: tuple[int, ...], time: int) -> tuple[int, ...]:
    axes = [i for i, size in enumerate(shape) if size == time]
    if time > 1 and len(axes) > 1:
        raise RnnaccelError(f"--streaming: input '{name}' {list(shape)} has several axes of {time}, the number "
                            "of steps; cannot tell which one is time")
    return tuple(1 if i in axes else size for i, size in enumerate(shape))

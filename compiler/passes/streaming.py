"""Streaming: a program that takes one frame per invocation and keeps the recurrent state on chip.

A deployed keyword spotter does not wait for a second of audio and then run the whole sequence;
it feeds each frame as it arrives. A streaming compile imports the model twice: with its
whole-sequence shapes, to calibrate on real sequences, and with the time axis of its inputs
shrunk to one frame (`frame_shapes`). `mark_streaming` then marks every recurrent layer, so that
lowering keeps its h and c in buffers that persist between invocations. The scales come from the
whole-sequence calibration, so frame after frame the program computes exactly what the
whole-sequence program computes at each step (tests check it bit for bit).

What a stream cannot do is refused here: a reverse direction (it needs the last frame first),
an initial state or sequence lengths (a stream starts from zeros and has no end), and layers
that disagree on the number of steps (then no one input axis is time).
"""

from __future__ import annotations

from compiler.ir import Graph, Node
from compiler.ops import RECURRENT_OPS
from isa.errors import RnnaccelError


def frame_shapes(graph: Graph) -> dict[str, tuple[int, ...]]:
    """The whole-sequence graph's input shapes with the time axis made one frame."""
    layers = _recurrent(graph)
    for node in layers:
        _check_streamable(graph, node)
    steps = {n.attrs.steps for n in layers}
    if len(steps) > 1:
        raise RnnaccelError(f"--streaming: the recurrent layers run different numbers of steps ({sorted(steps)}), "
                            "so no one input axis is time")
    (time,) = steps
    return {name: _one_frame(name, graph.shapes[name], time) for name in graph.inputs}


def mark_streaming(graph: Graph) -> Graph:
    """Mark each recurrent layer of the one-frame graph to keep its state between invocations."""
    for node in graph.nodes:
        if node.op in RECURRENT_OPS and node.attrs.steps != 1:
            raise RnnaccelError(f"--streaming: layer '{node.source}' still runs {node.attrs.steps} steps "
                                "with one frame per input: its time axis does not come from an input's")
    return graph.replace(nodes=tuple(n.with_attrs(stream=True) if n.op in RECURRENT_OPS else n for n in graph.nodes))


def _recurrent(graph: Graph) -> list[Node]:
    layers = [n for n in graph.nodes if n.op in RECURRENT_OPS]
    if not layers:
        raise RnnaccelError("--streaming needs a recurrent layer (LSTM, GRU or RNN) and this model has none")
    return layers


def _check_streamable(graph: Graph, node: Node) -> None:
    a, name = node.attrs, node.source
    if a.directions != ("forward",):
        raise RnnaccelError(f"--streaming: layer '{name}' runs {'/'.join(a.directions)}; a reverse direction "
                            "needs the sequence's last frame first")
    if any(node.inputs[1:]):
        raise RnnaccelError(f"--streaming: layer '{name}' takes an initial state; a stream starts from zeros "
                            "and carries its own state")
    if any(length != a.steps for length in a.seq_lens):
        raise RnnaccelError(f"--streaming: layer '{name}' has sequence_lens {list(a.seq_lens)}; a stream has "
                            "no end to stop at")


def _one_frame(name: str, shape: tuple[int, ...], time: int) -> tuple[int, ...]:
    axes = [i for i, size in enumerate(shape) if size == time]
    if time > 1 and len(axes) > 1:
        raise RnnaccelError(f"--streaming: input '{name}' {list(shape)} has several axes of {time}, the number "
                            "of steps; cannot tell which one is time")
    return tuple(1 if i in axes else size for i, size in enumerate(shape))

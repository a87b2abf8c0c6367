"""State pairs: a graph input and the graph output that carries the same state out of a run.

Real-time models run one frame per call and carry their state across calls as tensors of their
own, `(frame, state_in) -> (out, state_out)`: the host feeds `state_out` back as the next
`state_in`. A pair is named (`--state IN=OUT`) or found: an input that reaches recurrent layers'
initial states only through layout operators (directly, or as slices of one packed tensor), and
an output of the same shape that the same layers' final states reach the same way. Anything
else the model carries (a convolution's history buffer) is named.

Calibration must see the state as it is in use, built up over many frames, not the zeros or
random values a sample set would give it. `closed_loop_samples` runs the model in float stream by
stream, frame after frame, feeding each state output back, and keeps every run's inputs as one
calibration sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from compiler.frontend.onnx_run import run_typed, session, with_outputs
from compiler.frontend.registry import OPERATORS, op_key
from isa.errors import RnnaccelError

Shape = tuple[int, ...]

# Where a recurrent layer reads its initial state and writes its final one: input or output
# position -> which state.
INITIAL = {"LSTM": {5: "h", 6: "c"}, "GRU": {5: "h"}, "RNN": {5: "h"}}
FINAL = {"LSTM": {1: "h", 2: "c"}, "GRU": {1: "h"}, "RNN": {1: "h"}}
DEFAULT_STREAMS, DEFAULT_FRAMES = 16, 32


def state_pairs(model: onnx.ModelProto, given: Mapping[str, str], shapes: Mapping[str, Shape],
                find: bool) -> dict[str, str]:
    """The named pairs, checked, and with `find` those the recurrent layers show."""
    inputs, outputs = graph_inputs(model), [o.name for o in model.graph.output]
    _check_distinct(given)
    for name, output in given.items():
        _check_pair(name, output, inputs, outputs, shapes)
    pairs = dict(given)
    if find:
        taken = set(given) | set(given.values())
        found = _found_pairs(model, inputs, outputs, shapes)
        pairs |= {name: out for name, out in found.items() if name not in taken and out not in taken}
    return pairs


def describe(pairs: Mapping[str, str], where: str) -> str:
    """The compile log's line about the pairs."""
    listed = ", ".join(f"{name}={output}" for name, output in pairs.items())
    return f"state pairs {where}: {listed}"


def graph_inputs(model: onnx.ModelProto) -> list[str]:
    consts = {init.name for init in model.graph.initializer}
    return [v.name for v in model.graph.input if v.name not in consts]


def _check_pair(name: str, output: str, inputs: list[str], outputs: list[str], shapes: Mapping[str, Shape]) -> None:
    if name not in inputs:
        raise RnnaccelError(f"--state {name}={output}: '{name}' is not a graph input (inputs: {', '.join(inputs)})")
    if output not in outputs:
        raise RnnaccelError(f"--state {name}={output}: '{output}' is not a graph output "
                            f"(outputs: {', '.join(outputs)})")
    if shapes.get(name) != shapes.get(output):
        raise RnnaccelError(f"--state {name}={output}: the input has shape {_shown(shapes.get(name))} and the "
                            f"output {_shown(shapes.get(output))}; a state pair carries one shape")


def _check_distinct(given: Mapping[str, str]) -> None:
    outputs = list(given.values())
    repeated = sorted({o for o in outputs if outputs.count(o) > 1})
    if repeated:
        raise RnnaccelError(f"--state: output '{repeated[0]}' is paired with more than one input")


def _shown(shape: Shape | None) -> str:
    return "unknown" if shape is None else str(list(shape))


def _found_pairs(model: onnx.ModelProto, inputs: list[str], outputs: list[str],
                 shapes: Mapping[str, Shape]) -> dict[str, str]:
    """Input -> output for each input whose layout reaches exactly the initial states that the
    output's layout comes from, with the same shape."""
    graph = _Links.of(model)
    initial = {name: graph.reached(name) for name in inputs}
    final = {name: graph.sources(name) for name in outputs}
    pairs = {}
    for name, states in initial.items():
        match = [o for o, came in final.items() if states and came == states and shapes.get(o) == shapes.get(name)
                 and o not in pairs.values()]
        if match:
            pairs[name] = match[0]
    return pairs


@dataclass(frozen=True)
class _Links:
    """Who reads each tensor (node, input position) and who makes it, built once per model."""

    readers: dict[str, list[tuple[onnx.NodeProto, int]]]
    producers: dict[str, onnx.NodeProto]

    @classmethod
    def of(cls, model: onnx.ModelProto) -> _Links:
        readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        for node in model.graph.node:
            for position, name in enumerate(node.input):
                readers.setdefault(name, []).append((node, position))
        return cls(readers, {out: node for node in model.graph.node for out in node.output if out})

    def reached(self, tensor: str) -> frozenset | None:
        """The (layer, state) initial states `tensor` reaches through layout operators; None when
        it also reaches anything else."""
        states: set = set()
        for node, position in self.readers.get(tensor, ()):
            if position in INITIAL.get(node.op_type, {}):
                states.add((node.name or node.output[0], INITIAL[node.op_type][position]))
            elif _layout(node) and position == 0:
                further = [self.reached(out) for out in node.output if out]
                if any(f is None for f in further):
                    return None
                states.update(*further)
            else:
                return None
        return frozenset(states) or None

    def sources(self, tensor: str) -> frozenset | None:
        """The (layer, state) final states `tensor` is made of through layout operators (constants
        aside); None when it is made of anything else."""
        producer = self.producers.get(tensor)
        if producer is None:
            return None
        position = list(producer.output).index(tensor)
        if position in FINAL.get(producer.op_type, {}):
            return frozenset({(producer.name or producer.output[0], FINAL[producer.op_type][position])})
        if not _layout(producer):
            return None
        made = [self.sources(t) for t in producer.input[:1] if t] + \
               [self.sources(t) for t in producer.input[1:] if t and producer.op_type == "Concat"]
        if not made or any(m is None for m in made):
            return None
        return frozenset().union(*made)


def _layout(node: onnx.NodeProto) -> bool:
    return getattr(OPERATORS.get(op_key(node.domain, node.op_type)), "kind", "") == "layout"


def one_step(model: onnx.ModelProto, shapes: Mapping[str, Shape]) -> bool:
    """Whether every recurrent layer runs one step per run (or there is none): a model that
    carries its state explicitly is then already a per-frame model, and streams as it is."""
    def steps(node: onnx.NodeProto) -> int | None:
        layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
        shape = shapes.get(node.input[0])
        return None if shape is None else shape[layout]
    return all(steps(node) == 1 for node in model.graph.node if node.op_type in INITIAL)


def closed_loop_samples(model: onnx.ModelProto, pairs: Mapping[str, str], shapes: Mapping[str, Shape],
                        data: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """One calibration sample per run of the model over streams of frames from `data`, each run's
    state outputs fed back as the next run's state inputs.

    A frame input's array is [streams, frames, *shape]. A state input's array, if given, is each
    stream's initial state, [streams, *shape], and a frame input may then be [streams, *shape], one
    frame each (the samples of a model's ordinary calibration set, states included); without
    states a stream starts from zeros and [frames, *shape] is one stream. Without data:
    DEFAULT_STREAMS streams of DEFAULT_FRAMES N(0,1) frames."""
    frames = [n for n in graph_inputs(model) if n not in pairs]
    streams = _streams(frames, shapes, data, one_stream=not any(n in (data or {}) for n in pairs))
    count, length = _counts(streams)
    state = {name: _initial(name, shapes[name], count, data) for name in pairs}
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.input}
    run = session(with_outputs(model, list(pairs.values()), {}))
    kept: dict[str, list[np.ndarray]] = {name: [] for name in (*frames, *pairs)}
    for t in range(length):
        feeds = {**{name: streams[name][:, t] for name in frames}, **state}
        for name, value in feeds.items():
            kept[name].append(value)
        outs = [run_typed(run, {k: v[i] for k, v in feeds.items()}, types, f"calibration frame {t}")
                for i in range(count)]
        state = {name: np.stack([o[k] for o in outs]).astype(np.float64) for k, name in enumerate(pairs)}
    return {name: np.concatenate(values) for name, values in kept.items()}


def _streams(frames: list[str], shapes: Mapping[str, Shape], data: Mapping[str, np.ndarray] | None,
             one_stream: bool) -> dict[str, np.ndarray]:
    if data is None:
        rng = np.random.default_rng(0)
        return {n: rng.standard_normal((DEFAULT_STREAMS, DEFAULT_FRAMES, *shapes[n])) for n in frames}
    missing = [n for n in frames if n not in data]
    if missing:
        raise RnnaccelError(f"calibration data lacks input(s) {', '.join(missing)} (it has "
                            f"{', '.join(map(str, data)) or 'no arrays'})")
    return {n: _stream_array(n, np.asarray(data[n]), shapes[n], one_stream) for n in frames}


def _stream_array(name: str, value: np.ndarray, shape: Shape, one_stream: bool) -> np.ndarray:
    """[streams, frames, *shape]: a shorter array is one stream of frames, or with given initial
    states (not `one_stream`) streams of one frame."""
    extra = value.ndim - len(shape)
    if extra not in (0, 1, 2) or tuple(value.shape[extra:]) != tuple(shape) or value.size == 0:
        raise RnnaccelError(f"calibration data for '{name}' has shape {list(value.shape)}; with state pairs it "
                            f"is [streams, frames, {', '.join(map(str, shape))}] or [frames, ...] for one stream")
    if value.dtype.kind not in "biuf" or not np.all(np.isfinite(value)):
        raise RnnaccelError(f"calibration data for '{name}' must be finite real numbers")
    value = value if extra else value[None]
    return (value[None] if one_stream else value[:, None]) if extra < 2 else value


def _counts(streams: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """(streams, frames), the same for every frame input."""
    counts = {a.shape[:2] for a in streams.values()} or {(DEFAULT_STREAMS, 1)}
    if len(counts) > 1:
        raise RnnaccelError(f"calibration streams disagree on [streams, frames]: {sorted(map(list, counts))}")
    return counts.pop()


def _initial(name: str, shape: Shape, count: int, data: Mapping[str, np.ndarray] | None) -> np.ndarray:
    if data is None or name not in data:
        return np.zeros((count, *shape))
    value = np.asarray(data[name], dtype=np.float64)
    value = value[None] if value.shape == tuple(shape) else value
    if value.shape != (count, *shape) or not np.all(np.isfinite(value)):
        raise RnnaccelError(f"calibration data for state '{name}' has shape {list(np.shape(data[name]))}; expected "
                            f"the initial state of each of {count} streams, [{count}, {', '.join(map(str, shape))}], "
                            "finite")
    return value



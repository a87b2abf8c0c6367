"""The host's share of a partitioned program, run in float (isa/partitioned.py is the contract).

The host graph is cut at its island calls into segments, maximal runs of host nodes between two
calls. Each segment becomes a small ONNX model of its own, built once, that ONNX Runtime runs when
it is installed (else onnx's reference evaluator: no new required dependency); an island call
goes to a callback, so the chip side stays the caller's business. Tensors travel with a leading
sample axis: a segment runs once per sample, as the model was written for one, while the
callback gets the whole batch at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec

import numpy as np
import onnx
from onnx import helper

from isa.container import Program
from isa.errors import RnnaccelError
from isa.partitioned import (
    ISLAND_DOMAIN,
    ISLAND_OP,
    NO_ISLAND,
    HostPart,
    PartitionedProgram,
    check_partitioned,
)
from runtime_sim.float_ref import first_line, ort_errors

IslandCall = Callable[[int, dict[str, np.ndarray]], dict[str, np.ndarray]]
ONNXRUNTIME, REFERENCE = "onnxruntime", "reference"


@dataclass(frozen=True)
class Port:
    """A graph input or output of the host part: its name and, when known, its shape."""

    name: str
    shape: tuple[int, ...] | None


@dataclass
class Segment:
    """Host nodes run back to back, as one small ONNX model (built on first use per input types)."""

    nodes: list[onnx.NodeProto]
    inputs: list[str]
    outputs: list[str] = field(default_factory=list)
    runners: dict[tuple[int, ...], Callable] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    """The call of island `index`: its program's inputs in, its outputs out."""

    index: int
    inputs: list[str]
    outputs: list[str]


def corrupted(problem: str) -> RnnaccelError:
    return RnnaccelError(f"corrupted program: host part {problem}")


class HostGraph:
    """A checked host part, split into segments and island calls, ready to run any number of times."""

    def __init__(self, program: PartitionedProgram, force_reference: bool = False) -> None:
        self.part, self.islands, self.model = program.host, program.islands, _parse(program.host.model)
        try:
            check_partitioned(program)  # the table against the islands, as loading a container checks it
        except RnnaccelError as exc:
            raise corrupted(f"does not fit its islands: {exc}") from None
        _check_nodes(self.model.graph, self.part)
        self.runtime = REFERENCE if force_reference or find_spec("onnxruntime") is None else ONNXRUNTIME
        self.steps = _split(self.model.graph)
        self.initializers = {t.name: t for t in self.model.graph.initializer}
        _assign_outputs(self.steps, [o.name for o in self.model.graph.output])

    @property
    def ops(self) -> Counter:
        """Host operators run per inference, by type (island calls excluded)."""
        return Counter(n.op_type for s in self.steps if isinstance(s, Segment) for n in s.nodes)

    def inputs(self) -> tuple[Port, ...]:
        """The program's inputs: the host graph's, but for the state the host carries; each must
        have a fixed shape, which the simulator checks what it is given against."""
        ports = tuple(p for p in self._inputs() if p.name in self.part.inputs)
        unknown = [p.name for p in ports if p.shape is None]
        if unknown:
            raise corrupted(f"input(s) {', '.join(unknown)} have no fixed shape")
        return ports

    def state(self) -> tuple[Port, ...]:
        """The state the host carries from run to run (HostPart.state), as inputs."""
        carried = dict(self.part.state)
        return tuple(p for p in self._inputs() if p.name in carried)

    def _inputs(self) -> tuple[Port, ...]:
        return tuple(_port(v, self.islands, "inputs") for v in self.model.graph.input
                     if v.name not in self.initializers)

    def outputs(self) -> tuple[Port, ...]:
        return tuple(_port(v, self.islands, "outputs") for v in self.model.graph.output
                     if v.name in self.part.outputs)

    def run(self, inputs: dict[str, np.ndarray], call: IslandCall) -> dict[str, np.ndarray]:
        """The graph outputs for `inputs` (each with a leading sample axis, carried state included);
        islands through `call`."""
        values = dict(inputs)
        for step in self.steps:
            if isinstance(step, Call):
                got = call(step.index, {n: values[n] for n in step.inputs})
                values.update({n: got[n] for n in step.outputs})
            else:
                values.update(self._run_segment(step, {n: values[n] for n in step.inputs}))
        return {o.name: values[o.name] for o in self.model.graph.output}

    def _run_segment(self, segment: Segment, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        runner = self._runner(segment, inputs)
        count = len(next(iter(inputs.values()))) if inputs else 1
        rows = [runner({n: v[i] for n, v in inputs.items()}) for i in range(count)]
        return {n: np.stack([np.asarray(r[k]) for r in rows]) for k, n in enumerate(segment.outputs)}

    def _runner(self, segment: Segment, inputs: dict[str, np.ndarray]) -> Callable:
        key = tuple(_elem_type(v) for v in inputs.values())
        if key not in segment.runners:
            segment.runners[key] = self._build(segment, key)
        return segment.runners[key]

    def _build(self, segment: Segment, types: tuple[int, ...]) -> Callable:
        """One segment as an ONNX model: typed inputs, untyped outputs, the model's opsets."""
        used = set().union(*(_reads(n) for n in segment.nodes))
        graph = helper.make_graph(
            segment.nodes, f"host_segment_{self.steps.index(segment)}",
            [helper.make_tensor_value_info(n, t, None) for n, t in zip(segment.inputs, types)],
            [onnx.ValueInfoProto(name=n) for n in segment.outputs],
            [t for n, t in self.initializers.items() if n in used])
        opsets = [o for o in self.model.opset_import if o.domain != ISLAND_DOMAIN]
        model = helper.make_model(graph, opset_imports=opsets, ir_version=self.model.ir_version)
        return _ort_runner(model) if self.runtime == ONNXRUNTIME else _reference_runner(model)


def _parse(blob: bytes) -> onnx.ModelProto:
    try:
        return onnx.load_model_from_string(blob)
    except Exception as exc:  # noqa: BLE001  (protobuf's DecodeError and friends share no useful base)
        raise corrupted(f"does not parse as ONNX ({type(exc).__name__})") from None


def _check_nodes(graph: onnx.GraphProto, part: HostPart) -> None:
    """The ONNX nodes must be the node table's, island calls included (the table is checked
    against the islands by isa.partitioned.check_partitioned)."""
    if len(graph.node) != len(part.nodes):
        raise corrupted(f"has {len(graph.node)} nodes but its node table {len(part.nodes)}")
    for node, row in zip(graph.node, part.nodes):
        seen = (node.name, node.op_type, node.domain, tuple(node.input), tuple(node.output), _island(node))
        if seen != (row.name, row.op, row.domain, row.inputs, row.outputs, row.island):
            raise corrupted(f"node '{node.name}' ({node.op_type}) disagrees with its node table row '{row.name}'")
    inputs = [i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    outputs = [o.name for o in graph.output]
    carried, made = [name for name, _ in part.state], [output for _, output in part.state]
    names = ([n for n in inputs if n not in carried], [n for n in outputs if n in part.outputs])
    if names != (list(part.inputs), list(part.outputs)) or not set(carried) <= set(inputs) \
            or not set(made) <= set(outputs) or len(outputs) != len(set(part.outputs) | set(made)):
        raise corrupted(f"graph inputs/outputs {inputs}/{outputs} differ from the program's "
                        f"{part.inputs}/{part.outputs} and carried state {list(part.state)}")


def _island(node: onnx.NodeProto) -> int:
    """The island a call node calls (its `index`); NO_ISLAND for any other node."""
    if not _is_call(node):
        return NO_ISLAND
    return next((a.i for a in node.attribute if a.name == "index"), NO_ISLAND)


def _is_call(node: onnx.NodeProto) -> bool:
    return (node.domain, node.op_type) == (ISLAND_DOMAIN, ISLAND_OP)


def _split(graph: onnx.GraphProto) -> list[Segment | Call]:
    """Maximal runs of host nodes between island calls, in the graph's (topological) order."""
    steps: list[Segment | Call] = []
    for node in graph.node:
        if _is_call(node):
            steps.append(Call(_island(node), list(node.input), list(node.output)))
        elif steps and isinstance(steps[-1], Segment):
            steps[-1].nodes.append(node)
        else:
            steps.append(Segment([node], []))
    initializers = {t.name for t in graph.initializer}
    for step in steps:
        if isinstance(step, Segment):
            made = {o for n in step.nodes for o in n.output}
            step.inputs = sorted(set().union(*(_reads(n) for n in step.nodes)) - made - initializers)
    return steps


def _assign_outputs(steps: list[Segment | Call], graph_outputs: list[str]) -> None:
    """Each segment outputs what a later step or the graph's outputs read of what it makes."""
    needed = set(graph_outputs)
    for step in reversed(steps):
        if isinstance(step, Segment):
            step.outputs = sorted(needed & {o for n in step.nodes for o in n.output})
        needed |= set(step.inputs)


def _reads(node: onnx.NodeProto) -> set[str]:
    """Every outer tensor a node reads, including those its If/Loop/Scan bodies read from outside."""
    names = {n for n in node.input if n}
    for attr in node.attribute:
        for graph in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
            local = ({i.name for i in graph.input} | {t.name for t in graph.initializer}
                     | {o for n in graph.node for o in n.output})
            names |= set().union(*(_reads(n) for n in graph.node)) - local
    return names


def _elem_type(value: np.ndarray) -> int:
    return helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype)


def _port(value: onnx.ValueInfoProto, islands: Sequence[Program], side: str) -> Port:
    """Declared dims when all fixed, else those of the island descriptor of the same name."""
    dims = tuple(d.dim_value if d.HasField("dim_value") else 0 for d in value.type.tensor_type.shape.dim)
    if value.type.tensor_type.HasField("shape") and all(d > 0 for d in dims):
        return Port(value.name, dims)
    descs = [d for p in islands for d in getattr(p, side) if d.name == value.name]
    return Port(value.name, descs[0].shape if descs else None)


def _ort_runner(model: onnx.ModelProto) -> Callable:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except ort_errors(ort) as exc:
        raise RnnaccelError(f"host part: ONNX Runtime cannot load {model.graph.name}: {first_line(exc)}") from None

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return session.run(None, feeds)
        except ort_errors(ort) as exc:
            raise RnnaccelError(f"host part: {model.graph.name} failed: {first_line(exc)}") from None

    return run


def _reference_runner(model: onnx.ModelProto) -> Callable:
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(model)

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return evaluator.run(None, feeds)
        except (ValueError, TypeError, RuntimeError, IndexError) as exc:
            raise RnnaccelError(f"host part: {model.graph.name} failed: {first_line(exc)}") from None

    return run


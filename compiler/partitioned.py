"""Compile a model split between host and chip: each island as a chip program, the rest for the host.

The plan (frontend/partition.py) says which nodes run where. Here each island is cut out as a
model of its own (frontend/split.py) and compiled by the chip pipeline; its calibration comes
from running the whole model in float on the user's samples, which are keyed by the model's
graph inputs, and reading the tensors that enter the island (frontend/onnx_run.py). The host
graph keeps every other node and calls the islands; the report gains a `partition` object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx

from compiler.backend.report import compression_ratio
from compiler.compiled import Compiled, CompiledIsland
from compiler.frontend.onnx_import import Builder
from compiler.frontend.onnx_run import tensors_over_samples
from compiler.frontend.partition import CHIP, HOST, Partition, node_reads
from compiler.frontend.recurrent_ops import RECURRENT_OP_TYPES
from compiler.frontend.split import host_model, island_model
from isa.bounds import recurrence_total
from isa.container import Program
from isa.energy import combined
from isa.errors import RnnaccelError
from isa.partitioned import ISLAND_DOMAIN, NO_ISLAND, HostNode, HostPart, PartitionedProgram

REPORT_TOTALS = ("mac_ops", "weight_count", "fp32_bytes", "stored_bytes", "weight_bytes_read", "est_cycles",
                 "bound_cycles", "code_bytes", "instructions")


IslandCompiler = Callable[[onnx.ModelProto, dict[str, np.ndarray]], Compiled]


def compile_islands(proto: onnx.ModelProto, plan: Partition, builder: Builder, samples: Mapping[str, np.ndarray],
                    compile_island: IslandCompiler) -> list[CompiledIsland]:
    """Every island compiled, calibrated on what the float model feeds it for these samples."""
    entering = list(dict.fromkeys(t for island in plan.islands for t in island.inputs if t not in samples))
    values = {**samples, **tensors_over_samples(proto, samples, entering, plan.types)}
    done = []
    for number, island in enumerate(plan.islands):
        model = island_model(proto, island, builder.consts, plan.shapes, plan.types, number)
        done.append(CompiledIsland(island, model, compile_island(model, {t: values[t] for t in island.inputs})))
    return done


@dataclass(frozen=True)
class SplitState:
    """A streaming partitioned program's state pairs: those an island keeps on chip (its input and
    output are that island's alone) and those the host carries from run to run."""

    chip: dict[str, str] = field(default_factory=dict)
    host: dict[str, str] = field(default_factory=dict)
    state_outputs: bool = False


def split_state(plan: Partition, proto: onnx.ModelProto, pairs: Mapping[str, str], state_outputs: bool) -> SplitState:
    """A pair goes to the chip when one island makes the output and is the only reader of both."""
    readers: dict[str, set[int]] = {}
    member = {i: k for k, island in enumerate(plan.islands) for i in island.indices}
    for i, node in enumerate(proto.graph.node):
        for tensor in node_reads(node):
            readers.setdefault(tensor, set()).add(member.get(i, NO_ISLAND))
    split = SplitState(state_outputs=state_outputs)
    for name, output in pairs.items():
        owner = [k for k, island in enumerate(plan.islands) if name in island.inputs and output in island.outputs]
        alone = owner and readers.get(name, set()) == {owner[0]} and readers.get(output, set()) <= {owner[0]}
        (split.chip if alone else split.host)[name] = output
    return split


def island_streams(model: onnx.ModelProto, state: SplitState) -> bool:
    """Whether a streaming program's island keeps anything between runs: a recurrent layer of its
    own or a pair's state (an island with neither runs afresh on every frame)."""
    ins, outs = {v.name for v in model.graph.input}, {v.name for v in model.graph.output}
    return (any(node.op_type in RECURRENT_OP_TYPES for node in model.graph.node)
            or any(name in ins and output in outs for name, output in state.chip.items()))


def partitioned_program(name: str, proto: onnx.ModelProto, plan: Partition, builder: Builder,
                        islands: list[CompiledIsland], state: SplitState) -> PartitionedProgram:
    """The islands' programs and the host part that calls them; the host part carries the host's
    state pairs, and the graph inputs and outputs of the chip's pairs leave it."""
    programs: list[Program] = [i.compiled.program for i in islands]
    calls = [([d.name for d in p.inputs], [d.name for d in p.outputs]) for p in programs]
    for (_, outs), island in zip(calls, plan.islands):
        assert set(outs) <= set(island.outputs), f"island outputs {outs} are not the plan's"
    hidden = set() if state.state_outputs else set(state.chip.values())
    host = host_model(proto, plan, calls, builder.consts, set(state.chip), hidden)
    macs = {p.name: p.macs for p in plan.of(HOST)}
    nodes = tuple(HostNode(n.name, n.op_type, n.domain, tuple(n.input), tuple(n.output), macs.get(n.name, 0),
                           _island_index(n)) for n in host.graph.node)
    carried = set() if state.state_outputs else set(state.host.values())
    inputs = tuple(v.name for v in host.graph.input if v.name not in state.host)
    part = HostPart(host.SerializeToString(), nodes, inputs, tuple(v.name for v in host.graph.output
                                                                   if v.name not in carried),
                    plan.boundary_bytes, plan.chip_mac_fraction, tuple(state.host.items()), state.state_outputs)
    return PartitionedProgram(name, tuple(programs), part)


def _island_index(node: onnx.NodeProto) -> int:
    if node.domain != ISLAND_DOMAIN:
        return NO_ISLAND
    return next(a.i for a in node.attribute if a.name == "index")


def partitioned_report(name: str, plan: Partition, islands: list[CompiledIsland]) -> dict:
    """REPORT.json of a partitioned program: every island's layers (tagged with the island), the
    totals over the islands, and the `partition` object (docs/partitioning.md)."""
    reports = [i.compiled.report for i in islands]
    total = {key: sum(r["total"][key] for r in reports) for key in REPORT_TOTALS}
    total |= {"op": "model", "compression_ratio": compression_ratio(total["fp32_bytes"], total["stored_bytes"])}
    total |= recurrence_total([r["total"] for r in reports])
    total |= combined(r["total"] for r in reports)  # the chip's: the host's energy is not modelled
    state = [{**value, "island": k} for k, r in enumerate(reports) for value in r.get("state", ())]
    chosen = [{**r["compression"], "island": k} for k, r in enumerate(reports) if "compression" in r]
    return {"model": name, "target": reports[0]["target"],
            "layers": [{**layer, "island": k} for k, r in enumerate(reports) for layer in r["layers"]],
            "total": total, "partition": partition_summary(plan, reports), **({"state": state} if state else {}),
            **({"compression": {"mode": "auto", "islands": chosen}} if chosen else {})}


def partition_summary(plan: Partition, reports: list[dict]) -> dict:
    chip = sum(p.macs for p in plan.of(CHIP))
    return {
        "chip_mac_ops": chip,
        "host_mac_ops": sum(p.macs for p in plan.of(HOST)),
        "chip_mac_fraction": plan.chip_mac_fraction,
        "host_ops": plan.host_ops,
        "host_nodes": [{"name": p.name, "op": p.op_type, "why": p.why, "reasons": list(p.reasons), "macs": p.macs}
                       for p in plan.of(HOST)],
        "islands": [{"index": k, "nodes": list(island.nodes), "inputs": list(island.inputs),
                     "outputs": list(island.outputs), "mac_ops": island.macs,
                     "est_cycles": report["total"]["est_cycles"], "bound_cycles": report["total"]["bound_cycles"]}
                    for k, (island, report) in enumerate(zip(plan.islands, reports))],
        "boundary_bytes": plan.boundary_bytes,
    }


def summary_line(plan: Partition) -> str:
    """`host: Conv x12, Pad x2 - 81.0 % of MACs on the chip, in 2 islands; 4532 bytes cross per inference`."""
    ops = ", ".join(f"{op} x{count}" for op, count in plan.host_ops.items())
    count = len(plan.islands)
    return (f"host: {ops} - {100 * plan.chip_mac_fraction:.1f} % of MACs on the chip, in {count} "
            f"island{'s' * (count != 1)}; {plan.boundary_bytes} bytes cross between host and chip per inference")


# Host operators that compute each frame from that frame alone, so a streaming program can run
# the host part one frame at a time: element-wise ones, and normalisations over the last axis.
ELEMENTWISE_HOST_OPS = frozenset({
    "Abs", "Add", "BatchNormalization", "Cast", "Ceil", "Clip", "Cos", "Div", "Elu", "Erf", "Exp", "Floor", "Gelu",
    "HardSigmoid", "HardSwish", "Identity", "LeakyRelu", "Log", "Max", "Min", "Mish", "Mul", "Neg", "Pow",
    "PRelu", "Reciprocal", "Relu", "Round", "Selu", "Sigmoid", "Sign", "Sin", "Softplus", "Softsign", "Sqrt", "Sub",
    "Tanh", "ThresholdedRelu", "Where"})
LAST_AXIS_HOST_OPS = frozenset({"LayerNormalization", "LogSoftmax", "Softmax"})


def check_streaming_host(plan: Partition, proto: onnx.ModelProto) -> None:
    """--streaming runs the host part frame by frame: refuse a host node that may mix time steps,
    and an island without a recurrent layer, whose frame shapes nothing in it tells."""
    for number, island in enumerate(plan.islands):
        if not any(proto.graph.node[i].op_type in RECURRENT_OP_TYPES for i in island.indices):
            raise RnnaccelError(f"--streaming: island {number} ({', '.join(island.nodes)}) holds no recurrent layer, "
                                "so it has no time axis to stream; a streaming partitioned program needs one in "
                                "every island (compile without --streaming, or keep the head with the recurrent "
                                "layer, without a host operator between them)")
    for p in plan.of(HOST):
        node = proto.graph.node[p.index]
        axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
        rank = len(plan.shapes.get(node.input[0], ())) if node.input else 0
        if node.op_type in ELEMENTWISE_HOST_OPS or (node.op_type in LAST_AXIS_HOST_OPS and axis in (-1, rank - 1)):
            continue
        raise RnnaccelError(f"--streaming: node '{p.name}' ({p.op_type}) stays on the host and may mix time steps; "
                            "the host part of a streaming program runs one frame at a time, so it may hold only "
                            "element-wise operators and normalisations over the last axis")

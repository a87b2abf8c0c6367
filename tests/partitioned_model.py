"""A real partitioned program built by hand, for the runtime's tests.

The float model: x[8,1,6] -> LayerNormalization (host) -> GRU 6->8 + MatMul/Add head (island 0)
-> Softsign (host) -> MatMul/Add 8->4 (island 1) -> If on a constant flag whose branches read the
island's output from the outer scope (host) -> y[1,1,4]. Each island's sub-model is compiled as
its own chip program; the host graph with its call nodes is written here as the compiler will.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from compiler.pipeline import Compiled, compile_model
from isa.partitioned import ISLAND_DOMAIN, ISLAND_OP, HostNode, HostPart, PartitionedProgram

STEPS, FEATURES, HIDDEN, CLASSES = 8, 6, 8, 4
OPSETS = [helper.make_opsetid("", 17)]
RNG = np.random.default_rng(11)


@dataclass(frozen=True)
class Build:
    model: onnx.ModelProto  # the whole float model
    program: PartitionedProgram
    islands: tuple[Compiled, ...]


def _init(name: str, shape: tuple[int, ...], scale: float = 0.5) -> onnx.TensorProto:
    return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(np.float32), name)


def _value(name: str, shape: list[int] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


WEIGHTS = {t.name: t for t in [
    _init("ln_scale", (FEATURES,)), _init("ln_bias", (FEATURES,)), _init("W", (1, 3 * HIDDEN, FEATURES)),
    _init("R", (1, 3 * HIDDEN, HIDDEN)), _init("B", (1, 6 * HIDDEN)), _init("W1", (HIDDEN, HIDDEN)),
    _init("b1", (HIDDEN,)), _init("W2", (HIDDEN, CLASSES)), _init("b2", (CLASSES,))]}
FLAG = numpy_helper.from_array(np.array(True), "flag")


def _branch(name: str, op: str) -> onnx.GraphProto:
    """An If branch that reads 'y0' from the enclosing graph."""
    return helper.make_graph([helper.make_node(op, ["y0"], [f"{name}_out"])], name, [],
                             [_value(f"{name}_out", None)])


LAYERNORM = helper.make_node("LayerNormalization", ["x", "ln_scale", "ln_bias"], ["xn"], name="ln", axis=-1)
ISLAND_NODES = (
    [helper.make_node("GRU", ["xn", "W", "R", "B"], ["", "yh"], name="gru", hidden_size=HIDDEN),
     helper.make_node("MatMul", ["yh", "W1"], ["m1"], name="head"),
     helper.make_node("Add", ["m1", "b1"], ["h2"], name="head_bias")],
    [helper.make_node("MatMul", ["a", "W2"], ["m2"], name="out"),
     helper.make_node("Add", ["m2", "b2"], ["y0"], name="out_bias")],
)
ISLAND_IO = ((("xn", [STEPS, 1, FEATURES]), ("h2", [1, 1, HIDDEN])), (("a", [1, 1, HIDDEN]), ("y0", [1, 1, CLASSES])))
SOFTSIGN = helper.make_node("Softsign", ["h2"], ["a"], name="softsign")
IF = helper.make_node("If", ["flag"], ["y"], name="choose", then_branch=_branch("then", "Neg"),
                      else_branch=_branch("else", "Identity"))


def whole_model() -> onnx.ModelProto:
    nodes = [LAYERNORM, *ISLAND_NODES[0], SOFTSIGN, *ISLAND_NODES[1], IF]
    graph = helper.make_graph(nodes, "partitioned", [_value("x", [STEPS, 1, FEATURES])],
                              [_value("y", [1, 1, CLASSES])], [*WEIGHTS.values(), FLAG])
    return helper.make_model(graph, opset_imports=OPSETS)


def island_model(index: int, steps: int = STEPS) -> onnx.ModelProto:
    nodes = ISLAND_NODES[index]
    (src, src_shape), (dst, dst_shape) = ISLAND_IO[index]
    used = {i for n in nodes for i in n.input}
    src_shape = [steps, 1, FEATURES] if index == 0 else src_shape
    graph = helper.make_graph(nodes, f"island{index}", [_value(src, src_shape)], [_value(dst, dst_shape)],
                              [t for n, t in WEIGHTS.items() if n in used])
    return helper.make_model(graph, opset_imports=OPSETS)


def host_model(islands: int = 2) -> onnx.ModelProto:
    """The host graph; `islands` call nodes are written with indices 0.. (a bad index tests errors)."""
    calls = [helper.make_node(ISLAND_OP, [src], [dst], name=f"island{k}", domain=ISLAND_DOMAIN, index=k)
             for k, ((src, _), (dst, _)) in enumerate(ISLAND_IO)]
    calls[1].attribute[0].i = islands - 1
    graph = helper.make_graph([LAYERNORM, calls[0], SOFTSIGN, calls[1], IF], "host",
                              [_value("x", [STEPS, 1, FEATURES])], [_value("y", [1, 1, CLASSES])],
                              [WEIGHTS["ln_scale"], WEIGHTS["ln_bias"], FLAG])
    return helper.make_model(graph, opset_imports=[*OPSETS, helper.make_opsetid(ISLAND_DOMAIN, 1)])


def host_part(model: onnx.ModelProto, blob: bytes | None = None) -> HostPart:
    nodes = tuple(HostNode(n.name, n.op_type, n.domain, tuple(n.input), tuple(n.output),
                           island=n.attribute[0].i if n.domain == ISLAND_DOMAIN else -1) for n in model.graph.node)
    return HostPart(model.SerializeToString() if blob is None else blob, nodes, ("x",), ("y",),
                    boundary_bytes=4 * (2 * STEPS * FEATURES + 2 * HIDDEN + 2 * CLASSES), chip_mac_fraction=0.9)


def float_values(model: onnx.ModelProto, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Named tensors of the float model for every sample of x (ONNX Runtime, one run per sample)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in {"y"})
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    rows = [dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": xi}))) for xi in x]
    return {n: np.stack([r[n] for r in rows]) for n in names}


def samples(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, STEPS, 1, FEATURES)).astype(np.float32)


def build(streaming: bool = False) -> Build:
    """Compile both islands (calibrated on the float model's own intermediate tensors)."""
    model = whole_model()
    calib = float_values(model, samples(16, seed=5), ["xn", "a"])
    islands = tuple(compile_model(island_model(k), calibration={name: calib[name]}, streaming=streaming and k == 0)
                    for k, name in enumerate(("xn", "a")))
    program = PartitionedProgram("partitioned", tuple(c.program for c in islands), host_part(host_model()))
    return Build(model, program, islands)

"""TensorFlow-style LSTM cells written with onnx.helper, for the cell recognition tests: the gate
pre-activations as MatMul(Concat([x, h]), W[I+H, 4H]) + b, one Split into four, in Keras's gate
order (i, f, c, o) or TF1 LSTMCell's (i, j, f, o, with forget_bias added to f); the state as two
inputs or packed in one tensor ([B, 2H] or [2, B, H]), and near misses that are no LSTM."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUTS, HIDDEN, BATCH = 7, 8, 2
# order -> position of each gate (input, candidate, forget, output) in the Split
ORDERS = {"keras": (0, 2, 1, 3), "tf1": (0, 1, 2, 3)}
# state packing -> (shape of the packed input, how h and c come apart and go back together)
PACKINGS = {"flat": (BATCH, 2 * HIDDEN), "stacked": (2, BATCH, HIDDEN)}


def tf_lstm(order: str = "keras", packing: str | None = None, forget_bias: float = 1.0,
            near_miss: str | None = None, seed: int = 0, opset: int = 17, sliced: bool = False) -> onnx.ModelProto:
    """One LSTM step with its state as graph inputs and outputs (`sliced`: the gate blocks cut by
    Slice nodes; a near miss changes one detail:
    "hardsigmoid" in the output gate, "extra" adds a term to the cell state, "layernorm" normalises
    the gate pre-activations)."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("W", rng.standard_normal((INPUTS + HIDDEN, 4 * HIDDEN)) * 0.4), ("b", rng.standard_normal(4 * HIDDEN) * 0.2),
        ("forget_bias", np.array(forget_bias)), ("extra", np.array(0.25)),
        ("ln_scale", np.ones(4 * HIDDEN)), ("ln_bias", np.zeros(4 * HIDDEN)))]
    inits += [numpy_helper.from_array(np.array(a, np.int64), n) for n, a in (("split", [HIDDEN] * 4), ("axis0", [0]))]
    nodes, state_in, state_out = _unpack(packing, inits)
    i, g, f, o = (f"gate{k}" for k in ORDERS[order])
    nodes += [
        helper.make_node("Concat", ["x", "h"], ["xh"], axis=1),
        helper.make_node("MatMul", ["xh", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["pre"]),
        *_normalised(near_miss),
        *(_slices(inits) if sliced else [_split(opset)]),
        helper.make_node("Sigmoid", [i], ["i"]),
        helper.make_node("Tanh", [g], ["g"]),
        *_forget(order, f),
        helper.make_node("HardSigmoid" if near_miss == "hardsigmoid" else "Sigmoid", [o], ["o"]),
        helper.make_node("Mul", ["f", "c"], ["fc"]),
        helper.make_node("Mul", ["i", "g"], ["ig"]),
        *_cell_sum(near_miss),
        helper.make_node("Tanh", ["c_new"], ["tc"]),
        helper.make_node("Mul", ["o", "tc"], ["h_new"]),
    ] + _repack(packing)
    graph = helper.make_graph(nodes, "tf_lstm", [_value("x", (BATCH, INPUTS)), *state_in], state_out, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _split(opset: int) -> onnx.NodeProto:
    """Split's sizes: an attribute before opset 13, an input from it."""
    outputs = ["gate0", "gate1", "gate2", "gate3"]
    if opset < 13:
        return helper.make_node("Split", ["gates"], outputs, axis=1, split=[HIDDEN] * 4)
    return helper.make_node("Split", ["gates", "split"], outputs, axis=1)


def _slices(inits: list) -> list[onnx.NodeProto]:
    """The four gate blocks as Slice nodes on the last axis instead of one Split."""
    inits += [numpy_helper.from_array(np.array([v], np.int64), f"at{v}") for v in range(0, 5 * HIDDEN, HIDDEN)]
    inits.append(numpy_helper.from_array(np.array([-1], np.int64), "last"))
    return [helper.make_node("Slice", ["gates", f"at{k * HIDDEN}", f"at{(k + 1) * HIDDEN}", "last"], [f"gate{k}"])
            for k in range(4)]


def _normalised(near_miss: str | None) -> list[onnx.NodeProto]:
    if near_miss == "layernorm":
        return [helper.make_node("LayerNormalization", ["pre", "ln_scale", "ln_bias"], ["gates"], axis=-1)]
    return [helper.make_node("Identity", ["pre"], ["gates"])]


def _forget(order: str, f: str) -> list[onnx.NodeProto]:
    if order == "tf1":
        return [helper.make_node("Add", [f, "forget_bias"], ["f_biased"]),
                helper.make_node("Sigmoid", ["f_biased"], ["f"])]
    return [helper.make_node("Sigmoid", [f], ["f"])]


def _cell_sum(near_miss: str | None) -> list[onnx.NodeProto]:
    if near_miss == "extra":
        return [helper.make_node("Add", ["fc", "ig"], ["c_sum"]),
                helper.make_node("Mul", ["c", "extra"], ["c_extra"]),
                helper.make_node("Add", ["c_sum", "c_extra"], ["c_new"])]
    return [helper.make_node("Add", ["fc", "ig"], ["c_new"])]


def _value(name: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _unpack(packing: str | None, inits: list) -> tuple[list, list, list]:
    """Nodes taking h and c out of the state input, and the state's graph inputs and outputs."""
    if packing is None:
        return [], [_value("h", (BATCH, HIDDEN)), _value("c", (BATCH, HIDDEN))], \
            [_value("h_new", (BATCH, HIDDEN)), _value("c_new", (BATCH, HIDDEN))]
    axis = 1 if packing == "flat" else 0
    bounds = [(0, HIDDEN), (HIDDEN, 2 * HIDDEN)] if axis else [(0, 1), (1, 2)]
    nodes = []
    for name, (lo, hi) in zip(("h", "c"), bounds):
        inits += [numpy_helper.from_array(np.array([v], np.int64), f"{name}_{k}") for k, v in (("lo", lo), ("hi", hi))]
        inits.append(numpy_helper.from_array(np.array([axis], np.int64), f"{name}_axis"))
        sliced = name if axis else f"{name}_sliced"
        nodes.append(helper.make_node("Slice", ["state", f"{name}_lo", f"{name}_hi", f"{name}_axis"], [sliced]))
        if not axis:
            nodes.append(helper.make_node("Squeeze", [sliced, "axis0"], [name]))
    return nodes, [_value("state", PACKINGS[packing])], [_value("state_new", PACKINGS[packing])]


def _repack(packing: str | None) -> list[onnx.NodeProto]:
    if packing == "flat":
        return [helper.make_node("Concat", ["h_new", "c_new"], ["state_new"], axis=1)]
    if packing == "stacked":
        return [helper.make_node("Unsqueeze", ["h_new", "axis0"], ["h_up"]),
                helper.make_node("Unsqueeze", ["c_new", "axis0"], ["c_up"]),
                helper.make_node("Concat", ["h_up", "c_up"], ["state_new"], axis=0)]
    return []

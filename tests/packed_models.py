"""Models whose recurrent state crosses the host boundary packed in one tensor, as exported
models often carry it: ONNX-style [1, layers, hidden, (h, c)], or TF-style [batch, h | c]."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
INPUTS, HIDDEN, OUTPUTS = 6, 8, 3


def _info(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _model(nodes, inputs, outputs, inits: dict, name: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _lstm_inits(seed: int, forget_bias: float) -> dict[str, np.ndarray]:
    """Weights whose strong forget gate (ONNX gate order i, o, f, c) lets c grow to about +-5,
    while h stays within +-1: the two differ in range as much as a real cell's do."""
    rng = np.random.default_rng(seed)
    bias = rng.standard_normal((1, 8 * HIDDEN)) * 0.1
    bias[0, 2 * HIDDEN:3 * HIDDEN] += forget_bias
    return {"W": (rng.standard_normal((1, 4 * HIDDEN, INPUTS)) * 1.5 / np.sqrt(INPUTS)).astype(np.float32),
            "R": (rng.standard_normal((1, 4 * HIDDEN, HIDDEN)) * 0.5 / np.sqrt(HIDDEN)).astype(np.float32),
            "B": bias.astype(np.float32),
            "Wo": (rng.standard_normal((HIDDEN, OUTPUTS)) / np.sqrt(HIDDEN)).astype(np.float32),
            "hshape": np.array([1, 1, HIDDEN], np.int64), "yshape": np.array([1, HIDDEN], np.int64)}


def _cell_and_head(host_op: bool) -> list[onnx.NodeProto]:
    """LSTM from h0, c0 to Y_h, Y_c, and y = Y_h @ Wo (through Softsign on the host if asked)."""
    head = "y_pre" if host_op else "y"
    nodes = [helper.make_node("LSTM", ["X", "W", "R", "B", "", "h0", "c0"], ["", "Y_h", "Y_c"],
                              hidden_size=HIDDEN, name="lstm"),
             helper.make_node("Reshape", ["Y_h", "yshape"], ["h_flat"], name="h_flat"),
             helper.make_node("MatMul", ["h_flat", "Wo"], [head], name="head")]
    return nodes + ([helper.make_node("Softsign", ["y_pre"], ["y"], name="softsign")] if host_op else [])


def packed_lstm(seed: int = 0, forget_bias: float = 3.0, host_op: bool = False) -> onnx.ModelProto:
    """X [1, 1, INPUTS] and state [1, 1, HIDDEN, 2] (h, c) -> y [1, OUTPUTS] and state_out like state."""
    inits = {**_lstm_inits(seed, forget_bias), "zero": np.array(0, np.int64), "one": np.array(1, np.int64),
             "ax3": np.array([3], np.int64)}
    nodes = [
        helper.make_node("Gather", ["state", "zero"], ["h_s"], axis=3, name="take_h"),
        helper.make_node("Gather", ["state", "one"], ["c_s"], axis=3, name="take_c"),
        helper.make_node("Reshape", ["h_s", "hshape"], ["h0"], name="h0"),
        helper.make_node("Reshape", ["c_s", "hshape"], ["c0"], name="c0"),
        *_cell_and_head(host_op),
        helper.make_node("Unsqueeze", ["Y_h", "ax3"], ["h_u"], name="h_u"),
        helper.make_node("Unsqueeze", ["Y_c", "ax3"], ["c_u"], name="c_u"),
        helper.make_node("Concat", ["h_u", "c_u"], ["state_out"], axis=3, name="pack"),
    ]
    return _model(nodes, [_info("X", (1, 1, INPUTS)), _info("state", (1, 1, HIDDEN, 2))],
                  [_info("y", (1, OUTPUTS)), _info("state_out", (1, 1, HIDDEN, 2))], inits, "packed_lstm")


def split_lstm(seed: int = 0, forget_bias: float = 3.0) -> onnx.ModelProto:
    """TF-style: state [1, 2 * HIDDEN] is h then c, sliced apart and Concat back (the chip has no
    Split operator yet)."""
    bounds = {"at0": [0], "at1": [HIDDEN], "at2": [2 * HIDDEN], "axis1": [1]}
    inits = {**_lstm_inits(seed, forget_bias), **{k: np.array(v, np.int64) for k, v in bounds.items()}}
    nodes = [
        helper.make_node("Slice", ["state", "at0", "at1", "axis1"], ["h_s"], name="take_h"),
        helper.make_node("Slice", ["state", "at1", "at2", "axis1"], ["c_s"], name="take_c"),
        helper.make_node("Reshape", ["h_s", "hshape"], ["h0"], name="h0"),
        helper.make_node("Reshape", ["c_s", "hshape"], ["c0"], name="c0"),
        *_cell_and_head(False),
        helper.make_node("Reshape", ["Y_c", "yshape"], ["c_flat"], name="c_flat"),
        helper.make_node("Concat", ["h_flat", "c_flat"], ["state_out"], axis=1, name="pack"),
    ]
    return _model(nodes, [_info("X", (1, 1, INPUTS)), _info("state", (1, 2 * HIDDEN))],
                  [_info("y", (1, OUTPUTS)), _info("state_out", (1, 2 * HIDDEN))], inits, "split_lstm")

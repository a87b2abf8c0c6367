"""Small ONNX models built with onnx.helper, for simulator-backed tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _model(nodes, inputs, outputs, inits, name="test") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _info(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape) if shape is not None else None)


def lstm_model(steps: int, batch: int, inputs: int, hidden: int, layout: int = 0, seed: int = 0,
               initial: str = "none", outputs=("Y", "Y_h", "Y_c"), scale: float = 0.5) -> onnx.ModelProto:
    """One forward LSTM. initial: 'none', 'inputs' (h0/c0 graph inputs) or 'const' (initialisers)."""
    rng = np.random.default_rng(seed)
    inits = {
        "W": (rng.standard_normal((1, 4 * hidden, inputs)) * scale / np.sqrt(inputs)).astype(np.float32),
        "R": (rng.standard_normal((1, 4 * hidden, hidden)) * scale / np.sqrt(hidden)).astype(np.float32),
        "B": (rng.standard_normal((1, 8 * hidden)) * 0.1).astype(np.float32),
    }
    x_shape = (steps, batch, inputs) if layout == 0 else (batch, steps, inputs)
    state = (1, batch, hidden) if layout == 0 else (batch, 1, hidden)
    graph_inputs = [_info("X", x_shape)]
    names = ["X", "W", "R", "B", ""]
    if initial == "inputs":
        graph_inputs += [_info("h0", state), _info("c0", state)]
        names += ["h0", "c0"]
    elif initial == "const":
        inits["h0"] = (rng.uniform(-0.5, 0.5, state)).astype(np.float32)
        inits["c0"] = (rng.uniform(-1, 1, state)).astype(np.float32)
        names += ["h0", "c0"]
    y_shape = (steps, 1, batch, hidden) if layout == 0 else (batch, steps, 1, hidden)
    shapes = {"Y": y_shape, "Y_h": state, "Y_c": state}
    all_outs = ["Y", "Y_h", "Y_c"]
    node = helper.make_node("LSTM", names, [o if o in outputs else "" for o in all_outs], hidden_size=hidden,
                            layout=layout, name="lstm")
    return _model([node], graph_inputs, [_info(o, shapes[o]) for o in outputs], inits)


def fc_model(rows: int, inputs: int, outputs: int, seed: int = 0, activation: str | None = None,
             gemm: bool = True) -> onnx.ModelProto:
    """Gemm (or MatMul + Add) with an optional activation: [rows, inputs] -> [rows, outputs]."""
    rng = np.random.default_rng(seed)
    inits = {"Wt": (rng.standard_normal((outputs, inputs)) / np.sqrt(inputs)).astype(np.float32),
             "b": (rng.standard_normal(outputs) * 0.1).astype(np.float32)}
    if gemm:
        nodes = [helper.make_node("Gemm", ["x", "Wt", "b"], ["y0"], transB=1, name="fc")]
    else:
        inits["Wm"] = np.ascontiguousarray(inits.pop("Wt").T)
        nodes = [helper.make_node("MatMul", ["x", "Wm"], ["m"], name="matmul"),
                 helper.make_node("Add", ["m", "b"], ["y0"], name="bias")]
    last = "y0"
    if activation:
        nodes.append(helper.make_node(activation, ["y0"], ["y1"], name="act"))
        last = "y1"
    nodes.append(helper.make_node("Identity", [last], ["y"], name="out"))
    return _model(nodes, [_info("x", (rows, inputs))], [_info("y", (rows, outputs))], inits)


GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def recurrent_model(op: str, steps: int, batch: int, inputs: int, hidden: int, *, direction: str = "forward",
                    layout: int = 0, seq_lens=None, initial: bool = False, peepholes: bool = False,
                    outputs=None, seed: int = 0, **attrs) -> onnx.ModelProto:
    """One LSTM, GRU or RNN node with every option: extra attrs (clip, activations, ...) pass through."""
    rng = np.random.default_rng(seed)
    dirs, gates = 2 if direction == "bidirectional" else 1, GATES[op]
    inits = {"W": (rng.standard_normal((dirs, gates * hidden, inputs)) * 0.5 / np.sqrt(inputs)).astype(np.float32),
             "R": (rng.standard_normal((dirs, gates * hidden, hidden)) * 0.5 / np.sqrt(hidden)).astype(np.float32),
             "B": (rng.standard_normal((dirs, 2 * gates * hidden)) * 0.1).astype(np.float32)}
    x_shape = (steps, batch, inputs) if layout == 0 else (batch, steps, inputs)
    state = (dirs, batch, hidden) if layout == 0 else (batch, dirs, hidden)
    names, graph_inputs = ["X", "W", "R", "B", ""], [_info("X", x_shape)]
    if seq_lens is not None:
        inits["lens"] = np.array(seq_lens, dtype=np.int32)
        names[4] = "lens"
    state_names = ["h0", "c0"] if op == "LSTM" else ["h0"]
    if initial:
        graph_inputs += [_info(n, state) for n in state_names]
    names += state_names if initial else [""] * len(state_names)
    if peepholes:
        inits["P"] = (rng.standard_normal((dirs, 3 * hidden)) * 0.5).astype(np.float32)
        names.append("P")
    y_shape = (steps, dirs, batch, hidden) if layout == 0 else (batch, steps, dirs, hidden)
    all_outs = ["Y", "Y_h", "Y_c"][: 3 if op == "LSTM" else 2]
    outputs = outputs or all_outs
    shapes = {"Y": y_shape, "Y_h": state, "Y_c": state}
    while names and names[-1] == "":
        names.pop()
    node = helper.make_node(op, names, [o if o in outputs else "" for o in all_outs], hidden_size=hidden,
                            direction=direction, layout=layout, name=op.lower(), **attrs)
    return _model([node], graph_inputs, [_info(o, shapes[o]) for o in outputs], inits)


def conv_model(x_shape: tuple[int, ...], out_channels: int, kernel: tuple[int, ...], group: int = 1,
               bias: bool = True, channels_last: bool = False, op: str = "Conv", **attrs) -> onnx.ModelProto:
    """One Conv (or ConvTranspose: W [C, M/group, k...]) reading x [N, C, spatial...] with random
    weights; output shape left to inference. `channels_last`: x is given as [N, spatial..., C] and y
    returned so, each through a Transpose (as a front end before a recurrent layer reads it), which
    fuse with the Conv's own layout."""
    rng = np.random.default_rng(1)
    fan_in = x_shape[1] // group * int(np.prod(kernel))
    channels = (out_channels, x_shape[1] // group) if op == "Conv" else (x_shape[1], out_channels // group)
    weight = rng.standard_normal((*channels, *kernel)) / np.sqrt(fan_in)
    inits = {"W": weight.astype(np.float32)}
    if bias:
        inits["B"] = rng.standard_normal(out_channels).astype(np.float32)
    rank = len(x_shape)
    x, y = ("x_cf", "y_cf") if channels_last else ("x", "y")
    nodes = [helper.make_node(op, [x, *inits], [y], name="conv", group=group, **attrs)]
    shape = x_shape
    if channels_last:
        shape = (x_shape[0], *x_shape[2:], x_shape[1])
        nodes = [helper.make_node("Transpose", ["x"], ["x_cf"], perm=[0, rank - 1, *range(1, rank - 1)]), *nodes,
                 helper.make_node("Transpose", ["y_cf"], ["y"], perm=[0, *range(2, rank), 1])]
    graph = helper.make_graph(nodes, "conv", [_info("x", shape)], [_info("y", None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]))
    onnx.checker.check_model(model)
    return model

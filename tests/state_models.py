"""A per-frame model that carries two kinds of state, as streaming voice-activity detectors ship:
a history buffer (the last K-1 frames, `cache`) and an LSTM's h and c packed in one tensor (`state`
[2, 1, hidden]). With `host_window` the window is reduced by an operator that stays on the host
(ReduceLogSumExp over the K frames), so the cache is host state while the LSTM's state can stay on
chip; without it, by a Conv, which runs on the chip and keeps its cache there too."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES, KERNEL, HIDDEN = 5, 3, 8
CHANNELS = FEATURES  # the Conv's output channels: as many as the reduction leaves


def _info(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    def normal(*shape: int, scale: float = 0.4) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)
    return {"Wc": normal(CHANNELS, FEATURES, KERNEL), "W": normal(1, 4 * HIDDEN, CHANNELS),
            "R": normal(1, 4 * HIDDEN, HIDDEN), "B": normal(1, 8 * HIDDEN, scale=0.2), "Wo": normal(HIDDEN, 1),
            "i0": np.array([0], np.int64), "i1": np.array([1], np.int64), "i2": np.array([2], np.int64),
            "ax0": np.array([0], np.int64), "ax2": np.array([2], np.int64), "end": np.array([KERNEL], np.int64),
            "flat": np.array([1, CHANNELS], np.int64), "seq": np.array([1, 1, CHANNELS], np.int64),
            "hflat": np.array([1, HIDDEN], np.int64)}


def vad_model(seed: int = 0, second_input: bool = False, host_window: bool = True) -> onnx.ModelProto:
    """(x [1, F, 1], cache [1, F, K-1], state [2, 1, H]) -> (p [1, 1], cache_out, state_out); with
    `second_input` an extra frame input x2 is added to x (to test streams that disagree)."""
    x = "x_sum" if second_input else "x"
    window = (helper.make_node("ReduceLogSumExp", ["window"], ["conv"], axes=[2], name="conv") if host_window
              else helper.make_node("Conv", ["window", "Wc"], ["conv"], name="conv"))
    nodes = [
        *([helper.make_node("Add", ["x", "x2"], ["x_sum"], name="sum")] if second_input else []),
        helper.make_node("Concat", ["cache", x], ["window"], axis=2, name="window"),
        helper.make_node("Slice", ["window", "i1", "end", "ax2"], ["cache_out"], name="history"),
        window,
        helper.make_node("Reshape", ["conv", "flat"], ["features"], name="features"),
        helper.make_node("Sin", ["features"], ["normed"], name="norm"),  # an operator that stays on the host
        helper.make_node("Reshape", ["normed", "seq"], ["X"], name="X"),
        helper.make_node("Slice", ["state", "i0", "i1", "ax0"], ["h0"], name="h0"),
        helper.make_node("Slice", ["state", "i1", "i2", "ax0"], ["c0"], name="c0"),
        helper.make_node("LSTM", ["X", "W", "R", "B", "", "h0", "c0"], ["", "h1", "c1"], hidden_size=HIDDEN,
                         name="lstm"),
        helper.make_node("Concat", ["h1", "c1"], ["state_out"], axis=0, name="pack"),
        helper.make_node("Reshape", ["h1", "hflat"], ["h_flat"], name="h_flat"),
        helper.make_node("MatMul", ["h_flat", "Wo"], ["logit"], name="head"),
        helper.make_node("Sigmoid", ["logit"], ["p"], name="p"),
    ]
    frame = [_info("x", (1, FEATURES, 1))] + ([_info("x2", (1, FEATURES, 1))] if second_input else [])
    graph = helper.make_graph(
        nodes, "vad", [*frame, _info("cache", (1, FEATURES, KERNEL - 1)), _info("state", (2, 1, HIDDEN))],
        [_info("p", (1, 1)), _info("cache_out", (1, FEATURES, KERNEL - 1)), _info("state_out", (2, 1, HIDDEN))],
        [numpy_helper.from_array(v, k) for k, v in _weights(seed).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model

"""The benchmark models, built with onnx.helper: keyword-spotting-sized recurrent networks.

Utilisation and cycles do not depend on the weights' values, so seeded random weights serve;
the accuracy benchmarks use the trained models in examples/kws instead.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STEPS, INPUTS, CLASSES = 49, 10, 12
GATES = {"LSTM": 4, "GRU": 3}


def recurrent_classifier(cell: str, hidden: int, layers: int = 1, bidirectional: bool = False,
                         steps: int = STEPS, seed: int = 0) -> onnx.ModelProto:
    """[1, steps, 10] batch-first -> stacked recurrent layers -> last step -> Linear(12)."""
    rng = np.random.default_rng(seed)
    dirs, gates = (2 if bidirectional else 1), GATES[cell]
    nodes, inits = [helper.make_node("Transpose", ["mfcc"], ["x0"], perm=[1, 0, 2])], {}
    width = INPUTS
    for layer in range(layers):
        inits[f"W{layer}"] = rng.standard_normal((dirs, gates * hidden, width)) * 0.3 / np.sqrt(width)
        inits[f"R{layer}"] = rng.standard_normal((dirs, gates * hidden, hidden)) * 0.3 / np.sqrt(hidden)
        inits[f"B{layer}"] = rng.standard_normal((dirs, 2 * gates * hidden)) * 0.1
        extra = {"linear_before_reset": 1} if cell == "GRU" else {}
        nodes.append(helper.make_node(cell, [f"x{layer}", f"W{layer}", f"R{layer}", f"B{layer}"], [f"y{layer}"],
                                      hidden_size=hidden, direction="bidirectional" if bidirectional else "forward",
                                      name=f"{cell.lower()}{layer}", **extra))
        nodes.append(helper.make_node("Transpose", [f"y{layer}"], [f"t{layer}"], perm=[0, 2, 1, 3]))
        inits[f"shape{layer}"] = np.array([steps, 1, dirs * hidden], np.int64)
        nodes.append(helper.make_node("Reshape", [f"t{layer}", f"shape{layer}"], [f"x{layer + 1}"]))
        width = dirs * hidden
    inits["last"] = np.array(steps - 1, np.int64)
    inits["Wh"] = rng.standard_normal((CLASSES, width)) / np.sqrt(width)
    inits["bh"] = rng.standard_normal(CLASSES) * 0.1
    nodes += [helper.make_node("Gather", [f"x{layers}", "last"], ["h"], axis=0),
              helper.make_node("Gemm", ["h", "Wh", "bh"], ["logits"], transB=1, name="head")]
    graph = helper.make_graph(nodes, f"{cell.lower()}{hidden}x{layers}",
                              [helper.make_tensor_value_info("mfcc", TensorProto.FLOAT, [1, steps, INPUTS])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CLASSES])],
                              [numpy_helper.from_array(np.asarray(v, np.float32 if v.dtype.kind == "f" else v.dtype), k)
                               for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


MODELS = {
    "KWS LSTM 64": lambda: recurrent_classifier("LSTM", 64),
    "KWS GRU 64": lambda: recurrent_classifier("GRU", 64),
    "2-layer LSTM 128": lambda: recurrent_classifier("LSTM", 128, layers=2),
    "bidirectional GRU 64": lambda: recurrent_classifier("GRU", 64, bidirectional=True),
}

"""A float interpreter for the graph IR, used for calibration and as the compiler's own
float view of a model. Every tensor carries a leading sample axis so that a whole calibration
set runs at once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler.interpret import gather, interpret, recurrent_outputs, state_in, time_major
from compiler.ir import Graph, Node


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _fc(node: Node, x: np.ndarray) -> np.ndarray:
    y = x @ node.attrs["weight"].T.astype(np.float64)
    return y if node.attrs["bias"] is None else y + node.attrs["bias"]


def _lstm(node: Node, x: np.ndarray, h0: np.ndarray | None, c0: np.ndarray | None) -> list[np.ndarray]:
    a = node.attrs
    hidden, layout = a["hidden"], a["layout"]
    seq = time_major(x, layout)
    zeros = np.zeros((seq.shape[0], seq.shape[2], hidden))
    h, c = (zeros if s is None else s for s in (state_in(h0, layout), state_in(c0, layout)))
    bias = a["B"][: 4 * hidden] + a["B"][4 * hidden:]
    ys = []
    for t in range(seq.shape[1]):
        gates = seq[:, t] @ a["W"].T + h @ a["R"].T + bias
        i, o, f, g = np.split(gates, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        ys.append(h)
    return recurrent_outputs(ys, h, c, layout)


FLOAT_OPS: dict[str, Callable] = {
    "fc": _fc,
    "lstm": _lstm,
    "relu": lambda node, x: np.maximum(x, 0.0),
    "sigmoid": lambda node, x: sigmoid(x),
    "tanh": lambda node, x: np.tanh(x),
    "gather": gather,
    "rescale": lambda node, x: x,
}


def run_float(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor's float value; `inputs` carry a leading sample axis."""
    values = {name: np.asarray(inputs[name], dtype=np.float64) for name in graph.inputs}
    return interpret(graph, values, FLOAT_OPS, lambda node: node.attrs["value"])

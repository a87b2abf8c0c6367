"""A float interpreter for the graph IR, used for calibration and as the compiler's own
float view of a model. Every tensor carries a leading sample axis so that a whole calibration
set runs at once.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from compiler.ir import Graph, Node


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _fc(node: Node, x: np.ndarray) -> np.ndarray:
    y = x @ node.attrs["weight"].T.astype(np.float64)
    return y if node.attrs["bias"] is None else y + node.attrs["bias"]


def _lstm(node: Node, x: np.ndarray, h0: np.ndarray | None, c0: np.ndarray | None) -> list[np.ndarray]:
    a = node.attrs
    hidden, layout = a["hidden"], a["layout"]
    seq = x if layout == 0 else np.swapaxes(x, 1, 2)  # (S, T, N, I)
    samples, _, batch, _ = seq.shape
    h = _state(h0, layout, samples, batch, hidden)
    c = _state(c0, layout, samples, batch, hidden)
    bias = a["B"][: 4 * hidden] + a["B"][4 * hidden:]
    ys = []
    for t in range(seq.shape[1]):
        gates = seq[:, t] @ a["W"].T + h @ a["R"].T + bias
        i, o, f, g = np.split(gates, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        ys.append(h)
    y = np.stack(ys, axis=1)[:, :, None]  # (S, T, 1, N, H)
    if layout == 1:
        y = np.moveaxis(y, 3, 1)  # (S, N, T, 1, H)
    return [y, _state_out(h, layout), _state_out(c, layout)]


def _state(value: np.ndarray | None, layout: int, samples: int, batch: int, hidden: int) -> np.ndarray:
    if value is None:
        return np.zeros((samples, batch, hidden))
    return value[:, 0] if layout == 0 else value[:, :, 0]


def _state_out(value: np.ndarray, layout: int) -> np.ndarray:
    return value[:, None] if layout == 0 else value[:, :, None]


def _gather(node: Node, *xs: np.ndarray) -> np.ndarray:
    flat = np.concatenate([x.reshape(x.shape[0], -1) for x in xs], axis=1)
    return flat[:, node.attrs["index"]]


FLOAT_OPS: dict[str, Callable] = {
    "fc": _fc,
    "lstm": _lstm,
    "relu": lambda node, x: np.maximum(x, 0.0),
    "sigmoid": lambda node, x: sigmoid(x),
    "tanh": lambda node, x: np.tanh(x),
    "gather": _gather,
    "rescale": lambda node, x: x,
}


def run_float(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor's float value; `inputs` carry a leading sample axis."""
    samples = next(iter(inputs.values())).shape[0] if inputs else 1
    values = {name: np.asarray(inputs[name], dtype=np.float64) for name in graph.inputs}
    for node in graph.nodes:
        if node.op == "constant":
            results = [np.broadcast_to(node.attrs["value"], (samples, *node.attrs["value"].shape))]
        else:
            args = [values[n] if n else None for n in node.inputs]
            results = FLOAT_OPS[node.op](node, *args)
            results = results if isinstance(results, list) else [results]
        for name, value in zip(node.outputs, results):
            if name:
                values[name] = value.reshape((samples, *graph.shapes[name]))
    return values

"""A float interpreter for the graph IR, used for calibration and as the compiler's own
float view of a model. Every tensor carries a leading sample axis so that a whole calibration
set runs at once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler.frontend.activation_ops import float_activation
from compiler.frontend.softmax_ops import float_softmax
from compiler.interpret import gather, interpret, scan
from compiler.ir import RECURRENT_OPS, Graph, Node


def _fc(node: Node, x: np.ndarray) -> np.ndarray:
    y = x @ node.attrs["weight"].T.astype(np.float64)
    return y if node.attrs["bias"] is None else y + node.attrs["bias"]


def _recurrent(node: Node, x: np.ndarray, h0: np.ndarray | None = None, c0: np.ndarray | None = None) -> list:
    cell = CELLS[node.op]
    return scan(node, x, h0, c0, lambda d, x_t, h, c: cell(node.attrs, d, x_t, h, c), np.float64)


def _clip(a: dict) -> Callable[[np.ndarray], np.ndarray]:
    clip = a["clip"]
    return (lambda v: v) if clip is None else (lambda v: np.clip(v, -clip, clip))


def _acts(a: dict, d: int) -> list[Callable[[np.ndarray], np.ndarray]]:
    return [lambda v, spec=spec: float_activation(spec, v) for spec in a["activations"][d]]


def _lstm_cell(a: dict, d: int, x, h, c):
    f_act, g_act, h_act = _acts(a, d)
    clip, gates = _clip(a), a["W"].shape[1]
    pre = x @ a["W"][d].T + h @ a["R"][d].T + a["B"][d][:gates] + a["B"][d][gates:]
    i, o, f, g = np.split(pre, 4, axis=-1)
    p_i, p_o, p_f = np.split(a["P"][d], 3) if a["P"] is not None else (0.0, 0.0, 0.0)
    i = f_act(clip(i + p_i * c))
    f = 1.0 - i if a["input_forget"] else f_act(clip(f + p_f * c))
    c = f * c + i * g_act(clip(g))
    o = f_act(clip(o + p_o * c))
    return o * h_act(c), c


def _gru_cell(a: dict, d: int, x, h, c):
    f_act, g_act = _acts(a, d)
    clip, hidden = _clip(a), a["hidden"]
    w, r, wb, rb = a["W"][d], a["R"][d], a["B"][d][: 3 * hidden], a["B"][d][3 * hidden:]
    gx = x @ w.T + wb
    z, reset = np.split(f_act(clip(gx[:, : 2 * hidden] + h @ r[: 2 * hidden].T + rb[: 2 * hidden])), 2, axis=-1)
    if a["linear_before_reset"]:
        pre = gx[:, 2 * hidden:] + reset * (h @ r[2 * hidden:].T + rb[2 * hidden:])
    else:
        pre = gx[:, 2 * hidden:] + (reset * h) @ r[2 * hidden:].T + rb[2 * hidden:]
    candidate = g_act(clip(pre))
    return (1.0 - z) * candidate + z * h, c


def _rnn_cell(a: dict, d: int, x, h, c):
    (f_act,) = _acts(a, d)
    gates = a["W"].shape[1]
    return f_act(_clip(a)(x @ a["W"][d].T + h @ a["R"][d].T + a["B"][d][:gates] + a["B"][d][gates:])), c


CELLS = {"lstm": _lstm_cell, "gru": _gru_cell, "rnn": _rnn_cell}


FLOAT_OPS: dict[str, Callable] = {
    "fc": _fc,
    **dict.fromkeys(RECURRENT_OPS, _recurrent),
    "relu": lambda node, x: np.maximum(x, 0.0),
    "table": lambda node, x: float_activation(node.attrs["table"], x),
    "gather": gather,
    "rescale": lambda node, x: x,
    "add_const": lambda node, x: (-x if node.attrs["negate"] else x) + node.attrs["value"],
    "mul_const": lambda node, x: x * node.attrs["value"],
    "add": lambda node, x, y: x + y,
    "sub": lambda node, x, y: x - y,
    "mul": lambda node, x, y: x * y,
    "softmax": lambda node, x: float_softmax(x, node.attrs["row"]),
    "logsoftmax": lambda node, x: float_softmax(x, node.attrs["row"], log=True),
}


def run_float(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor's float value; `inputs` carry a leading sample axis."""
    values = {name: np.asarray(inputs[name], dtype=np.float64) for name in graph.inputs}
    return interpret(graph, values, FLOAT_OPS, lambda node: node.attrs["value"])

"""The recurrent cells in float64, as ONNX defines them: the compiler's float view of a layer
(calibration runs it on whole sequences)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from compiler.ir import Node
from compiler.ops.activation import float_activation
from compiler.ops.recurrent.formats import StateRanges
from compiler.ops.recurrent.records import GruAttrs, LstmAttrs, RecurrentAttrs, RnnAttrs
from compiler.ops.recurrent.scan import scan


def float_recurrent(node: Node, x: np.ndarray, h0: np.ndarray | None = None, c0: np.ndarray | None = None) -> list:
    return float_ranges(node, x, h0, c0)[0]


def float_ranges(node: Node, x: np.ndarray, h0: np.ndarray | None = None,
                 c0: np.ndarray | None = None) -> tuple[list, StateRanges]:
    """The layer's outputs, and the ranges of the values inside it that its formats must hold
    (every step's h and c, the initial states included, and its Relus' outputs)."""
    seen = {"h": 0.0, "c": 0.0, "gate": 0.0, "candidate": 0.0}
    cell = CELLS[node.op]
    attrs = _in_float64(node.attrs)

    def step(d: int, x_t: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h_new, c_new = cell(attrs, d, x_t, h, c, seen)
        for key, value in (("h", h), ("h", h_new), ("c", c), ("c", c_new)):
            _note(seen, key, value)
        return h_new, c_new

    outputs = scan(node, x, h0, c0, step, np.float64)
    return outputs, StateRanges(**seen)


def _in_float64(a: RecurrentAttrs) -> RecurrentAttrs:
    """W and R cast to float64 once, where a float32 matrix times float64 states was cast again for
    every product: several times the product's own time on a wide layer. Each W[d].T is laid out
    C-contiguous, the operand numpy builds when it casts a float32 W[d].T, so every product keeps its
    value to the last bit (another layout may sum in another order)."""
    def cast(m: np.ndarray) -> np.ndarray:
        return np.swapaxes(np.ascontiguousarray(np.swapaxes(m, 1, 2), np.float64), 1, 2)
    return dataclasses.replace(a, W=cast(a.W), R=cast(a.R))


def _note(seen: dict[str, float], key: str, value: np.ndarray) -> None:
    if value.size:
        seen[key] = max(seen[key], float(np.max(np.abs(value))))


def _clip(a: RecurrentAttrs) -> Callable[[np.ndarray], np.ndarray]:
    clip = a.clip
    return (lambda v: v) if clip is None else (lambda v: np.clip(v, -clip, clip))


ROLES = ("gate", "candidate")  # what a Relu records, by its position among a cell's activations


def _acts(a: RecurrentAttrs, d: int, seen: dict[str, float]) -> list[Callable[[np.ndarray], np.ndarray]]:
    """The cell's activations; a Relu in the gate or candidate position notes its outputs' range
    in `seen` (a table's is bounded; the LSTM's activation of c is c's)."""
    def act(spec: str, position: int) -> Callable[[np.ndarray], np.ndarray]:
        def run(v: np.ndarray) -> np.ndarray:
            out = float_activation(spec, v)
            if spec == "relu" and position < len(ROLES):
                _note(seen, ROLES[position], out)
            return out
        return run
    return [act(spec, position) for position, spec in enumerate(a.activations[d])]


def _lstm_cell(a: LstmAttrs, d: int, x, h, c, seen: dict[str, float]):
    f_act, g_act, h_act = _acts(a, d, seen)
    clip, gates = _clip(a), a.W.shape[1]
    pre = x @ a.W[d].T + h @ a.R[d].T + a.B[d][:gates] + a.B[d][gates:]
    i, o, f, g = np.split(pre, 4, axis=-1)
    p_i, p_o, p_f = np.split(a.P[d], 3) if a.P is not None else (0.0, 0.0, 0.0)
    i = f_act(clip(i + p_i * c))
    f = 1.0 - i if a.input_forget else f_act(clip(f + p_f * c))
    c = f * c + i * g_act(clip(g))
    o = f_act(clip(o + p_o * c))
    return o * h_act(c), c


def _gru_cell(a: GruAttrs, d: int, x, h, c, seen: dict[str, float]):
    f_act, g_act = _acts(a, d, seen)
    clip, hidden = _clip(a), a.hidden
    w, r, wb, rb = a.W[d], a.R[d], a.B[d][: 3 * hidden], a.B[d][3 * hidden:]
    gx = x @ w.T + wb
    z, reset = np.split(f_act(clip(gx[:, : 2 * hidden] + h @ r[: 2 * hidden].T + rb[: 2 * hidden])), 2, axis=-1)
    if a.linear_before_reset:
        pre = gx[:, 2 * hidden:] + reset * (h @ r[2 * hidden:].T + rb[2 * hidden:])
    else:
        pre = gx[:, 2 * hidden:] + (reset * h) @ r[2 * hidden:].T + rb[2 * hidden:]
    candidate = g_act(clip(pre))
    return (1.0 - z) * candidate + z * h, c


def _rnn_cell(a: RnnAttrs, d: int, x, h, c, seen: dict[str, float]):
    (f_act,) = _acts(a, d, seen)
    gates = a.W.shape[1]
    return f_act(_clip(a)(x @ a.W[d].T + h @ a.R[d].T + a.B[d][:gates] + a.B[d][gates:])), c


CELLS = {"lstm": _lstm_cell, "gru": _gru_cell, "rnn": _rnn_cell}

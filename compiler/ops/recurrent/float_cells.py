"""The recurrent cells in float64, as ONNX defines them: the compiler's float view of a layer
(calibration runs it on whole sequences)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from compiler.ir import Node
from compiler.ops.activation import activation_function
from compiler.ops.recurrent.formats import StateRanges
from compiler.ops.recurrent.records import GruAttrs, LstmAttrs, RecurrentAttrs, RnnAttrs
from compiler.ops.recurrent.scan import scan


def float_recurrent(node: Node, x: np.ndarray, h0: np.ndarray | None = None, c0: np.ndarray | None = None) -> list:
    return float_ranges(node, x, h0, c0)[0]


def float_ranges(node: Node, x: np.ndarray, h0: np.ndarray | None = None,
                 c0: np.ndarray | None = None) -> tuple[list, StateRanges]:
    """The layer's outputs, and the ranges of the values inside it that its formats must hold
    (every step's h and c, the initial states included, and its Relus' outputs), with each
    direction's step moments (StateRanges.steps)."""
    seen = _Extremes()
    moments = [_StepMoments() for _ in node.attrs.directions]
    cell = CELLS[node.op]
    attrs = _in_float64(node.attrs, x.shape[0])
    acts = [_acts(attrs, d, seen) for d in range(len(attrs.directions))]
    returned: list[np.ndarray] = []

    def step(d: int, x_t: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        for key, value in (("h", h), ("c", c)):
            if not any(value is state for state in returned):  # not the last step's: an initial state
                seen.note(key, value)
        moments[d].note(x_t, h)
        h_new, c_new = cell(attrs, d, acts[d], x_t, h, c)
        seen.note("h", h_new)
        seen.note("c", c_new)
        returned[:] = h_new, c_new
        return h_new, c_new

    outputs = scan(node, x, h0, c0, step, np.float64)
    steps = tuple(m.mean() for m in moments)
    return outputs, StateRanges(**seen.largest(("h", "c") + ROLES), steps=steps)


class _StepMoments:
    """E[z zᵀ] over a direction's steps, z = [x_t, h_prev]: the second moments of what a step's
    pre-activations are made of (W x_t + R h_prev), cross terms included, so that W and R can be
    compressed together (passes/joint.py)."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.count = 0

    def note(self, x: np.ndarray, h: np.ndarray) -> None:
        z = np.concatenate([x, h], axis=1)
        product = z.T @ z
        self.total = product if self.total is None else self.total + product
        self.count += len(z)

    def mean(self) -> np.ndarray | None:
        return None if self.total is None else self.total / self.count


class _Extremes:
    """The largest magnitude of each kind of value a layer notes, kept as running elementwise
    extremes and reduced once at the end: the same maximum as a reduction at every step (a max is
    exact in any order), for two element-wise calls a step where a reduction cost several times
    that on a long sequence."""

    def __init__(self) -> None:
        self.high: dict[str, np.ndarray] = {}
        self.low: dict[str, np.ndarray] = {}

    def note(self, key: str, value: np.ndarray) -> None:
        if not value.size:
            return
        if key not in self.high:
            self.high[key], self.low[key] = value.copy(), value.copy()
            return
        np.fmax(self.high[key], value, out=self.high[key])
        np.fmin(self.low[key], value, out=self.low[key])

    def largest(self, keys: tuple[str, ...]) -> dict[str, float]:
        """Each key's largest magnitude, 0 for one never noted."""
        return {key: max(0.0, float(np.max(self.high[key])), -float(np.min(self.low[key])))
                if key in self.high else 0.0 for key in keys}


def _in_float64(a: RecurrentAttrs, samples: int) -> RecurrentAttrs:
    """W and R cast to float64 once, where a float32 matrix times float64 states was cast again for
    every product: several times the product's own time on a wide layer. Each W[d].T is laid out
    C-contiguous, the operand numpy builds when it casts a float32 W[d].T, so every product keeps its
    value to the last bit (another layout may sum in another order). B is cast too (exactly, as
    every sum cast it) and repeated for every sample, [D, samples, 2*G*H]: the same sums, but of
    equal shapes, which numpy adds at twice the speed of a row broadcast down the samples."""
    def cast(m: np.ndarray) -> np.ndarray:
        return np.swapaxes(np.ascontiguousarray(np.swapaxes(m, 1, 2), np.float64), 1, 2)
    biases = np.repeat(a.B.astype(np.float64)[:, None], samples, axis=1)
    return dataclasses.replace(a, W=cast(a.W), R=cast(a.R), B=biases)


def _clip(a: RecurrentAttrs) -> Callable[[np.ndarray], np.ndarray]:
    clip = a.clip
    return (lambda v: v) if clip is None else (lambda v: np.clip(v, -clip, clip))


def _columns(v: np.ndarray, parts: int) -> list[np.ndarray]:
    """np.split(v, parts, axis=-1) by plain slicing: the same views, without np.split's overhead
    at every step."""
    width = v.shape[-1] // parts
    return [v[..., k * width:(k + 1) * width] for k in range(parts)]


def _peephole(v: np.ndarray, p: np.ndarray | None, c: np.ndarray) -> np.ndarray:
    """v + p c, or v itself without peepholes (adding 0 · c changed nothing but a zero's sign,
    which no activation or range sees)."""
    return v if p is None else v + p * c


ROLES = ("gate", "candidate")  # what a Relu records, by its position among a cell's activations


def _acts(a: RecurrentAttrs, d: int, seen: _Extremes) -> list[Callable[[np.ndarray], np.ndarray]]:
    """The cell's activations in direction d; a Relu in the gate or candidate position notes its
    outputs' range in `seen` (a table's is bounded; the LSTM's activation of c is c's)."""
    def act(spec: str, position: int) -> Callable[[np.ndarray], np.ndarray]:
        function = activation_function(spec)
        if spec != "relu" or position >= len(ROLES):
            return function

        def run(v: np.ndarray) -> np.ndarray:
            out = function(v)
            seen.note(ROLES[position], out)
            return out
        return run
    return [act(spec, position) for position, spec in enumerate(a.activations[d])]


def _lstm_cell(a: LstmAttrs, d: int, acts: list, x, h, c):
    f_act, g_act, h_act = acts
    clip, pre = _clip(a), _gate_inputs(a, d, x, h)
    i, o, f, g = _columns(pre, 4)
    if a.P is None and not a.input_forget:  # i, o, f side by side: one call of the element-wise f, not three
        i, o, f = _columns(f_act(clip(pre[:, : 3 * a.hidden])), 3)
        c = f * c + i * g_act(clip(g))
        return o * h_act(c), c
    p_i, p_o, p_f = _columns(a.P[d], 3) if a.P is not None else (None, None, None)
    i = f_act(clip(_peephole(i, p_i, c)))
    f = 1.0 - i if a.input_forget else f_act(clip(_peephole(f, p_f, c)))
    c = f * c + i * g_act(clip(g))
    o = f_act(clip(_peephole(o, p_o, c)))
    return o * h_act(c), c


def _gru_cell(a: GruAttrs, d: int, acts: list, x, h, c):
    f_act, g_act = acts
    clip, hidden = _clip(a), a.hidden
    w, r, wb, rb = a.W[d], a.R[d], a.B[d][:, : 3 * hidden], a.B[d][:, 3 * hidden:]
    gx = x @ w.T + wb
    z, reset = _columns(f_act(clip(gx[:, : 2 * hidden] + h @ r[: 2 * hidden].T + rb[:, : 2 * hidden])), 2)
    if a.linear_before_reset:
        pre = gx[:, 2 * hidden:] + reset * (h @ r[2 * hidden:].T + rb[:, 2 * hidden:])
    else:
        pre = gx[:, 2 * hidden:] + (reset * h) @ r[2 * hidden:].T + rb[:, 2 * hidden:]
    candidate = g_act(clip(pre))
    return (1.0 - z) * candidate + z * h, c


def _rnn_cell(a: RnnAttrs, d: int, acts: list, x, h, c):
    (f_act,) = acts
    return f_act(_clip(a)(_gate_inputs(a, d, x, h))), c


def _gate_inputs(a: LstmAttrs | RnnAttrs, d: int, x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """x Wᵀ + h Rᵀ + Wb + Rb, summed in that order in one array (no temporary per sum)."""
    gates = a.W.shape[1]
    pre = x @ a.W[d].T
    pre += h @ a.R[d].T
    pre += a.B[d][:, :gates]
    pre += a.B[d][:, gates:]
    return pre


CELLS = {"lstm": _lstm_cell, "gru": _gru_cell, "rnn": _rnn_cell}

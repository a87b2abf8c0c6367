"""The golden reference's recurrent cells: LSTM, GRU and RNN in integers, step by step.

This is the cells' integer recipe (docs/numerics.md states it as equations): written from the
formats, not from the instruction sequence that the compiler emits for it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

from compiler.ir import Node, QMatrix
from isa import numerics as nx


@cache
def table(name: str) -> np.ndarray:
    return nx.activation_table(name)


def activation(spec: str, x: np.ndarray) -> np.ndarray:
    return nx.relu(x) if spec == "relu" else nx.table_lookup(table(spec), x)


def accumulate(q: QMatrix, x: np.ndarray) -> np.ndarray:
    acc = np.einsum("...k,rk->...r", x.astype(np.int64), q.weights)
    return acc if q.bias is None else acc + q.bias


def project(q: QMatrix, x: np.ndarray, addend: np.ndarray | None = None, rows: slice = slice(None)) -> np.ndarray:
    """requantize(q x) of `rows`, plus an addend -- or else a compressed matrix's bias -- before
    the one saturation."""
    if addend is None and q.out_bias is not None:
        addend = np.left_shift(q.out_bias[..., rows], q.bias_shift)
    acc, mult, shift = accumulate(q, x)[..., rows], q.mult[rows], q.shift[rows]
    if addend is None:
        return nx.requantize(acc, mult, shift)
    return nx.requantize_add(acc, mult, shift, addend)


def _clamp(a: dict) -> Callable[[np.ndarray], np.ndarray]:
    limit = a["clip_q"]
    return (lambda v: v) if limit is None else (lambda v: nx.clamp(v, -limit, limit))


def lstm_cell(a: dict, d: int, x, h, c):
    f_spec, g_spec, h_spec = a["activations"][d]
    fmt, clamp, peep = a["formats"][d], _clamp(a), a.get(f"P{d}")
    pre = project(a[f"qh{d}"], h, project(a[f"qx{d}"], x))
    i, o, f, g = np.split(pre, 4, axis=-1)
    p_i, p_o, p_f = np.split(peep, 3) if peep is not None else (None, None, None)
    if peep is not None:
        i, f = nx.add(i, nx.multiply(p_i, c, fmt.peephole_shift)), nx.add(f, nx.multiply(p_f, c, fmt.peephole_shift))
    i, g = activation(f_spec, clamp(i)), activation(g_spec, clamp(g))
    f = nx.subtract(fmt.one, i) if a["input_forget"] else activation(f_spec, clamp(f))
    c = nx.add(nx.multiply(f, c, fmt.gate_shift), nx.multiply(i, g, fmt.input_shift))
    if peep is not None:
        o = nx.add(o, nx.multiply(p_o, c, fmt.peephole_shift))
    o = activation(f_spec, clamp(o))
    return nx.multiply(o, activation(h_spec, c), fmt.hidden_shift), c


def gru_cell(a: dict, d: int, x, h, c):
    f_spec, g_spec = a["activations"][d]
    fmt, hidden, clamp = a["formats"][d], a["hidden"], _clamp(a)
    gx = project(a[f"qx{d}"], x)
    zr_matrix = a[f"qh{d}"] if a["linear_before_reset"] else a[f"qzr{d}"]
    zr = activation(f_spec, clamp(project(zr_matrix, h, gx[..., : 2 * hidden], slice(0, 2 * hidden))))
    z, reset = np.split(zr, 2, axis=-1)
    if a["linear_before_reset"]:
        candidate = project(a[f"qh{d}"], h, rows=slice(2 * hidden, None))
        pre = nx.add(nx.multiply(reset, candidate, fmt.gate_shift), gx[..., 2 * hidden:])
    else:
        pre = project(a[f"qhh{d}"], nx.multiply(reset, h, fmt.gate_shift), gx[..., 2 * hidden:])
    candidate = activation(g_spec, clamp(pre))
    keep = nx.multiply(nx.subtract(fmt.one, z), candidate, fmt.gate_shift)  # (1 - z) h~ + z h: within [-1, 1]
    return nx.add(keep, nx.multiply(z, h, fmt.gate_shift)), c


def rnn_cell(a: dict, d: int, x, h, c):
    (f_spec,) = a["activations"][d]
    return activation(f_spec, _clamp(a)(project(a[f"qh{d}"], h, project(a[f"qx{d}"], x)))), c


CELLS = {"lstm": lstm_cell, "gru": gru_cell, "rnn": rnn_cell}


def run_cell(node: Node) -> Callable:
    cell = CELLS[node.op]
    return lambda d, x_t, h, c: cell(node.attrs, d, x_t, h, c)

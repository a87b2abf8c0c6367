"""The golden reference's recurrent cells: LSTM, GRU and RNN in integers, step by step.

This is the cells' integer recipe (docs/numerics.md states it as equations): written from the
formats, not from the instruction sequence that the compiler emits for it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler.ir import Node
from compiler.ops.integer import activation, project
from compiler.ops.recurrent.records import QuantGruAttrs, QuantLstmAttrs, QuantRecurrentAttrs, QuantRnnAttrs
from compiler.ops.recurrent.scan import scan
from isa import numerics as nx


def integer_recurrent(node: Node, x: np.ndarray, h0: np.ndarray | None = None,
                      c0: np.ndarray | None = None) -> list:
    cell = CELLS[node.op]
    return scan(node, x, h0, c0, lambda d, x_t, h, c: cell(node.attrs, d, x_t, h, c), np.int64)


def _clamp(a: QuantRecurrentAttrs) -> Callable[[np.ndarray], np.ndarray]:
    limit = a.clip_q
    return (lambda v: v) if limit is None else (lambda v: nx.clamp(v, -limit, limit))


def lstm_cell(a: QuantLstmAttrs, d: int, x, h, c):
    f_spec, g_spec, h_spec = a.activations[d]
    fmt, clamp, weights = a.formats[d], _clamp(a), a.cells[d]
    peep = weights.peephole
    pre = project(weights.h, h, project(weights.x, x))
    i, o, f, g = np.split(pre, 4, axis=-1)
    p_i, p_o, p_f = np.split(peep, 3) if peep is not None else (None, None, None)
    if peep is not None:
        i, f = nx.add(i, nx.multiply(p_i, c, fmt.peephole_shift)), nx.add(f, nx.multiply(p_f, c, fmt.peephole_shift))
    i, g = activation(f_spec, clamp(i)), activation(g_spec, clamp(g))
    f = nx.subtract(fmt.one, i) if a.input_forget else activation(f_spec, clamp(f))
    c = nx.add(nx.multiply(f, c, fmt.gate_shift), nx.multiply(i, g, fmt.input_shift))
    if peep is not None:
        o = nx.add(o, nx.multiply(p_o, c, fmt.peephole_shift))
    o = activation(f_spec, clamp(o))
    return nx.multiply(o, activation(h_spec, c), fmt.hidden_shift), c


def gru_cell(a: QuantGruAttrs, d: int, x, h, c):
    f_spec, g_spec = a.activations[d]
    fmt, hidden, clamp, weights = a.formats[d], a.hidden, _clamp(a), a.cells[d]
    gx = project(weights.x, x)
    zr_matrix = weights.h if a.linear_before_reset else weights.zr
    zr = activation(f_spec, clamp(project(zr_matrix, h, gx[..., : 2 * hidden], slice(0, 2 * hidden))))
    z, reset = np.split(zr, 2, axis=-1)
    if a.linear_before_reset:
        candidate = project(weights.h, h, rows=slice(2 * hidden, None))
        pre = nx.add(nx.multiply(reset, candidate, fmt.gate_shift), gx[..., 2 * hidden:])
    else:
        pre = project(weights.hh, nx.multiply(reset, h, fmt.gate_shift), gx[..., 2 * hidden:])
    candidate = activation(g_spec, clamp(pre))
    keep = nx.multiply(nx.subtract(fmt.one, z), candidate, fmt.gate_shift)  # (1 - z) h~ + z h: within [-1, 1]
    return nx.add(keep, nx.multiply(z, h, fmt.gate_shift)), c


def rnn_cell(a: QuantRnnAttrs, d: int, x, h, c):
    (f_spec,) = a.activations[d]
    weights = a.cells[d]
    return activation(f_spec, _clamp(a)(project(weights.h, h, project(weights.x, x)))), c


CELLS = {"lstm": lstm_cell, "gru": gru_cell, "rnn": rnn_cell}

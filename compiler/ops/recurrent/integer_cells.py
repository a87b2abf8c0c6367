"""The golden reference's recurrent cells: LSTM, GRU and RNN in integers, step by step.

This is the cells' integer recipe (docs/numerics.md states it as equations): written from the
formats, not from the instruction sequence that the compiler emits for it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler.ir import Node
from compiler.ops.integer import activation, project
from compiler.ops.recurrent.formats import rescaling
from compiler.ops.recurrent.records import QuantGruAttrs, QuantLstmAttrs, QuantRecurrentAttrs, QuantRnnAttrs
from compiler.ops.recurrent.scan import scan
from isa import numerics as nx
from isa.numerics import GATE_FRAC, UNIT_FRAC


def integer_recurrent(node: Node, x: np.ndarray, h0: np.ndarray | None = None,
                      c0: np.ndarray | None = None) -> list:
    cell = CELLS[node.op]
    return scan(node, x, h0, c0, lambda d, x_t, h, c: cell(node.attrs, d, x_t, h, c), np.int64)


def _clamp(a: QuantRecurrentAttrs) -> Callable[[np.ndarray], np.ndarray]:
    limit = a.clip_q
    return (lambda v: v) if limit is None else (lambda v: nx.clamp(v, -limit, limit))


def _act(spec: str, v: np.ndarray, frm: int, to: int = UNIT_FRAC) -> np.ndarray:
    """An activation of a value with `frm` fraction bits. A table reads Q3.12 and writes Q0.15:
    its input is brought into Q3.12 first (saturating), its output to `to` after, where those
    differ; Relu keeps the format."""
    if spec == "relu":
        return activation(spec, v)
    return _rescaled(activation(spec, _rescaled(v, frm, GATE_FRAC)), UNIT_FRAC, to)


def _rescaled(v: np.ndarray, frm: int, to: int) -> np.ndarray:
    pair = rescaling(frm, to)
    return v if pair is None else nx.multiply(v, *pair)


def lstm_cell(a: QuantLstmAttrs, d: int, x, h, c):
    f_spec, g_spec, h_spec = a.activations[d]
    fmt, clamp, weights = a.formats[d], _clamp(a), a.cells[d]
    peep = weights.peephole
    pre = project(weights.h, h, project(weights.x, x))
    i, o, f, g = np.split(pre, 4, axis=-1)
    p_i, p_o, p_f = np.split(peep, 3) if peep is not None else (None, None, None)
    if peep is not None:
        i, f = nx.add(i, nx.multiply(p_i, c, fmt.peephole_shift)), nx.add(f, nx.multiply(p_f, c, fmt.peephole_shift))
    i, g = _act(f_spec, clamp(i), fmt.pre), _act(g_spec, clamp(g), fmt.pre)
    f = nx.subtract(fmt.one, i) if a.input_forget else _act(f_spec, clamp(f), fmt.pre)
    c = nx.add(nx.multiply(f, c, fmt.gate_shift), nx.multiply(i, g, fmt.input_shift))
    if peep is not None:
        o = nx.add(o, nx.multiply(p_o, c, fmt.peephole_shift))
    o = _act(f_spec, clamp(o), fmt.pre)
    return nx.multiply(o, _act(h_spec, c, fmt.cell), fmt.hidden_shift), c


def gru_cell(a: QuantGruAttrs, d: int, x, h, c):
    f_spec, g_spec = a.activations[d]
    fmt, hidden, clamp, weights = a.formats[d], a.hidden, _clamp(a), a.cells[d]
    gx = project(weights.x, x)
    zr_matrix = weights.h if a.linear_before_reset else weights.zr
    zr = _act(f_spec, clamp(project(zr_matrix, h, gx[..., : 2 * hidden], slice(0, 2 * hidden))), fmt.pre)
    z, reset = np.split(zr, 2, axis=-1)
    if a.linear_before_reset:
        candidate = project(weights.h, h, rows=slice(2 * hidden, None))
        pre = nx.add(nx.multiply(reset, candidate, fmt.gate_shift), gx[..., 2 * hidden:])
    else:
        pre = project(weights.hh, nx.multiply(reset, h, fmt.gate_shift), gx[..., 2 * hidden:])
    candidate = _act(g_spec, clamp(pre), fmt.pre)
    keep = nx.multiply(nx.subtract(fmt.one, z), candidate, fmt.candidate_shift)  # (1 - z) h~ + z h
    return nx.add(keep, nx.multiply(z, h, fmt.gate_shift)), c


def rnn_cell(a: QuantRnnAttrs, d: int, x, h, c):
    (f_spec,) = a.activations[d]
    fmt, weights = a.formats[d], a.cells[d]
    return _act(f_spec, _clamp(a)(project(weights.h, h, project(weights.x, x))), fmt.pre, fmt.hidden), c


CELLS = {"lstm": lstm_cell, "gru": gru_cell, "rnn": rnn_cell}

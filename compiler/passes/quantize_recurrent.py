"""Quantisation of the recurrent layers: their fixed formats (compiler/formats.py) and integer
weights. docs/numerics.md gives the integer recipe of each cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.formats import cell_formats, hidden_frac
from compiler.ir import Node, QMatrix
from compiler.passes.tile import row_order
from compiler.passes.weights import GATE_SCALE, WeightPolicy
from isa.numerics import ACT_MAX, GATE_FRAC, quantize


def output_scales(node: Node) -> tuple[float, ...]:
    hidden = 2.0 ** -hidden_frac(node)
    return (hidden, hidden, GATE_SCALE) if node.op == "lstm" else (hidden, hidden)


def input_scales(node: Node) -> tuple[float | None, ...]:
    """X takes any scale; initial states come in the layer's own formats."""
    return (None, *output_scales(node)[1:])


def clip_value(node: Node) -> int | None:
    """The clip threshold in Q3.12, or None when it cannot bind (Q3.12 saturates at 8 anyway)."""
    clip = node.attrs["clip"]
    if clip is None or clip * (1 << GATE_FRAC) >= ACT_MAX:
        return None
    return int(round(clip * (1 << GATE_FRAC)))


def quantize_recurrent(node: Node, x_scale: float, policy: WeightPolicy) -> Node:
    a, gates = node.attrs, node.attrs["W"].shape[1]
    matrices = Matrices(node, policy, x_scale, 2.0 ** -hidden_frac(node))
    quantized = {"formats": cell_formats(node), "clip_q": clip_value(node)}
    for d in range(len(a["directions"])):
        wb, rb = a["B"][d][:gates], a["B"][d][gates:]
        quantized.update(MATRICES[node.op](matrices, d, wb, rb))
        if node.op == "lstm" and a["P"] is not None:
            quantized[f"P{d}"] = quantize(a["P"][d], GATE_SCALE)
    return node.with_attrs(**quantized)


@dataclass(frozen=True)
class Matrices:
    """What quantising one layer's matrices needs: W multiplies X, R multiplies the hidden state."""

    node: Node
    policy: WeightPolicy
    x_scale: float
    h_scale: float

    def w(self, key: str, weight: np.ndarray, bias: np.ndarray | None) -> QMatrix:
        return self.policy.matrix(weight, bias, self.x_scale, GATE_SCALE, self.node.inputs[:1],
                                  self._order(key, weight))

    def r(self, key: str, weight: np.ndarray, bias: np.ndarray | None = None) -> QMatrix:
        return self.policy.matrix(weight, bias, self.h_scale, GATE_SCALE, self.node.outputs[:2],
                                  self._order(key, weight))

    def _order(self, key: str, weight: np.ndarray) -> np.ndarray:
        return row_order(self.node, key, weight.shape[0], self.policy.target)


def _plain(m: Matrices, d: int, wb, rb) -> dict:
    """LSTM and RNN: W with both biases, R on its own."""
    a = m.node.attrs
    return {f"qx{d}": m.w(f"qx{d}", a["W"][d], wb + rb), f"qh{d}": m.r(f"qh{d}", a["R"][d])}


def _gru(m: Matrices, d: int, wb, rb) -> dict:
    """With linear_before_reset R stays whole (its candidate rows carry Rb_h); without, the
    candidate rows multiply r*h, not h, so R splits into z/r rows and candidate rows."""
    a = m.node.attrs
    lbr, hidden = a["linear_before_reset"], a["hidden"]
    cut = 2 * hidden
    x_bias = wb + np.concatenate([rb[:cut], np.zeros(hidden) if lbr else rb[cut:]])
    matrices = {f"qx{d}": m.w(f"qx{d}", a["W"][d], x_bias)}
    if lbr:
        matrices[f"qh{d}"] = m.r(f"qh{d}", a["R"][d], np.concatenate([np.zeros(cut), rb[cut:]]))
    else:
        matrices.update({f"qzr{d}": m.r(f"qzr{d}", a["R"][d][:cut]), f"qhh{d}": m.r(f"qhh{d}", a["R"][d][cut:])})
    return matrices


MATRICES = {"lstm": _plain, "gru": _gru, "rnn": _plain}

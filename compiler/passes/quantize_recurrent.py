"""Quantisation of the recurrent layers: their fixed formats and integer weights.

Gate pre-activations are Q3.12. A table activation writes Q0.15, Relu keeps Q3.12, so the
hidden state's format follows the activations (`hidden_frac`): Q0.15 when it is a product or
output of table functions only, Q3.12 otherwise. The cell state is always Q3.12.
docs/numerics.md gives the integer recipe of each cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.ir import Node, QMatrix
from compiler.passes.tile import row_order
from compiler.passes.weights import GATE_SCALE, WeightPolicy
from isa.errors import RnnaccelError
from isa.numerics import ACT_MAX, GATE_FRAC, UNIT_FRAC, quantize


def act_frac(spec: str) -> int:
    """Fraction bits of an activation's output: tables write Q0.15, Relu keeps Q3.12."""
    return GATE_FRAC if spec == "relu" else UNIT_FRAC


def one(frac: int) -> int:
    """1.0 in a format with `frac` fraction bits, as close as 16 bits allow."""
    return min(1 << frac, ACT_MAX)


def hidden_frac(node: Node) -> int:
    """The hidden state's fraction bits, one format for all directions of the layer."""
    fracs = {_direction_hidden_frac(node.op, specs) for specs in node.attrs["activations"]}
    if node.op == "gru" and len(fracs) > 1:
        raise RnnaccelError(f"{node.source}: GRU directions whose candidate activations differ in range")
    return min(fracs)


def _direction_hidden_frac(op: str, specs: tuple[str, ...]) -> int:
    if op == "lstm":  # h = o * h(c)
        return min(act_frac(specs[0]), act_frac(specs[2]))
    return act_frac(specs[-1])  # gru: h mixes h~ = g(...); rnn: h = f(...)


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
    quantized = {"hfrac": hidden_frac(node), "clip_q": clip_value(node)}
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

"""Quantisation of the recurrent layers: their fixed formats and integer weights.

Gate pre-activations are Q3.12. A table activation writes Q0.15, Relu keeps Q3.12, so the
hidden state's format follows the activations (`hidden_frac`): Q0.15 when it is a product or
output of table functions only, Q3.12 otherwise. The cell state is always Q3.12.
docs/numerics.md gives the integer recipe of each cell.
"""

from __future__ import annotations

import numpy as np

from compiler.ir import Node
from compiler.passes.weights import GATE_SCALE, quantize_matrix
from isa.errors import RnnaccelError
from isa.numerics import ACT_MAX, GATE_FRAC, UNIT_FRAC, quantize
from isa.target import Target


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


def quantize_recurrent(node: Node, x_scale: float, target: Target) -> Node:
    a, hidden = node.attrs, node.attrs["hidden"]
    h_scale, size = 2.0 ** -hidden_frac(node), len(a["directions"])
    quantized = {"hfrac": hidden_frac(node), "clip_q": clip_value(node)}
    for d in range(size):
        gates = a["W"].shape[1]
        wb, rb = a["B"][d][:gates], a["B"][d][gates:]
        quantized.update(MATRICES[node.op](a, d, wb, rb, x_scale, h_scale, hidden, target))
        if node.op == "lstm" and a["P"] is not None:
            quantized[f"P{d}"] = quantize(a["P"][d], GATE_SCALE)
    return node.with_attrs(**quantized)


def _plain(a: dict, d: int, wb, rb, x_scale: float, h_scale: float, hidden: int, target: Target) -> dict:
    """LSTM and RNN: W with both biases, R on its own."""
    return {f"qx{d}": quantize_matrix(a["W"][d], wb + rb, x_scale, GATE_SCALE, target),
            f"qh{d}": quantize_matrix(a["R"][d], None, h_scale, GATE_SCALE, target)}


def _gru(a: dict, d: int, wb, rb, x_scale: float, h_scale: float, hidden: int, target: Target) -> dict:
    """R splits into z/r rows (with h) and candidate rows (with h, or r*h before reset)."""
    lbr, cut = a["linear_before_reset"], 2 * hidden
    x_bias = wb + np.concatenate([rb[:cut], np.zeros(hidden) if lbr else rb[cut:]])
    return {f"qx{d}": quantize_matrix(a["W"][d], x_bias, x_scale, GATE_SCALE, target),
            f"qzr{d}": quantize_matrix(a["R"][d][:cut], None, h_scale, GATE_SCALE, target),
            f"qhh{d}": quantize_matrix(a["R"][d][cut:], rb[cut:] if lbr else None, h_scale, GATE_SCALE, target)}


MATRICES = {"lstm": _plain, "gru": _gru, "rnn": _plain}

"""Quantisation of the recurrent layers: their formats (formats.py), the order their
matrices' rows are stored and tiled in, and their integer weights. docs/numerics.md gives the
integer recipe of each cell.

A layer's rows are stored by *unit groups*: the gate rows of a few hidden units together (an
LSTM: i, o, f and c of 8 units, one 32-row tile at 32 MACs), so the vector unit can finish
those units' new state as soon as their tile is done, while the MAC array goes on
(passes/tile.py). The order is decided here, once, because compression by tile needs the tiles.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from compiler.ir import Node, QMatrix
from compiler.ops.recurrent.float_cells import MIN_SAMPLES, RUN_SAMPLES
from compiler.ops.recurrent.formats import cell_formats, cell_frac, hidden_frac, pre_frac
from compiler.ops.recurrent.records import CellWeights, QuantGruAttrs, QuantLstmAttrs, QuantRnnAttrs, RecurrentAttrs
from compiler.ops.recurrent.refit import DEFAULT_ACTIVATIONS, REFIT_BITS, Layer, Tied, refit
from compiler.ops.registry import Scales
from compiler.passes.joint import Part, fit_jointly
from compiler.passes.tile import recurrent_height, unit_groups
from compiler.passes.weights import GATE_SCALE, WeightPolicy
from isa.numerics import ACT_MAX, quantize

CELL_GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # gate rows per hidden unit
# vector elements per hidden unit and step (cells.py; the input projection's requantisation
# included), for the choice of R's tile height (tile.recurrent_height)
VECTOR_ELEMENTS = {"lstm": 17, "gru": 15, "rnn": 3}
QUANTIZED = {"lstm": QuantLstmAttrs, "gru": QuantGruAttrs, "rnn": QuantRnnAttrs}


def output_scales(node: Node, scales: Scales | None = None) -> tuple[float, ...]:
    """Y and Y_h in the hidden state's format; an LSTM's Y_c in the cell state's."""
    hidden = 2.0 ** -hidden_frac(node)
    return (hidden, hidden, 2.0 ** -cell_frac(node)) if node.op == "lstm" else (hidden, hidden)


def input_scales(node: Node) -> tuple[float | None, ...]:
    """X takes any scale; initial states come in the layer's own formats."""
    return (None, *output_scales(node)[1:])


def clip_value(node: Node) -> int | None:
    """The clip threshold in the pre-activations' format, or None when it cannot bind (beyond the
    format's range)."""
    clip = node.attrs.clip
    if clip is None or clip * (1 << pre_frac(node)) >= ACT_MAX:
        return None
    return int(round(clip * (1 << pre_frac(node))))


def quantize_recurrent(node: Node, scales: dict[str, float], policy: WeightPolicy) -> Node:
    """The layer's integer matrices and formats; the calibration runs a refit reads are dropped
    from the quantised node (they are the largest thing calibration keeps)."""
    matrices = Matrices(node, policy, scales[node.inputs[0]], 2.0 ** -hidden_frac(node), 2.0 ** -pre_frac(node))
    cells = tuple(_direction(matrices, d) for d in range(len(node.attrs.directions)))
    ranges = node.attrs.ranges and dataclasses.replace(node.attrs.ranges, runs=())
    return node.with_attrs(ranges=ranges).quantized(QUANTIZED[node.op], formats=cell_formats(node),
                                                    clip_q=clip_value(node), cells=cells)


def _direction(m: Matrices, d: int) -> CellWeights:
    a = m.node.attrs
    gates = a.W.shape[1]
    wb, rb = a.B[d][:gates], a.B[d][gates:]
    weights = _refitted(m, d, _jointly(m, d, MATRICES[m.node.op](m, d, wb, rb)))
    if m.node.op == "lstm" and a.P is not None:
        return CellWeights(**weights, peephole=quantize(a.P[d], GATE_SCALE))
    return CellWeights(**weights)


@dataclass(frozen=True)
class Matrices:
    """What quantising one layer's matrices needs: W multiplies X, R multiplies the hidden state."""

    node: Node
    policy: WeightPolicy
    x_scale: float
    h_scale: float
    pre_scale: float

    def w(self, d: int, weight: np.ndarray, bias: np.ndarray | None) -> QMatrix:
        return self.policy.matrix(weight, bias, self.x_scale, self.pre_scale, self.node.inputs[:1],
                                  self.order(CELL_GATES[self.node.op]), self.policy.target.macs, self.name("x", d))

    def r(self, kind: str, d: int, weight: np.ndarray, bias: np.ndarray | None = None,
          gates: int | None = None) -> QMatrix:
        gates, hidden = gates or CELL_GATES[self.node.op], self.node.attrs.hidden
        target = self.policy.target
        vector = -(-VECTOR_ELEMENTS[self.node.op] * hidden // target.vec_lanes)
        height = recurrent_height(hidden, gates, target, vector, len(self.node.attrs.directions))
        return self.policy.matrix(weight, bias, self.h_scale, self.pre_scale, self.node.outputs[:2],
                                  self.order(gates), height, self.name(kind, d))

    def name(self, kind: str, d: int) -> str:
        """A matrix's name as the report and WeightPolicy.chosen give it (CellWeights.named)."""
        return f"{self.node.source}/q{kind}{d}"

    def order(self, gates: int) -> np.ndarray:
        """Rows by unit group: each group's rows of every gate together (original row indices)."""
        hidden = self.node.attrs.hidden
        groups = unit_groups(hidden, self.policy.target.vec_lanes)
        return np.concatenate([np.arange(u0, u1) + gate * hidden for u0, u1 in groups for gate in range(gates)])


def _jointly(m: Matrices, d: int, weights: dict[str, QMatrix]) -> dict[str, QMatrix]:
    """W and R rounded again together against the step moments (passes/joint.py), where both are
    compressed activation-aware and R multiplies h_prev itself (not a GRU's r*h)."""
    steps = m.node.attrs.ranges.steps if m.node.attrs.ranges is not None else ()
    if "h" not in weights or d >= len(steps) or steps[d] is None:
        return weights
    chosen = [m.policy.compression_of(m.name(kind, d)) for kind in ("x", "h")]
    if any(c is None or not c.activation_aware for c in chosen):
        return weights
    a = m.node.attrs
    parts = (Part(np.asarray(a.W[d], np.float64), weights["x"], m.x_scale, m.pre_scale),
             Part(np.asarray(a.R[d], np.float64), weights["h"], m.h_scale, m.pre_scale))
    x, h = fit_jointly(parts, steps[d])
    return {**weights, "x": x, "h": h}


def _refitted(m: Matrices, d: int, weights: dict[str, QMatrix]) -> dict[str, QMatrix]:
    """The layer quantised again from its refitted float weights and biases (refit.py), where one
    of its matrices is at REFIT_BITS, calibration kept runs of this direction, the cell is ONNX's
    default and its codebooks do not already hold its weights (a model trained with shared
    weights). Compressing a matrix whose row groups hold at most 2**bits values each keeps
    exactly those values (compress.codebook), so the refitted entries are what the chip stores."""
    a = m.node.attrs
    runs = a.ranges.runs[d] if a.ranges is not None and d < len(a.ranges.runs) else ()
    chosen = {kind: m.policy.compression_of(m.name(kind, d)) for kind in weights}
    compressed = [c for c in chosen.values() if c is not None]
    if not (runs and _default_cell(m.node.op, a, d) and any(c.bits == REFIT_BITS and c.refit for c in compressed)
            and all(c.activation_aware and not c.prune for c in compressed)):
        return weights
    start = _layer(m, d, weights, chosen)
    if start.exact():
        return weights
    name = f"'{m.node.source}'" + (f" ({a.directions[d]})" if len(a.directions) > 1 else "")
    if runs[0].x.shape[1] < MIN_SAMPLES:
        m.policy.log(f"{name}: not refitted through time: calibration kept {runs[0].x.shape[1]} samples of it, "
                     f"at least {MIN_SAMPLES} needed (fewer would be learnt by heart; it keeps up to "
                     f"{RUN_SAMPLES}, and windows of their steps where whole sequences are too long to refit on)")
        return weights
    layer = refit(start, runs, m.policy.log, name, a.steps)
    bias = np.concatenate([layer.b, np.zeros_like(layer.b)])
    if layer.rbh is not None:
        bias[-len(layer.rbh):] = layer.rbh
    W, R, B = (np.array(v, np.float64) for v in (a.W, a.R, a.B))
    W[d], R[d], B[d] = layer.W, layer.R, bias
    node = m.node.with_attrs(W=W, R=R, B=B)
    gates = a.W.shape[1]
    return MATRICES[node.op](dataclasses.replace(m, node=node), d, B[d][:gates], B[d][gates:])


def _default_cell(op: str, a: RecurrentAttrs, d: int) -> bool:
    """ONNX's default activations, no clip, no peepholes, no coupled input and forget gates."""
    plain_lstm = getattr(a, "P", None) is None and not getattr(a, "input_forget", False)
    return a.activations[d] == DEFAULT_ACTIVATIONS[op] and a.clip is None and plain_lstm


def _layer(m: Matrices, d: int, weights: dict[str, QMatrix], chosen: dict) -> Layer:
    """Direction d as refit.py takes it: float matrices, the pre-activation bias (and a
    linear_before_reset GRU's candidate recurrent bias apart), the compressed matrices' entries."""
    a, op = m.node.attrs, m.node.op
    gates, hidden = a.W.shape[1], a.hidden
    wb, rb = (np.asarray(v, np.float64) for v in (a.B[d][:gates], a.B[d][gates:]))
    lbr = op == "gru" and a.linear_before_reset
    b = _input_bias(wb, rb, hidden, lbr)
    rows = {"x": np.arange(gates), "h": np.arange(gates), "zr": np.arange(2 * hidden),
            "hh": np.arange(2 * hidden, gates)}
    tied = {kind: Tied.of(q, rows[kind], m.x_scale if kind == "x" else m.h_scale, m.pre_scale)
            for kind, q in weights.items() if chosen[kind] is not None}
    return Layer(op, np.asarray(a.W[d], np.float64), np.asarray(a.R[d], np.float64), b,
                 rb[2 * hidden:] if lbr else None, tuple(t for k, t in tied.items() if k == "x"),
                 tuple(t for k, t in tied.items() if k != "x"), lbr)


def _plain(m: Matrices, d: int, wb, rb) -> dict:
    """LSTM and RNN: W with both biases, R on its own."""
    a = m.node.attrs
    return {"x": m.w(d, a.W[d], wb + rb), "h": m.r("h", d, a.R[d])}


def _gru(m: Matrices, d: int, wb, rb) -> dict:
    """With linear_before_reset R stays whole (its candidate rows carry Rb_h); without, the
    candidate rows multiply r*h, not h, so R splits into z/r rows and candidate rows."""
    a = m.node.attrs
    lbr, hidden = a.linear_before_reset, a.hidden
    cut = 2 * hidden
    x_bias = _input_bias(wb, rb, hidden, lbr)
    if lbr:
        return {"x": m.w(d, a.W[d], x_bias), "h": m.r("h", d, a.R[d], np.concatenate([np.zeros(cut), rb[cut:]]))}
    return {"x": m.w(d, a.W[d], x_bias), "zr": m.r("zr", d, a.R[d][:cut], gates=2),
            "hh": m.r("hh", d, a.R[d][cut:], gates=1)}


def _input_bias(wb: np.ndarray, rb: np.ndarray, hidden: int, linear_before_reset: bool) -> np.ndarray:
    """The bias W's rows add: both of ONNX's, but for the candidate of a GRU with
    linear_before_reset, whose recurrent bias r multiplies (R's rows carry it)."""
    return wb + (np.concatenate([rb[:2 * hidden], np.zeros(hidden)]) if linear_before_reset else rb)


MATRICES = {"lstm": _plain, "gru": _gru, "rnn": _plain}

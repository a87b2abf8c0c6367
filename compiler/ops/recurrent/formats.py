"""The fixed-point formats of the recurrent cells, decided once by quantisation from calibration.

A table activation (sigmoid, tanh, ...) reads Q3.12 and writes Q0.15; Relu keeps its input's
format. Every other value of a cell has a *natural* format -- gate pre-activations and the LSTM
cell state Q3.12, the hidden state what its activations write -- which it keeps while calibration
shows it within that format's range. A value that goes beyond (an LSTM cell state of 400 on real
speech, an initial state of 3 given as an input, a Relu's output) gets the finest format that holds
HEADROOM times its calibrated range instead; tables then read it shifted into Q3.12 (VACT's `up`,
saturating there, where the functions are flat). Formats are powers of two, so every product in
a cell is one shift; those shifts are properties of the record below, so the lowering (cells.py)
and the golden reference (integer_cells.py) read the same numbers. docs/numerics.md gives the
integer recipe of each cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from compiler.ir import Node
from compiler.passes.weights import HEADROOM
from isa.numerics import ACT_MAX, GATE_FRAC, UNIT_FRAC, quantize_multiplier

MIN_FRAC = 0  # the coarsest format a state takes: integers, range +-32768


@dataclass(frozen=True)
class Run:
    """One direction's steps over the first calibration samples, in the order the direction takes
    them: whole sequences, or a window of each sample's steps (float_cells.run_shape says how many
    samples and steps): the inputs x [steps, samples, I], the float states before the first step,
    and the float layer's new h of every step [steps, samples, H] (ops/recurrent/refit.py fits
    against them)."""

    x: np.ndarray
    h0: np.ndarray
    c0: np.ndarray
    h: np.ndarray


@dataclass(frozen=True)
class StateRanges:
    """What calibration saw inside a recurrent layer: the largest |h| (initial state included),
    |c| (an LSTM's, initial state included), and the largest output of a Relu gate activation and
    of a Relu candidate activation (0 without one); and per direction the step moments E[z zᵀ],
    z = [x_t, h_prev], that compression fits W and R together with (passes/joint.py; None
    for a direction that ran no step), and the runs of up to 256 samples that refit.py fits a 2-bit
    layer's codebooks and biases against. The moments and runs take no part in comparisons: the
    formats follow from the ranges alone."""

    h: float = 0.0
    c: float = 0.0
    gate: float = 0.0
    candidate: float = 0.0
    steps: tuple[np.ndarray | None, ...] = field(default=(), compare=False, repr=False)
    runs: tuple[tuple[Run, ...], ...] = field(default=(), compare=False, repr=False)

    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.h, self.c, self.gate, self.candidate))


def state_frac(natural: int, max_abs: float) -> int:
    """Fraction bits of a value that calibration saw reach `max_abs`: its natural format while that
    holds it, else the finest that holds HEADROOM times it (never below MIN_FRAC)."""
    if holds(natural, max_abs):
        return natural
    return max(MIN_FRAC, min(natural, math.floor(UNIT_FRAC - math.log2(HEADROOM * max_abs))))


def holds(frac: int, max_abs: float) -> bool:
    """Whether a format with `frac` fraction bits holds a value of magnitude `max_abs` (to within
    rounding: 1.0 in Q0.15 is its largest value)."""
    return max_abs * (1 << frac) <= ACT_MAX + 1


def one(frac: int) -> int:
    """1.0 in a format with `frac` fraction bits, as close as 16 bits allow."""
    return min(1 << frac, ACT_MAX)


def rescaling(frm: int, to: int) -> tuple[int, int] | None:
    """VSCALE's (mult, shift) from `frm` to `to` fraction bits; None when they are the same."""
    return None if frm == to else quantize_multiplier(2.0 ** (to - frm))


@dataclass(frozen=True)
class CellFormats:
    """Fraction bits of one direction's values, and the shift of each product in its cell.

    `pre` is the gate pre-activations' (Q3.12, or a Relu's calibrated format), `gate` the gate
    activation's output (LSTM i, f, o; GRU z, r), `candidate` the candidate's (LSTM g, GRU h~),
    `cell` the LSTM's cell state, `cell_act` its activation's output, `hidden` the hidden state."""

    gate: int
    candidate: int
    cell_act: int
    hidden: int
    pre: int = GATE_FRAC
    cell: int = GATE_FRAC

    @property
    def one(self) -> int:
        """1.0 in the gate's format: 1 - i (input_forget) and 1 - z (GRU)."""
        return one(self.gate)

    @property
    def gate_shift(self) -> int:
        """gate * x stays in x's format: f*c, r*h, z*h, r*(R h)."""
        return self.gate

    @property
    def input_shift(self) -> int:
        """i * g lands in the cell state's format."""
        return self.gate + self.candidate - self.cell

    @property
    def candidate_shift(self) -> int:
        """(1 - z) * h~ lands in the hidden state's format."""
        return self.gate + self.candidate - self.hidden

    @property
    def hidden_shift(self) -> int:
        """o * h(c) lands in the hidden state's format."""
        return self.gate + self.cell_act - self.hidden

    @property
    def peephole_shift(self) -> int:
        """p * c: a Q3.12 peephole weight and the cell state, added to a pre-activation."""
        return GATE_FRAC + self.cell - self.pre


def act_frac(spec: str, relu_frac: int) -> int:
    """Fraction bits of an activation's output: tables write Q0.15, Relu keeps its input's."""
    return relu_frac if spec == "relu" else UNIT_FRAC


def cell_formats(node: Node) -> tuple[CellFormats, ...]:
    """Each direction's formats; pre-activations, cell and hidden state have one format per layer
    (Y holds every direction at one scale)."""
    pre, cell, hidden = pre_frac(node), cell_frac(node), hidden_frac(node)
    return tuple(_direction(node.op, specs, pre, cell, hidden) for specs in node.attrs.activations)


def _direction(op: str, specs: tuple[str, ...], pre: int, cell: int, hidden: int) -> CellFormats:
    gate = act_frac(specs[0], pre)
    if op == "rnn":
        return CellFormats(gate, gate, gate, hidden, pre, cell)
    candidate = act_frac(specs[1], pre)
    cell_act = act_frac(specs[2], cell) if op == "lstm" else candidate
    return CellFormats(gate, candidate, cell_act, hidden, pre, cell)


def _ranges(node: Node) -> StateRanges:
    return node.attrs.ranges or StateRanges()


def _relu_at(node: Node, position: int) -> bool:
    return any(len(specs) > position and specs[position] == "relu" for specs in node.attrs.activations)


def pre_frac(node: Node) -> int:
    """Gate pre-activations: Q3.12, unless a Relu reads them and calibration saw its output beyond
    (an RNN's Relu output is its hidden state, initial state included)."""
    r, fracs = _ranges(node), [GATE_FRAC]
    if _relu_at(node, 0):
        fracs.append(state_frac(GATE_FRAC, max(r.gate, r.h if node.op == "rnn" else 0.0)))
    if node.op != "rnn" and _relu_at(node, 1):
        fracs.append(state_frac(GATE_FRAC, r.candidate))
    return min(fracs)


def cell_frac(node: Node) -> int:
    """An LSTM's cell state: Q3.12 while calibration keeps it within +-8, else calibrated; never
    finer than i*g can land in without a left shift."""
    if node.op != "lstm":
        return GATE_FRAC
    pre = pre_frac(node)
    narrowest = min(act_frac(specs[0], pre) + act_frac(specs[1], pre) for specs in node.attrs.activations)
    return min(state_frac(GATE_FRAC, _ranges(node).c), narrowest)


def hidden_frac(node: Node) -> int:
    """The hidden state's format, one for all directions of the layer: what its activations
    write, or coarser where calibration saw it beyond (an initial state given as an input)."""
    pre, cell = pre_frac(node), cell_frac(node)
    natural = min(_natural_hidden(node.op, specs, pre, cell) for specs in node.attrs.activations)
    return state_frac(natural, _ranges(node).h)


def _natural_hidden(op: str, specs: tuple[str, ...], pre: int, cell: int) -> int:
    gate = act_frac(specs[0], pre)
    if op == "lstm":  # h = o * h(c)
        return min(gate, act_frac(specs[2], cell))
    if op == "gru":  # h mixes h~ = g(...)
        return min(act_frac(specs[1], pre), gate + act_frac(specs[1], pre))
    return gate  # rnn: h = f(...)


def format_name(frac: int) -> str:
    """Q<integer bits>.<fraction bits> of a 16-bit format: Q3.12, Q0.15, Q9.6."""
    return f"Q{UNIT_FRAC - frac}.{frac}"


def layer_states(node: Node) -> dict[str, dict]:
    """The layer's states with their formats and what calibration saw of them (the report's
    `states`, and what the compiler warns about)."""
    r = _ranges(node)
    states = {"h": (hidden_frac(node), r.h)}
    if node.op == "lstm":
        states["c"] = (cell_frac(node), r.c)
    return {name: {"format": format_name(frac), "scale": 2.0 ** -frac, "calibrated_max": round(seen, 6),
                   "holds": holds(frac, seen)} for name, (frac, seen) in states.items()}

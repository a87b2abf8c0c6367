"""The fixed-point formats of the recurrent cells, decided once by quantisation.

Gate pre-activations and the cell state are Q3.12. A table activation (sigmoid, tanh, ...) writes
Q0.15, Relu keeps Q3.12, so the hidden state's format follows the activations: Q0.15 when it is a
product or output of table functions only, Q3.12 otherwise. Every product in a cell is shifted
back by the fraction bits it gains; those shifts are properties of the record below, so the
lowering (cells.py) and the golden reference (ops/recurrent/integer_cells.py) read the same
numbers instead of each deriving them. docs/numerics.md gives the integer recipe of each cell.
"""

from __future__ import annotations

from dataclasses import dataclass

from compiler.ir import Node
from isa.errors import RnnaccelError
from isa.numerics import ACT_MAX, GATE_FRAC, UNIT_FRAC


def act_frac(spec: str) -> int:
    """Fraction bits of an activation's output: tables write Q0.15, Relu keeps Q3.12."""
    return GATE_FRAC if spec == "relu" else UNIT_FRAC


def one(frac: int) -> int:
    """1.0 in a format with `frac` fraction bits, as close as 16 bits allow."""
    return min(1 << frac, ACT_MAX)


@dataclass(frozen=True)
class CellFormats:
    """Fraction bits of one direction's values, and the shift of each product in its cell.

    `gate` is the gate activation's output (LSTM i, f, o; GRU z, r), `candidate` the candidate's
    (LSTM g, GRU h~), `cell_act` the LSTM's activation of c, `hidden` the hidden state; gate
    pre-activations and the cell state are `pre` (Q3.12)."""

    gate: int
    candidate: int
    cell_act: int
    hidden: int
    pre: int = GATE_FRAC

    @property
    def one(self) -> int:
        """1.0 in the gate's format: 1 - i (input_forget) and 1 - z (GRU)."""
        return one(self.gate)

    @property
    def gate_shift(self) -> int:
        """gate * x stays in x's format: f*c, r*h, z*h, (1 - z)*h~."""
        return self.gate

    @property
    def input_shift(self) -> int:
        """i * g lands in the cell state's format."""
        return self.gate + self.candidate - self.pre

    @property
    def hidden_shift(self) -> int:
        """o * h(c) lands in the hidden state's format."""
        return self.gate + self.cell_act - self.hidden

    @property
    def peephole_shift(self) -> int:
        """p * c: a peephole weight and the cell state, both Q3.12, added to a pre-activation."""
        return self.pre


def cell_formats(node: Node) -> tuple[CellFormats, ...]:
    """Each direction's formats; the hidden state has one format for all directions of a layer."""
    hidden = hidden_frac(node)
    return tuple(_direction_formats(specs, hidden) for specs in node.attrs.activations)


def _direction_formats(specs: tuple[str, ...], hidden: int) -> CellFormats:
    fracs = [act_frac(spec) for spec in specs]  # LSTM f, g, h; GRU f, g; RNN f
    gate, candidate, cell_act = fracs[0], fracs[min(1, len(fracs) - 1)], fracs[-1]
    return CellFormats(gate, candidate, cell_act, hidden)


def hidden_frac(node: Node) -> int:
    """The hidden state's fraction bits, one format for all directions of the layer."""
    fracs = {_direction_hidden_frac(node.op, specs) for specs in node.attrs.activations}
    if node.op == "gru" and len(fracs) > 1:
        raise RnnaccelError(f"{node.source}: GRU directions whose candidate activations differ in range")
    return min(fracs)


def _direction_hidden_frac(op: str, specs: tuple[str, ...]) -> int:
    if op == "lstm":  # h = o * h(c)
        return min(act_frac(specs[0]), act_frac(specs[2]))
    return act_frac(specs[-1])  # gru: h mixes h~ = g(...); rnn: h = f(...)

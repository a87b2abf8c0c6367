"""Lowering of one LSTM layer (forward direction), step by step and batch element by element.

Formats (docs/numerics.md): gate pre-activations and the cell state are Q3.12, gate outputs
and the hidden state Q0.15. h_t goes straight into its slot of Y when Y is used, so the next
step reads it there; otherwise two buffers alternate.
"""

from __future__ import annotations

from dataclasses import dataclass

from compiler.ir import Node
from compiler.kernel import Ref, Where
from compiler.passes.lowering import Lowering, MatrixRefs
from compiler.passes.quantize import SHIFT_F_C, SHIFT_I_G, SHIFT_O_TC

SCRATCH = {"gx": 4, "gates": 4, "sig": 3, "g": 1, "fc": 1, "ig": 1, "tc": 1}  # in units of hidden


@dataclass(frozen=True)
class LstmPlan:
    """Where every vector of the layer lives, by step and batch element."""

    hidden: int
    inputs: int
    steps: int
    batch: int
    layout: int
    x: Ref
    h0: Ref | None
    c0: Ref | None
    y: Ref | None
    y_h: Ref | None
    cell: Ref
    spare: tuple[Ref, ...]

    def slot(self, t: int, b: int, length: int) -> int:
        """Offset of the (t, b) vector in a sequence laid out [T, N, ...] or [N, T, ...]."""
        return (t * self.batch + b if self.layout == 0 else b * self.steps + t) * length

    def x_at(self, t: int, b: int) -> Ref:
        return self.x + self.slot(t, b, self.inputs)

    def h_at(self, t: int, b: int) -> Ref:
        if self.y is not None:
            return self.y + self.slot(t, b, self.hidden)
        if t == self.steps - 1 and self.y_h is not None:
            return self.y_h + b * self.hidden
        return self.spare[t % 2] + b * self.hidden

    def h_prev(self, t: int, b: int) -> Ref | None:
        if t > 0:
            return self.h_at(t - 1, b)
        return None if self.h0 is None else self.h0 + b * self.hidden

    def c_prev(self, t: int, b: int) -> Ref | None:
        if t > 0:
            return self.cell + b * self.hidden
        return None if self.c0 is None else self.c0 + b * self.hidden


def lower_lstm(ctx: Lowering, node: Node, where: Where) -> None:
    plan = _plan(ctx, node)
    mx, mh = ctx.matrix(node, "qx"), ctx.matrix(node, "qh")
    acc_x = ctx.buffer(f"{node.source}/acc_x", "acc", 4 * plan.hidden)
    acc_h = ctx.buffer(f"{node.source}/acc_h", "acc", 4 * plan.hidden)
    scratch = {k: ctx.buffer(f"{node.source}/{k}", "amem", n * plan.hidden) for k, n in SCRATCH.items()}
    for t in range(plan.steps):
        for b in range(plan.batch):
            step = Where(where.node, where.layer, t)
            _gates(ctx, mx, mh, plan.x_at(t, b), plan.h_prev(t, b), acc_x, acc_h, scratch, step)
            _cell(ctx, scratch, plan.hidden, plan.c_prev(t, b), plan.cell + b * plan.hidden, plan.h_at(t, b), step)
    if plan.y is not None and plan.y_h is not None:
        for b in range(plan.batch):
            ctx.emit("VMOV", Where(where.node, where.layer, plan.steps - 1, what="Y_h"),
                     dst=plan.y_h + b * plan.hidden, src=plan.h_at(plan.steps - 1, b), n=plan.hidden)


def _plan(ctx: Lowering, node: Node) -> LstmPlan:
    a = node.attrs
    hidden, batch = a["hidden"], a["batch"]
    y, y_h, y_c = (ctx.place(n) if ctx.graph.is_used(n) else None for n in node.outputs)
    h0, c0 = (ctx.places[n] if n else None for n in node.inputs[1:3])
    cell = y_c if y_c is not None else ctx.buffer(f"{node.source}/c", "amem", batch * hidden)
    spare = () if y is not None else tuple(ctx.buffer(f"{node.source}/h{i}", "amem", batch * hidden) for i in (0, 1))
    return LstmPlan(hidden, a["W"].shape[1], a["steps"], batch, a["layout"], ctx.places[node.inputs[0]],
                    h0, c0, y, y_h, cell, spare)


def _gates(ctx: Lowering, mx: MatrixRefs, mh: MatrixRefs, x: Ref, h_prev: Ref | None, acc_x: Ref, acc_h: Ref,
           scratch: dict[str, Ref], where: Where) -> None:
    """gates = requantise(b + W x) [+ requantise(R h)], in Q3.12."""
    rows = mx.q.rows
    ctx.matvec(mx, x, acc_x, _what(where, "Wx"))
    if h_prev is None:
        ctx.emit("VRQ", _what(where, "gates"), dst=scratch["gates"], src=acc_x, n=rows, q=mx.params)
        return
    ctx.emit("VRQ", _what(where, "Wx"), dst=scratch["gx"], src=acc_x, n=rows, q=mx.params)
    ctx.matvec(mh, h_prev, acc_h, _what(where, "Rh"))
    ctx.emit("VRQA", _what(where, "gates"), dst=scratch["gates"], src=acc_h, n=rows, q=mh.params, add=scratch["gx"])


def _cell(ctx: Lowering, s: dict[str, Ref], hidden: int, c_prev: Ref | None, c_new: Ref, h_new: Ref,
          where: Where) -> None:
    """i, o, f = sigmoid; g = tanh; c = f*c + i*g; h = o * tanh(c)."""
    w = _what(where, "cell")
    ctx.emit_elementwise("VACT", w, 3 * hidden, dst=s["sig"], src=s["gates"], func="sigmoid")
    ctx.emit_elementwise("VACT", w, hidden, dst=s["g"], src=s["gates"] + 3 * hidden, func="tanh")
    i, o, f = (s["sig"] + k * hidden for k in range(3))
    if c_prev is None:
        ctx.emit_elementwise("VMUL", w, hidden, dst=c_new, a=i, b=s["g"], shift=SHIFT_I_G)
    else:
        ctx.emit_elementwise("VMUL", w, hidden, dst=s["fc"], a=f, b=c_prev, shift=SHIFT_F_C)
        ctx.emit_elementwise("VMUL", w, hidden, dst=s["ig"], a=i, b=s["g"], shift=SHIFT_I_G)
        ctx.emit_elementwise("VADD", w, hidden, dst=c_new, a=s["fc"], b=s["ig"])
    ctx.emit_elementwise("VACT", w, hidden, dst=s["tc"], src=c_new, func="tanh")
    ctx.emit_elementwise("VMUL", _what(where, "hidden"), hidden, dst=h_new, a=o, b=s["tc"], shift=SHIFT_O_TC)


def _what(where: Where, what: str) -> Where:
    return Where(where.node, where.layer, where.step, where.tile, what)

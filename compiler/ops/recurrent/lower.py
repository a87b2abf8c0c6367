"""Lowering of a recurrent layer (LSTM, GRU, RNN): directions, batch, sequence lengths, states.

Steps are emitted in waves: wave k runs step k of every direction and batch element (a reverse
direction counts down from its sequence's last step), so independent work sits side by side for
the scoreboard to overlap. Each wave is one range of ops; the layer's waves are recorded as a
loop candidate (Lowering.loop_candidate), which passes/reroll.py folds into a LOOP where they
repeat, after the layer's lowering is done. A layer whose middle waves are alike by construction
(every sequence runs every step, whole sequences) is lowered at its first HEAD and last TAIL waves
only, and reroll folds as if the middle were there: the lowering's work does not grow with the
steps, and the program is the one lowering every wave gives. h_t goes straight into its slot of
Y when Y is used, so the next step reads it there; otherwise two buffers alternate. Steps past a
sequence's length write zeros to Y. cells.py emits one step of each kind of cell.

A streaming layer (passes/streaming.py) runs one step per invocation from state buffers that
persist between invocations: it reads h and c there, updates c in place and copies the new h
back at the end (in place would let one unit group overwrite h while another still reads it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from compiler.ir import Node
from compiler.kernel import Ref, StateTensor, Where
from compiler.ops.recurrent.cells import CELLS, StepRefs, cell_scratch, chunked, recurrent_matrix
from compiler.ops.recurrent.records import QuantRecurrentAttrs
from compiler.passes.lowering import Lowering
from compiler.passes.matrices import place_matrix
from compiler.passes.reroll import MAX_BODY, MAX_TRIPS, PERIODS, Waves

ALIKE_FROM = 3  # the first waves may differ: no state yet, or Y keeps a step near the start
HEAD = 10  # waves lowered before the alike middle: ALIKE_FROM, then two pairs of periods of two and one more
TAIL = 4  # and after it: the last wave, which may differ, and enough for a pair of periods of two before it


@dataclass
class Plan:
    """Where every vector of the layer lives."""

    node: Node
    x: Ref
    h0: Ref | None
    c0: Ref | None
    y: Ref | None
    y_h: Ref | None
    y_c: Ref | None
    spare: dict[int, tuple[Ref, Ref]] = field(default_factory=dict)
    cells: dict[int, Ref] = field(default_factory=dict)
    state: dict[int, tuple[Ref, Ref | None]] = field(default_factory=dict)  # streaming: (h, c) per direction

    @property
    def a(self) -> QuantRecurrentAttrs:
        return self.node.attrs

    def x_at(self, t: int, b: int) -> Ref:
        a = self.a
        return self.x + (t * a.batch + b if a.layout == 0 else b * a.steps + t) * a.inputs

    def kept(self, t: int) -> int | None:
        """Step t's position in Y, or None when Y does not keep it (passes/trim.py)."""
        steps = self.a.y_steps
        if steps is None:
            return t
        return steps.index(t) if t in steps else None

    def y_at(self, t: int, d: int, b: int) -> Ref:
        a, dirs, k = self.a, len(self.a.directions), self.kept(t)
        length = a.steps if a.y_steps is None else len(a.y_steps)
        slot = (k * dirs + d) * a.batch + b if a.layout == 0 else (b * length + k) * dirs + d
        return self.y + slot * a.hidden

    def state_offset(self, d: int, b: int) -> int:
        a, dirs = self.a, len(self.a.directions)
        return (d * a.batch + b if a.layout == 0 else b * dirs + d) * a.hidden

    def steps_of(self, d: int, b: int) -> list[int]:
        length = self.a.seq_lens[b]
        return list(range(length)) if self.a.directions[d] == "forward" else list(reversed(range(length)))

    def step_at(self, d: int, b: int, index: int) -> int:
        """The time step of the index-th processed step of (d, b)."""
        return index if self.a.directions[d] == "forward" else self.a.seq_lens[b] - 1 - index

    def h_dst(self, d: int, b: int, index: int) -> Ref:
        """Where the index-th processed step of (d, b) writes h."""
        t = self.step_at(d, b, index)
        if self.y is not None and self.kept(t) is not None:
            return self.y_at(t, d, b)
        if index == self.a.seq_lens[b] - 1 and self.y_h is not None:
            return self.y_h + self.state_offset(d, b)
        return self.spare[d][index % 2] + b * self.a.hidden

    def cell(self, d: int, b: int) -> Ref:
        if self.state:
            return self.state[d][1] + b * self.a.hidden
        if self.y_c is not None:
            return self.y_c + self.state_offset(d, b)
        return self.cells[d] + b * self.a.hidden


def lower_recurrent(ctx: Lowering, node: Node, where: Where) -> None:
    plan = _plan(ctx, node)
    a, hidden = node.attrs, node.attrs.hidden
    def zeros() -> Ref:  # made on first use: most layers never need it
        return ctx.constant(f"{node.source}/zeros", np.zeros(hidden, np.int64), Where(node.source, where.layer))

    steps = [_direction_steps(ctx, plan, d, where, zeros) for d in range(len(a.directions))]
    layer = Where(node.source, where.layer)
    head = HEAD + (a.steps - HEAD - TAIL) % 2
    if not _alike(plan) or a.steps < head + TAIL + 2:
        ctx.loop_candidate([_wave(ctx, steps, wave) for wave in range(a.steps)], layer)
    else:
        waves = [_wave(ctx, steps, wave) for wave in range(head)]
        gap = (head, a.steps - head - TAIL)
        if not _middle_folds(ctx, waves):
            waves += [_wave(ctx, steps, wave) for wave in range(head, a.steps - TAIL)]
            gap = (0, 0)
        waves += [_wave(ctx, steps, wave) for wave in range(a.steps - TAIL, a.steps)]
        ctx.loop_candidate(waves, layer, gap)
    for d in range(len(a.directions)):
        for b in range(a.batch):
            _finish(ctx, plan, d, b, zeros, where)


def _alike(plan: Plan) -> bool:
    """Whether every wave from ALIKE_FROM to the one before the last is a shifted copy of its
    neighbours, by construction: every sequence runs all steps, the layer runs whole sequences
    (not one step per invocation) short enough for one LOOP, and Y keeps every step or only steps
    whose waves (the wave that writes the step and the next, which reads it) are among the first
    ALIKE_FROM or the last."""
    a = plan.a
    if a.stream or a.steps > MAX_TRIPS or any(length != a.steps for length in a.seq_lens):
        return False
    if a.y_steps is None or plan.y is None:
        return True
    waves = {plan.step_at(d, 0, t) for d in range(len(a.directions)) for t in a.y_steps}
    return all(index + 1 < ALIKE_FROM or index == a.steps - 1 for index in waves)


def _middle_folds(ctx: Lowering, waves: list[tuple[int, int]]) -> bool:
    """Whether the first alike waves repeat with a period reroll folds: then the waves of the
    middle, alike by construction (_alike), need not be lowered for reroll to fold them."""
    view = Waves(ctx.ops, waves, (0, 0))
    return any(view.deltas(ALIKE_FROM, period) is not None and view.length(ALIKE_FROM, period) <= MAX_BODY
               and all(view.deltas(first, period) == view.deltas(first + period, period)
                       for first in (ALIKE_FROM, ALIKE_FROM + 1))
               for period in PERIODS)


def _wave(ctx: Lowering, steps: list[Callable[[int], None]], wave: int) -> tuple[int, int]:
    """Emit wave `wave`: that step of every direction and batch element; the op range it fills."""
    start = len(ctx.ops)
    for emit_direction in steps:
        emit_direction(wave)
    return start, len(ctx.ops)


def _plan(ctx: Lowering, node: Node) -> Plan:
    a, hidden = node.attrs, node.attrs.hidden
    outs = [ctx.place(n) if ctx.graph.is_used(n) else None for n in node.outputs]
    outs += [None] * (3 - len(outs))
    states = [ctx.places[n] if n else None for n in node.inputs[1:]] + [None]
    plan = Plan(node, ctx.places[node.inputs[0]], states[0], states[1], *outs)
    for d in range(len(a.directions)):
        if plan.y is None or a.y_steps is not None:
            plan.spare[d] = tuple(ctx.buffer(f"{node.source}/d{d}/h{i}", "amem", a.batch * hidden) for i in (0, 1))
        if a.stream:
            plan.state[d] = (_state_buffer(ctx, node, d, "h"),
                             _state_buffer(ctx, node, d, "c") if node.op == "lstm" else None)
        elif node.op == "lstm" and plan.y_c is None:
            plan.cells[d] = ctx.buffer(f"{node.source}/d{d}/c", "amem", a.batch * hidden)
    return plan


def _state_buffer(ctx: Lowering, node: Node, d: int, which: str) -> Ref:
    """A streaming layer's h or c for every batch element: kept between runs."""
    a = node.attrs
    frac = a.formats[d].cell if which == "c" else a.formats[d].hidden
    name = f"state:{node.source}/d{d}/{which}"
    return ctx.state_buffer(name, StateTensor(name, (a.batch, a.hidden), 2.0 ** -frac, Ref(name)))


def _direction_steps(ctx: Lowering, plan: Plan, d: int, where: Where,
                     zeros: Callable[[], Ref]) -> Callable[[int], None]:
    """The emitter of direction d's steps of one wave, every batch element's in turn."""
    node, a = plan.node, plan.a
    prefix = f"{node.source}/d{d}"
    mats = {key: place_matrix(ctx, q, node.source, f"{key}{d}") for key, q in a.cells[d].named().items()}
    gates = mats["qx"].q.rows
    acc_x = ctx.buffer(f"{prefix}/acc_x", "acc", gates)
    alternate = chunked(ctx, a, recurrent_matrix(mats))
    acc_h = [ctx.buffer(f"{prefix}/acc_h{i}", "acc", gates) for i in range(2 if alternate else 1)]
    scratch = cell_scratch(ctx, node.op, prefix, a.hidden)
    consts = _constants(ctx, plan, d, Where(node.source, where.layer))
    initial = [_initial(plan, d, b, zeros) for b in range(a.batch)]

    def emit_wave(index: int) -> None:
        for b in range(a.batch):
            if index >= a.seq_lens[b]:
                continue
            t, c_new = plan.step_at(d, b, index), plan.cell(d, b) if node.op == "lstm" else None
            h_prev, c_prev = initial[b] if index == 0 else (plan.h_dst(d, b, index - 1), c_new)
            accs = {"x": acc_x, "h": acc_h[index % len(acc_h)]}
            refs = StepRefs(plan.x_at(t, b), h_prev, c_prev, plan.h_dst(d, b, index), c_new, mats, accs, scratch,
                            consts)
            CELLS[node.op](ctx, a, d, refs, Where(node.source, where.layer, t, -1, _direction_label(a, d)))
    return emit_wave


def _initial(plan: Plan, d: int, b: int, zeros: Callable[[], Ref]) -> tuple[Ref | None, Ref | None]:
    """The state a sequence starts from. An LSTM skips work on absent state; GRU and RNN read zeros."""
    if plan.state:
        h, c = plan.state[d]
        return h + b * plan.a.hidden, c + b * plan.a.hidden if c is not None else None
    offset = plan.state_offset(d, b)
    h0 = plan.h0 + offset if plan.h0 is not None else None
    c0 = plan.c0 + offset if plan.c0 is not None else None
    if plan.node.op != "lstm" and h0 is None:
        h0 = zeros()
    return h0, c0


def _constants(ctx: Lowering, plan: Plan, d: int, where: Where) -> dict[str, Ref]:
    """Peepholes and the 1.0 of input_forget, loaded once into activation memory."""
    a, name = plan.a, f"{plan.node.source}/d{d}"
    consts = {}
    peephole = a.cells[d].peephole
    if peephole is not None:
        consts["P"] = ctx.constant(f"{name}/P", peephole, where)
    if getattr(a, "input_forget", False) or plan.node.op == "gru":  # f = 1 - i;  h = (1 - z) h~ + z h
        consts["one"] = ctx.constant(f"{name}/one", np.full(a.hidden, a.formats[d].one), where)
    return consts


def _direction_label(a: QuantRecurrentAttrs, d: int) -> str:
    return "" if a.directions == ("forward",) else ("fwd " if a.directions[d] == "forward" else "rev ")


def _finish(ctx: Lowering, plan: Plan, d: int, b: int, zeros: Callable[[], Ref], where: Where) -> None:
    """Zeros in Y past the sequence's end; Y_h and Y_c where the last step did not put them (zeros
    for an empty sequence, as ONNX Runtime gives them)."""
    a, hidden = plan.a, plan.a.hidden
    label = Where(plan.node.source, where.layer, what=_direction_label(a, d) + "finish")
    steps = plan.steps_of(d, b)
    if plan.y is not None:
        for t in range(a.seq_lens[b], a.steps):
            if plan.kept(t) is not None:
                ctx.emit("VMOV", label, dst=plan.y_at(t, d, b), src=zeros(), n=hidden)
    offset = plan.state_offset(d, b)
    if plan.y_h is not None:
        last = plan.h_dst(d, b, len(steps) - 1) if steps else zeros()
        if last != plan.y_h + offset:
            ctx.emit("VMOV", label, dst=plan.y_h + offset, src=last, n=hidden)
    if plan.state:
        ctx.emit("VMOV", label, dst=plan.state[d][0] + b * hidden, src=plan.h_dst(d, b, len(steps) - 1), n=hidden)
        if plan.y_c is not None:
            ctx.emit("VMOV", label, dst=plan.y_c + offset, src=plan.cell(d, b), n=hidden)
    elif plan.y_c is not None and not steps:
        ctx.emit("VMOV", label, dst=plan.y_c + offset, src=zeros(), n=hidden)

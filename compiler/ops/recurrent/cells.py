"""One step of each recurrent cell as machine ops: the chip's side of ops/recurrent/integer_cells.py.

Gate pre-activations are Q3.12; see docs/numerics.md for each cell's integer recipe, which
these instruction sequences compute exactly (tests compare them bit for bit).

The vector work runs per unit group (tile.unit_groups): the gate rows of a group are stored
together, group by group ([i o f c] of units u0..u1 for an LSTM), so the vector unit finishes a
group's new state as soon as the MAC tile holding its rows is done, while the array goes on with
the next tile. Vectors indexed by hidden unit (c, h, peepholes) are sliced at [u0, u1). Each
group's work is emitted as one contiguous stream; the groups finished by the same tile are
recorded (Lowering.side_by_side) for passes/interleave.py to interleave later.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from compiler.kernel import Ref, Where
from compiler.ops.recurrent.formats import rescaling
from compiler.ops.recurrent.records import QuantRecurrentAttrs, StepSchedule
from compiler.passes.lowering import Lowering
from compiler.passes.matrices import MatrixRefs, matvec, requantize
from compiler.passes.tile import best_split, unit_groups
from isa.numerics import GATE_FRAC, UNIT_FRAC
from isa.target import Target

LATE_ROUND = 6  # cycles of one interleaving round of a batch's streams, about (measured: bench/schedule.py)

# scratch vectors per cell kind, in units of hidden
SCRATCH = {
    "lstm": {"gx": 4, "pre": 4, "act": 4, "t": 1, "fc": 1, "ig": 1, "tc": 1},
    "gru": {"gx": 3, "pre": 2, "act": 2, "cand": 1, "t": 1, "hh": 1, "d": 1, "rh": 1},
    "rnn": {"gx": 1, "pre": 1},
}


@dataclass(frozen=True)
class StepRefs:
    """Everything one step reads and writes."""

    x: Ref
    h_prev: Ref | None  # None: an LSTM's first step without initial_h (R h is skipped)
    c_prev: Ref | None
    h_new: Ref
    c_new: Ref | None
    mats: dict[str, MatrixRefs]
    accs: dict[str, Ref]
    s: dict[str, Ref]
    consts: dict[str, Ref]


def cell_scratch(ctx: Lowering, op: str, prefix: str, hidden: int) -> dict[str, Ref]:
    return {k: ctx.buffer(f"{prefix}/{k}", "amem", n * hidden) for k, n in SCRATCH[op].items()}


def _at(where: Where, what: str) -> Where:
    return Where(where.node, where.layer, where.step, where.tile, where.what + what)


def _clamp(ctx: Lowering, a: QuantRecurrentAttrs, where: Where, n: int, ref: Ref) -> None:
    if a.clip_q is not None:
        ctx.emit_elementwise("VCLAMP", where, n, dst=ref, src=ref, lo=-a.clip_q, hi=a.clip_q)


def _activate(ctx: Lowering, spec: str, where: Where, n: int, dst: Ref, src: Ref, frm: int,
              to: int = UNIT_FRAC) -> None:
    """An activation of a value with `frm` fraction bits (integer_cells._act): a table reads it
    shifted into Q3.12 (VACT's `up`, free) and its output is rescaled into `to` where that is not
    Q0.15; Relu keeps the format."""
    if spec == "relu":
        ctx.activation(spec, where, n, dst, src)
        return
    ctx.activation(spec, where, n, dst, src, up=GATE_FRAC - frm)
    pair = rescaling(UNIT_FRAC, to)
    if pair is not None:
        ctx.emit_elementwise("VSCALE", where, n, dst=dst, src=dst, mult=pair[0], shift=pair[1])


def _groups(ctx: Lowering, a: QuantRecurrentAttrs) -> tuple[tuple[int, int], ...]:
    return unit_groups(a.hidden, ctx.target.vec_lanes)


def step_schedule(ctx: Lowering, a: QuantRecurrentAttrs, m: MatrixRefs) -> StepSchedule:
    """The layer's step schedule: the one tuning chose (passes/tune.py), or the rule of thumb."""
    return a.schedule if a.schedule is not None else default_schedule(a, ctx.target, len(m.tiles), bool(m.slots))


def default_schedule(a: QuantRecurrentAttrs, target: Target, tiles: int, compressed: bool) -> StepSchedule:
    """The rule of thumb, for R in `tiles` row tiles: R h in two column chunks, the halves of h's
    unit groups, on an array so wide that R has at most half as many row tiles as h has unit
    groups; there the next step's product starts on the first half of h while the vector unit
    still works on the second, and its accumulators alternate between steps, so it never waits
    for this step's reads either. On narrower arrays, and where the two directions of a
    bidirectional layer fill each other's waits, whole tiles measured faster (bench/schedule.py).
    Compressed matrices have no accumulating form."""
    groups = unit_groups(a.hidden, target.vec_lanes)
    halves = not compressed and len(a.directions) == 1 and 2 * tiles <= len(groups)
    return StepSchedule(cuts=(groups[(len(groups) + 1) // 2][0],) if halves else ())


def chunked(ctx: Lowering, a: QuantRecurrentAttrs, m: MatrixRefs) -> bool:
    """Whether R h runs in column chunks, which alternate their accumulators between steps."""
    return bool(step_schedule(ctx, a, m).cuts)


def recurrent_matrix(mats: dict[str, MatrixRefs]) -> MatrixRefs:
    """The matrix that multiplies h_prev: R, or a GRU's z and r rows without linear_before_reset
    (its candidate's rows multiply r*h, which exists only later in the step)."""
    return mats["qh"] if "qh" in mats else mats["qzr"]


def _recurrent_product(ctx: Lowering, a: QuantRecurrentAttrs, m: MatrixRefs, r: StepRefs, where: Where) -> None:
    bounds = (0, *step_schedule(ctx, a, m).cuts, a.hidden)
    chunks = tuple(itertools.pairwise(bounds)) if len(bounds) > 2 else None
    matvec(ctx, m, r.h_prev, r.accs["h"], _at(where, "Rh"), chunks)


def _products(ctx: Lowering, a: QuantRecurrentAttrs, r: StepRefs, qh: str, where: Where) -> None:
    """acc_x = b + W x, gx = requantise(acc_x), acc_h = R h (skipped without h): the MAC part."""
    matvec(ctx, r.mats["qx"], r.x, r.accs["x"], _at(where, "Wx"))
    if r.h_prev is not None:
        _input_gates(ctx, r, r.mats[qh], where)
        _recurrent_product(ctx, a, r.mats[qh], r, where)


def _input_gates(ctx: Lowering, r: StepRefs, rh: MatrixRefs, where: Where) -> None:
    """gx = requantise(acc_x), the rows of R's first tile first: the first unit groups' gates read
    them right after the recurrent product's wait, which the rest of the requantisation then fills
    (one instruction over all rows would make them wait for its end)."""
    mx = r.mats["qx"]
    cut = rh.tiles[0][1] if rh.q.rows == mx.q.rows else mx.q.rows
    for rows in ((0, cut), (cut, mx.q.rows))[:2 if cut < mx.q.rows else 1]:
        requantize(ctx, mx, _at(where, "Wx"), r.s["gx"] + rows[0], r.accs["x"] + rows[0], rows=rows)



def _group_gates(ctx: Lowering, r: StepRefs, qh: str, rows: tuple[int, int], where: Where) -> None:
    """pre[rows] = requantise(acc_h[rows]) + gx[rows], or requantise(acc_x[rows]) without h."""
    r0 = rows[0]
    if r.h_prev is None:
        requantize(ctx, r.mats["qx"], where, r.s["pre"] + r0, r.accs["x"] + r0, rows=rows)
    else:
        requantize(ctx, r.mats[qh], where, r.s["pre"] + r0, r.accs["h"] + r0, add=r.s["gx"] + r0, rows=rows)


def _per_group(ctx: Lowering, a: QuantRecurrentAttrs, r: StepRefs, tiles, rows_per_unit: int,
               emit: Callable[[int, int], None]) -> None:
    """Emit each unit group's vector work as its own stream; the groups whose rows complete in the
    same MAC tile are recorded side by side, for interleave to zip them one by one, so that the
    in-order vector unit always has an independent instruction to issue while another waits for
    its operand. A batch of fewer than the schedule's `chains` groups joins the next (the last,
    the one before), since fewer chains leave the vector unit waiting on its own latency; in a
    batch that spans tiles, a group of a later tile joins the interleaving `_late_rounds` later
    (where the schedule says `late`), so that the earlier groups' ops issue while its tile is
    still on the array. A schedule with an `order` puts all the groups in one batch in that order."""
    groups, schedule = _groups(ctx, a), step_schedule(ctx, a, recurrent_matrix(r.mats))
    def last_tile(group: tuple[int, int]) -> int:
        last = rows_per_unit * group[1] - 1
        return next(i for i, (r0, r1) in enumerate(tiles) if r0 <= last < r1)

    if schedule.order:
        ctx.side_by_side([lambda u0=u0, u1=u1: emit(u0, u1) for u0, u1 in groups], order=schedule.order)
        return
    batches = [list(batch) for _, batch in itertools.groupby(groups, key=last_tile)]
    late = _late_rounds(ctx, tiles, groups[-1][1]) if schedule.late else 0
    for batch in _joined(batches, schedule.chains):
        first = last_tile(batch[0])
        ctx.side_by_side([lambda u0=u0, u1=u1: emit(u0, u1) for u0, u1 in batch],
                         tuple(late * (last_tile(group) - first) for group in batch))


def _late_rounds(ctx: Lowering, tiles, hidden: int) -> int:
    """Rounds of interleaving a tile's groups wait per tile they come after: a round of the few
    streams of a batch takes about LATE_ROUND cycles; a tile's product over half the columns
    shorter than 2 * LATE_ROUND (a 256-lane array) measured best with none."""
    rows, cols = tiles[0][1] - tiles[0][0], -(-hidden // 2)
    split = best_split(rows, cols, ctx.target.macs)
    cycles = -(-cols // split) + split - 1
    return cycles // LATE_ROUND if cycles >= 2 * LATE_ROUND else 0


def _joined(batches: list[list], chains: int) -> list[list]:
    """Batches of at least `chains` groups where there are enough groups, in order."""
    out: list[list] = []
    for batch in batches:
        if out and len(out[-1]) < chains:
            out[-1] = out[-1] + batch
        else:
            out.append(batch)
    if len(out) > 1 and len(out[-1]) < chains:
        out[-2:] = [out[-2] + out[-1]]
    return out


def lstm_step(ctx: Lowering, a: QuantRecurrentAttrs, d: int, r: StepRefs, where: Where) -> None:
    _products(ctx, a, r, "qh", where)
    tiles = (r.mats["qh"] if r.h_prev is not None else r.mats["qx"]).tiles
    _per_group(ctx, a, r, tiles, 4, lambda u0, u1: _lstm_group(ctx, a, d, r, u0, u1, where))


def _lstm_group(ctx: Lowering, a: QuantRecurrentAttrs, d: int, r: StepRefs, u0: int, u1: int, where: Where) -> None:
    f_spec, g_spec, h_spec = a.activations[d]
    fmt, hidden, g, w = a.formats[d], a.hidden, u1 - u0, _at(where, "cell")
    _group_gates(ctx, r, "qh", (4 * u0, 4 * u1), _at(where, "gates"))
    i_pre, o_pre, f_pre, c_pre = (r.s["pre"] + 4 * u0 + k * g for k in range(4))
    i, o, f, c = (r.s["act"] + 4 * u0 + k * g for k in range(4))
    c_prev, c_new, peep = _slice(r.c_prev, u0), r.c_new + u0, r.consts.get("P")
    if peep is not None and c_prev is not None:
        for gate, p in ((i_pre, peep + u0), (f_pre, peep + 2 * hidden + u0)):
            ctx.emit_elementwise("VMUL", w, g, dst=r.s["t"] + u0, a=p, b=c_prev, shift=fmt.peephole_shift)
            ctx.emit_elementwise("VADD", w, g, dst=gate, a=gate, b=r.s["t"] + u0)
    late_o = peep is not None  # o's pre-activation needs the new cell state first
    if late_o:
        _clamp(ctx, a, w, g, i_pre)
        _clamp(ctx, a, w, 2 * g, f_pre)
    else:
        _clamp(ctx, a, w, 4 * g, i_pre)
    together = 1 if a.input_forget or late_o else 3  # i alone, or i, o, f in one instruction
    _activate(ctx, f_spec, w, together * g, i, i_pre, fmt.pre)
    if late_o and not a.input_forget:
        _activate(ctx, f_spec, w, g, f, f_pre, fmt.pre)
    if a.input_forget:
        ctx.emit_elementwise("VSUB", w, g, dst=f, a=r.consts["one"] + u0, b=i)
        if not late_o:
            _activate(ctx, f_spec, w, g, o, o_pre, fmt.pre)
    _activate(ctx, g_spec, w, g, c, c_pre, fmt.pre)
    _cell_update(ctx, r, w, g, (f, i, c, c_prev, c_new, u0), (fmt.gate_shift, fmt.input_shift))
    if late_o:
        ctx.emit_elementwise("VMUL", w, g, dst=r.s["t"] + u0, a=peep + hidden + u0, b=c_new,
                             shift=fmt.peephole_shift)
        ctx.emit_elementwise("VADD", w, g, dst=o_pre, a=o_pre, b=r.s["t"] + u0)
        _clamp(ctx, a, w, g, o_pre)
        _activate(ctx, f_spec, w, g, o, o_pre, fmt.pre)
    _activate(ctx, h_spec, w, g, r.s["tc"] + u0, c_new, fmt.cell)
    ctx.emit_elementwise("VMUL", _at(where, "hidden"), g, dst=r.h_new + u0, a=o, b=r.s["tc"] + u0,
                         shift=fmt.hidden_shift)


def _slice(ref: Ref | None, offset: int) -> Ref | None:
    return None if ref is None else ref + offset


def _cell_update(ctx: Lowering, r: StepRefs, w: Where, g: int, refs: tuple, shifts: tuple) -> None:
    """c = f*c + i*g (just i*g when there is no previous cell state)."""
    (f, i, cand, c_prev, c_new, u0), (shift_fc, shift_ig) = refs, shifts
    if c_prev is None:
        ctx.emit_elementwise("VMUL", w, g, dst=c_new, a=i, b=cand, shift=shift_ig)
        return
    ctx.emit_elementwise("VMUL", w, g, dst=r.s["fc"] + u0, a=f, b=c_prev, shift=shift_fc)
    ctx.emit_elementwise("VMUL", w, g, dst=r.s["ig"] + u0, a=i, b=cand, shift=shift_ig)
    ctx.emit_elementwise("VADD", w, g, dst=c_new, a=r.s["fc"] + u0, b=r.s["ig"] + u0)


def gru_step(ctx: Lowering, a: QuantRecurrentAttrs, d: int, r: StepRefs, where: Where) -> None:
    """With linear_before_reset, R is one matrix stored [z r h] per group and each group finishes
    on its own; without, the candidate's product needs all of r*h, so it waits for every group."""
    hidden, s, lbr = a.hidden, r.s, a.linear_before_reset
    matvec(ctx, r.mats["qx"], r.x, r.accs["x"], _at(where, "Wx"))
    _input_gates(ctx, r, recurrent_matrix(r.mats), where)
    _recurrent_product(ctx, a, recurrent_matrix(r.mats), r, where)
    if lbr:
        _per_group(ctx, a, r, r.mats["qh"].tiles, 3, lambda u0, u1: _gru_group(ctx, a, d, r, u0, u1, where))
        return
    _per_group(ctx, a, r, r.mats["qzr"].tiles, 2, lambda u0, u1: _gru_gates(ctx, a, d, r, u0, u1, where))
    matvec(ctx, r.mats["qhh"], s["rh"], r.accs["h"] + 2 * hidden, _at(where, "Rh"))
    _per_group(ctx, a, r, r.mats["qhh"].tiles, 1, lambda u0, u1: _gru_candidate(ctx, a, d, r, u0, u1, where))


def _gru_group(ctx: Lowering, a: QuantRecurrentAttrs, d: int, r: StepRefs, u0: int, u1: int, where: Where) -> None:
    _gru_gates(ctx, a, d, r, u0, u1, where)
    _gru_candidate(ctx, a, d, r, u0, u1, where)


def _gru_gates(ctx: Lowering, a: QuantRecurrentAttrs, d: int, r: StepRefs, u0: int, u1: int, where: Where) -> None:
    """z and r of units u0..u1, and r*h when it feeds R_h."""
    f_spec, s, g, w = a.activations[d][0], r.s, u1 - u0, _at(where, "cell")
    pre, lbr = s["pre"] + 2 * u0, a.linear_before_reset
    first = 3 * u0 if lbr else 2 * u0  # the group's z rows: [z r h] or [z r] per group
    requantize(ctx, recurrent_matrix(r.mats), _at(where, "gates"), pre, r.accs["h"] + first,
                   add=s["gx"] + 3 * u0, rows=(first, first + 2 * g))
    _clamp(ctx, a, w, 2 * g, pre)
    _activate(ctx, f_spec, w, 2 * g, s["act"] + 2 * u0, pre, a.formats[d].pre)
    if not lbr:
        ctx.emit_elementwise("VMUL", w, g, dst=s["rh"] + u0, a=s["act"] + 2 * u0 + g, b=r.h_prev + u0,
                             shift=a.formats[d].gate_shift)


def _gru_candidate(ctx: Lowering, a: QuantRecurrentAttrs, d: int, r: StepRefs, u0: int, u1: int, where: Where) -> None:
    """h~ = g(candidate pre-activation); h = (1 - z) h~ + z h, for units u0..u1."""
    g_spec, fmt = a.activations[d][1], a.formats[d]
    shift = fmt.gate_shift
    hidden, s, g, w = a.hidden, r.s, u1 - u0, _at(where, "cell")
    z, reset, gx_h, cand = s["act"] + 2 * u0, s["act"] + 2 * u0 + g, s["gx"] + 3 * u0 + 2 * g, s["cand"] + u0
    if a.linear_before_reset:
        rows = (3 * u0 + 2 * g, 3 * u1)
        requantize(ctx, r.mats["qh"], w, s["t"] + u0, r.accs["h"] + rows[0], rows=rows)
        ctx.emit_elementwise("VMUL", w, g, dst=s["t"] + u0, a=reset, b=s["t"] + u0, shift=shift)
        ctx.emit_elementwise("VADD", w, g, dst=cand, a=s["t"] + u0, b=gx_h)
    else:
        requantize(ctx, r.mats["qhh"], w, cand, r.accs["h"] + 2 * hidden + u0, add=gx_h, rows=(u0, u1))
    _clamp(ctx, a, w, g, cand)
    _activate(ctx, g_spec, w, g, s["hh"] + u0, cand, fmt.pre)
    ctx.emit_elementwise("VSUB", w, g, dst=s["d"] + u0, a=r.consts["one"] + u0, b=z)
    ctx.emit_elementwise("VMUL", w, g, dst=s["d"] + u0, a=s["d"] + u0, b=s["hh"] + u0, shift=fmt.candidate_shift)
    ctx.emit_elementwise("VMUL", w, g, dst=s["t"] + u0, a=z, b=r.h_prev + u0, shift=shift)
    ctx.emit_elementwise("VADD", _at(where, "hidden"), g, dst=r.h_new + u0, a=s["d"] + u0, b=s["t"] + u0)


def rnn_step(ctx: Lowering, a: QuantRecurrentAttrs, d: int, r: StepRefs, where: Where) -> None:
    (f_spec,) = a.activations[d]
    _products(ctx, a, r, "qh", where)

    def group(u0: int, u1: int) -> None:
        _group_gates(ctx, r, "qh", (u0, u1), _at(where, "gates"))
        _clamp(ctx, a, _at(where, "cell"), u1 - u0, r.s["pre"] + u0)
        fmt = a.formats[d]
        _activate(ctx, f_spec, _at(where, "hidden"), u1 - u0, r.h_new + u0, r.s["pre"] + u0, fmt.pre, fmt.hidden)

    tiles = (r.mats["qh"] if r.h_prev is not None else r.mats["qx"]).tiles
    _per_group(ctx, a, r, tiles, 1, group)


CELLS = {"lstm": lstm_step, "gru": gru_step, "rnn": rnn_step}

"""One step of each recurrent cell as machine ops: the chip's side of reference_recurrent.

Gate pre-activations are Q3.12; see docs/numerics.md for each cell's integer recipe, which
these instruction sequences compute exactly (tests compare them bit for bit).
"""

from __future__ import annotations

from dataclasses import dataclass

from compiler.kernel import Ref, Where
from compiler.passes.lowering import Lowering, MatrixRefs
from compiler.passes.quantize_recurrent import act_frac
from isa.numerics import GATE_FRAC

# scratch vectors per cell kind, in units of hidden
SCRATCH = {
    "lstm": {"gx": 4, "pre": 4, "act": 4, "t": 1, "fc": 1, "ig": 1, "tc": 1},
    "gru": {"gx": 3, "pre": 3, "act": 2, "t": 1, "hh": 1, "d": 1, "rh": 1},
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


def _clamp(ctx: Lowering, a: dict, where: Where, n: int, ref: Ref) -> None:
    if a["clip_q"] is not None:
        ctx.emit_elementwise("VCLAMP", where, n, dst=ref, src=ref, lo=-a["clip_q"], hi=a["clip_q"])


def _gates(ctx: Lowering, r: StepRefs, qh: str, dst: Ref, where: Where) -> None:
    """dst = requantise(b + W x) [+ requantise(R h)], Q3.12."""
    mx = r.mats["qx"]
    ctx.matvec(mx, r.x, r.accs["x"], _at(where, "Wx"))
    if r.h_prev is None:
        ctx.requantize(mx, _at(where, "gates"), dst, r.accs["x"])
        return
    ctx.requantize(mx, _at(where, "Wx"), r.s["gx"], r.accs["x"])
    mh = r.mats[qh]
    ctx.matvec(mh, r.h_prev, r.accs["h"], _at(where, "Rh"))
    ctx.requantize(mh, _at(where, "gates"), dst, r.accs["h"], add=r.s["gx"])


def lstm_step(ctx: Lowering, a: dict, d: int, r: StepRefs, where: Where) -> None:
    f_spec, g_spec, h_spec = a["activations"][d]
    ff, fg, fh, hidden = act_frac(f_spec), act_frac(g_spec), act_frac(h_spec), a["hidden"]
    pre, act, s, peep = r.s["pre"], r.s["act"], r.s, r.consts.get("P")
    _gates(ctx, r, "qh", pre, where)
    w = _at(where, "cell")
    i_pre, o_pre, f_pre, g_pre = (pre + k * hidden for k in range(4))
    i, o, f, g = (act + k * hidden for k in range(4))
    if peep is not None and r.c_prev is not None:
        for gate, p in ((i_pre, peep), (f_pre, peep + 2 * hidden)):
            ctx.emit_elementwise("VMUL", w, hidden, dst=s["t"], a=p, b=r.c_prev, shift=GATE_FRAC)
            ctx.emit_elementwise("VADD", w, hidden, dst=gate, a=gate, b=s["t"])
    late_o = peep is not None  # o's pre-activation needs the new cell state first
    if late_o:
        _clamp(ctx, a, w, hidden, i_pre)
        _clamp(ctx, a, w, 2 * hidden, f_pre)
    else:
        _clamp(ctx, a, w, 4 * hidden, pre)
    together = 1 if a["input_forget"] or late_o else 3  # i alone, or i, o, f in one instruction
    ctx.activation(f_spec, w, together * hidden, i, i_pre)
    if late_o and not a["input_forget"]:
        ctx.activation(f_spec, w, hidden, f, f_pre)
    if a["input_forget"]:
        ctx.emit_elementwise("VSUB", w, hidden, dst=f, a=r.consts["one"], b=i)
        if not late_o:
            ctx.activation(f_spec, w, hidden, o, o_pre)
    ctx.activation(g_spec, w, hidden, g, g_pre)
    _cell_update(ctx, r, w, hidden, (f, i, g), (ff, ff + fg - GATE_FRAC))
    if late_o:
        ctx.emit_elementwise("VMUL", w, hidden, dst=s["t"], a=peep + hidden, b=r.c_new, shift=GATE_FRAC)
        ctx.emit_elementwise("VADD", w, hidden, dst=o_pre, a=o_pre, b=s["t"])
        _clamp(ctx, a, w, hidden, o_pre)
        ctx.activation(f_spec, w, hidden, o, o_pre)
    ctx.activation(h_spec, w, hidden, s["tc"], r.c_new)
    ctx.emit_elementwise("VMUL", _at(where, "hidden"), hidden, dst=r.h_new, a=o, b=s["tc"],
                         shift=ff + fh - a["hfrac"])


def _cell_update(ctx: Lowering, r: StepRefs, w: Where, hidden: int, gates: tuple, shifts: tuple) -> None:
    """c = f*c + i*g (just i*g when there is no previous cell state)."""
    (f, i, g), (shift_fc, shift_ig) = gates, shifts
    if r.c_prev is None:
        ctx.emit_elementwise("VMUL", w, hidden, dst=r.c_new, a=i, b=g, shift=shift_ig)
        return
    ctx.emit_elementwise("VMUL", w, hidden, dst=r.s["fc"], a=f, b=r.c_prev, shift=shift_fc)
    ctx.emit_elementwise("VMUL", w, hidden, dst=r.s["ig"], a=i, b=g, shift=shift_ig)
    ctx.emit_elementwise("VADD", w, hidden, dst=r.c_new, a=r.s["fc"], b=r.s["ig"])


def gru_step(ctx: Lowering, a: dict, d: int, r: StepRefs, where: Where) -> None:
    f_spec, g_spec = a["activations"][d]
    ff, hidden, s = act_frac(f_spec), a["hidden"], r.s
    mx, mzr, mhh = r.mats["qx"], r.mats["qzr"], r.mats["qhh"]
    ctx.matvec(mx, r.x, r.accs["x"], _at(where, "Wx"))
    ctx.requantize(mx, _at(where, "Wx"), s["gx"], r.accs["x"])
    ctx.matvec(mzr, r.h_prev, r.accs["h"], _at(where, "Rh"))
    if a["linear_before_reset"]:
        ctx.matvec(mhh, r.h_prev, r.accs["h"] + 2 * hidden, _at(where, "Rh"))
    w = _at(where, "cell")
    ctx.requantize(mzr, _at(where, "gates"), s["pre"], r.accs["h"], add=s["gx"])
    _clamp(ctx, a, w, 2 * hidden, s["pre"])
    ctx.activation(f_spec, w, 2 * hidden, s["act"], s["pre"])
    z, reset, cand_pre = s["act"], s["act"] + hidden, s["pre"] + 2 * hidden
    if a["linear_before_reset"]:
        ctx.requantize(mhh, w, s["t"], r.accs["h"] + 2 * hidden)
        ctx.emit_elementwise("VMUL", w, hidden, dst=s["t"], a=reset, b=s["t"], shift=ff)
        ctx.emit_elementwise("VADD", w, hidden, dst=cand_pre, a=s["t"], b=s["gx"] + 2 * hidden)
    else:
        ctx.emit_elementwise("VMUL", w, hidden, dst=s["rh"], a=reset, b=r.h_prev, shift=ff)
        ctx.matvec(mhh, s["rh"], r.accs["h"] + 2 * hidden, _at(where, "Rh"))
        ctx.requantize(mhh, w, cand_pre, r.accs["h"] + 2 * hidden, add=s["gx"] + 2 * hidden)
    _clamp(ctx, a, w, hidden, cand_pre)
    ctx.activation(g_spec, w, hidden, s["hh"], cand_pre)
    ctx.emit_elementwise("VSUB", w, hidden, dst=s["d"], a=r.consts["one"], b=z)
    ctx.emit_elementwise("VMUL", w, hidden, dst=s["d"], a=s["d"], b=s["hh"], shift=ff)
    ctx.emit_elementwise("VMUL", w, hidden, dst=s["t"], a=z, b=r.h_prev, shift=ff)
    ctx.emit_elementwise("VADD", _at(where, "hidden"), hidden, dst=r.h_new, a=s["d"], b=s["t"])


def rnn_step(ctx: Lowering, a: dict, d: int, r: StepRefs, where: Where) -> None:
    (f_spec,) = a["activations"][d]
    _gates(ctx, r, "qh", r.s["pre"], where)
    _clamp(ctx, a, _at(where, "cell"), a["hidden"], r.s["pre"])
    ctx.activation(f_spec, _at(where, "hidden"), a["hidden"], r.h_new, r.s["pre"])


CELLS = {"lstm": lstm_step, "gru": gru_step, "rnn": rnn_step}

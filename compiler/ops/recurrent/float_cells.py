"""The recurrent cells in float64, as ONNX defines them: the compiler's float view of a layer
(calibration runs it on whole sequences).

A long sequence's steps run one after the other, so what a step costs is what a layer's
calibration costs, times the steps: each direction's cell computes in buffers made once per
layer, with numpy's `out=`, and writes its new states into a ring of arrays whose extremes are
reduced once it is full. The operations and their operands are those of the equations written
with fresh arrays, so every value is the same to the last bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from compiler.ir import Node
from compiler.ops.activation import activation_function
from compiler.ops.recurrent.formats import Run, StateRanges
from compiler.ops.recurrent.records import GruAttrs, LstmAttrs, RecurrentAttrs, RnnAttrs
from compiler.ops.recurrent.scan import scan

RING = 32  # steps whose new states are kept before their extremes are reduced


def float_recurrent(node: Node, x: np.ndarray, h0: np.ndarray | None = None, c0: np.ndarray | None = None) -> list:
    return float_ranges(node, x, h0, c0, moments=False)[0]


def float_ranges(node: Node, x: np.ndarray, h0: np.ndarray | None = None, c0: np.ndarray | None = None,
                 moments: bool = True) -> tuple[list, StateRanges]:
    """The layer's outputs, and the ranges of the values inside it that its formats must hold
    (every step's h and c, the initial states included, and its Relus' outputs); with `moments`,
    each direction's step moments (StateRanges.steps: only activation-aware compression reads
    them, and on a long sequence they cost a fifth of the run)."""
    samples = x.shape[0]
    attrs = _in_float64(node.attrs, samples)
    seen = _Extremes()
    cell_type, states = CELLS[node.op]
    ring = _Ring(seen, states, (samples, attrs.hidden), attrs.steps)
    cells = [cell_type(attrs, d, _acts(attrs, d, seen), samples) for d in range(len(attrs.directions))]
    step_moments = [_StepMoments() for _ in attrs.directions] if moments else []
    runs = [_Runs(*run_shape(attrs, samples), attrs.seq_lens, attrs.W.shape[2], attrs.hidden)
            for _ in attrs.directions] if moments else []
    last: list[np.ndarray | None] = [None, None]

    def step(d: int, x_t: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if h is not last[0]:  # not the last step's: an initial state
            seen.note("h", h)
            if runs:
                runs[d].start()
        if c is not last[1]:
            seen.note("c", c)
        if step_moments:
            step_moments[d].note(x_t, h)
        before = h, c
        last[:] = cells[d](x_t, h, c, ring.next())
        if runs:
            runs[d].note(x_t, *before, last[0])
        return last[0], last[1]

    outputs = scan(node, x, h0, c0, step, np.float64)
    ring.flush()
    steps = tuple(m.mean() for m in step_moments)
    return outputs, StateRanges(**seen.largest(("h", "c") + ROLES), steps=steps,
                                runs=tuple(r.finished() for r in runs))


RUN_MACS = 1 << 29  # the most multiply-adds of the products of one forward pass over a direction's runs
# (the refit makes 150 passes, each forward and backward)
RUN_VALUES = 1 << 23  # the most values they hold (64 MiB)
RUN_SAMPLES = 256  # and the most samples they keep
MIN_SAMPLES = 16  # the fewest worth a refit (fewer would be learnt by heart)
MIN_WINDOW = 16  # the fewest steps of a window of a sequence


def run_shape(a: RecurrentAttrs, samples: int) -> tuple[int, int]:
    """How many calibration samples a direction's runs keep, and how many steps of each: whole
    sequences of as many samples as RUN_SAMPLES, RUN_MACS and RUN_VALUES allow. Where that is fewer
    than MIN_SAMPLES (a wide layer, a long sequence), a window of each sample's steps instead, each
    from the float state at its start: a refit on windows of many samples learns the layer's drift
    over the window, where on a few whole sequences it would learn those sequences."""
    per_step = max(1, a.W.shape[2] + a.hidden)
    fit = min(RUN_MACS // (per_step * a.W.shape[1]), RUN_VALUES // per_step)  # sample-steps a pass holds
    steps = a.steps
    whole = min(samples, RUN_SAMPLES, fit // max(1, steps))
    if whole >= min(samples, MIN_SAMPLES):
        return whole, steps
    kept = min(samples, RUN_SAMPLES, fit // max(1, min(steps, MIN_WINDOW)))
    return kept, min(steps, fit // max(1, kept))


class _Runs:
    """A window of `window` steps of each of the first `samples` samples of each run of a
    direction's steps (one per batch element of nonzero length), as Runs: the windows of a run
    start evenly spread over its steps, in the order the direction takes them (all at its first
    step when the window is the whole sequence)."""

    def __init__(self, samples: int, window: int, lengths: tuple[int, ...], inputs: int, hidden: int) -> None:
        self.samples, self.window, self.widths, self.done = samples, window, (inputs, hidden), []
        self.lengths = iter(length for length in lengths if length)
        self.step, self.run, self.starts = 0, None, np.zeros(0, int)

    def start(self) -> None:
        self._close()
        length = next(self.lengths)
        window = min(self.window, length)
        self.step = 0
        self.starts = np.arange(self.samples) * (length - window) // max(1, self.samples - 1)
        inputs, hidden = self.widths
        self.run = Run(np.zeros((window, self.samples, inputs)), np.zeros((self.samples, hidden)),
                       np.zeros((self.samples, hidden)), np.zeros((window, self.samples, hidden)))

    def note(self, x: np.ndarray, h: np.ndarray, c: np.ndarray, h_new: np.ndarray) -> None:
        """One step of every sample: `h`, `c` before it, `h_new` after."""
        if not self.samples:
            return
        run, at = self.run, self.step - self.starts
        first = np.flatnonzero(at == 0)
        run.h0[first], run.c0[first] = h[first], c[first]
        inside = np.flatnonzero((at >= 0) & (at < len(run.x)))
        run.x[at[inside], inside] = x[inside]
        run.h[at[inside], inside] = h_new[inside]
        self.step += 1

    def finished(self) -> tuple[Run, ...]:
        self._close()
        return tuple(self.done)

    def _close(self) -> None:
        if self.run is not None and self.samples:
            self.done.append(self.run)
        self.run = None


class _StepMoments:
    """E[z zᵀ] over a direction's steps, z = [x_t, h_prev]: the second moments of what a step's
    pre-activations are made of (W x_t + R h_prev), cross terms included, so that W and R can be
    compressed together (passes/joint.py)."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.count = 0

    def note(self, x: np.ndarray, h: np.ndarray) -> None:
        z = np.concatenate([x, h], axis=1)
        product = z.T @ z
        self.total = product if self.total is None else self.total + product
        self.count += len(z)

    def mean(self) -> np.ndarray | None:
        return None if self.total is None else self.total / self.count


class _Extremes:
    """The largest magnitude of each kind of value a layer notes, kept as running elementwise
    extremes and reduced once at the end: the same maximum as a reduction at every step (a max is
    exact in any order, and fmax passes over a NaN as a reduction by fmax does)."""

    def __init__(self) -> None:
        self.high: dict[str, np.ndarray] = {}
        self.low: dict[str, np.ndarray] = {}

    def note(self, key: str, value: np.ndarray) -> None:
        if value.size:
            self._merge(key, value, value)

    def note_steps(self, key: str, values: np.ndarray) -> None:
        """Values of several steps, stacked on the first axis."""
        if values.size:
            self._merge(key, np.fmax.reduce(values, axis=0), np.fmin.reduce(values, axis=0))

    def _merge(self, key: str, high: np.ndarray, low: np.ndarray) -> None:
        if key not in self.high:
            self.high[key], self.low[key] = high.copy(), low.copy()
            return
        np.fmax(self.high[key], high, out=self.high[key])
        np.fmin(self.low[key], low, out=self.low[key])

    def largest(self, keys: tuple[str, ...]) -> dict[str, float]:
        """Each key's largest magnitude, 0 for one never noted."""
        return {key: max(0.0, float(np.max(self.high[key])), -float(np.min(self.low[key])))
                if key in self.high else 0.0 for key in keys}


class _Ring:
    """The arrays the steps write their new states into (h, and an LSTM's c): RING steps' worth,
    whose extremes are noted in one reduction once all are written, for a few element-wise calls
    per RING steps instead of four at every step. Two at least: a step reads the last one's."""

    def __init__(self, seen: _Extremes, keys: tuple[str, ...], shape: tuple[int, ...], steps: int) -> None:
        self.seen, self.used = seen, 0
        self.arrays = {key: np.empty((max(2, min(RING, steps)), *shape)) for key in keys}
        self.slots = list(zip(*self.arrays.values()))  # each step's arrays, one of each state

    def next(self) -> tuple[np.ndarray, ...]:
        """The arrays of the next step's states, noting the full ring's first."""
        if self.used == len(self.slots):
            self.flush()
        self.used += 1
        return self.slots[self.used - 1]

    def flush(self) -> None:
        for key, array in self.arrays.items():
            self.seen.note_steps(key, array[: self.used])
        self.used = 0


def _in_float64(a: RecurrentAttrs, samples: int) -> RecurrentAttrs:
    """W and R cast to float64 once, where a float32 matrix times float64 states was cast again for
    every product: several times the product's own time on a wide layer. Each W[d].T is laid out
    C-contiguous, the operand numpy builds when it casts a float32 W[d].T, so every product keeps its
    value to the last bit (another layout may sum in another order). B is cast too (exactly, as
    every sum cast it) and repeated for every sample, [D, samples, 2*G*H]: the same sums, but of
    equal shapes, which numpy adds at twice the speed of a row broadcast down the samples."""
    def cast(m: np.ndarray) -> np.ndarray:
        return np.swapaxes(np.ascontiguousarray(np.swapaxes(m, 1, 2), np.float64), 1, 2)
    biases = np.repeat(a.B.astype(np.float64)[:, None], samples, axis=1)
    return dataclasses.replace(a, W=cast(a.W), R=cast(a.R), B=biases)


def _clip(a: RecurrentAttrs) -> Callable[[np.ndarray], np.ndarray]:
    """The cell clip, in place."""
    clip = a.clip
    return (lambda v: v) if clip is None else (lambda v: np.clip(v, -clip, clip, out=v))


def _columns(v: np.ndarray, parts: int) -> list[np.ndarray]:
    """np.split(v, parts, axis=-1) by plain slicing: the same views, without np.split's overhead."""
    width = v.shape[-1] // parts
    return [v[..., k * width:(k + 1) * width] for k in range(parts)]


def _peephole(v: np.ndarray, p: np.ndarray | None, c: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """v + p c in v (p c in `scratch`), or v itself without peepholes (adding 0 · c changed nothing
    but a zero's sign, which no activation or range sees)."""
    if p is not None:
        v += np.multiply(p, c, out=scratch)
    return v


ROLES = ("gate", "candidate")  # what a Relu records, by its position among a cell's activations


def _acts(a: RecurrentAttrs, d: int, seen: _Extremes) -> list[Callable[..., np.ndarray]]:
    """The cell's activations in direction d, each f(v, out=...); a Relu in the gate or candidate
    position notes its outputs' range in `seen` (a table's is bounded; the LSTM's activation of c
    is c's)."""
    def act(spec: str, position: int) -> Callable[..., np.ndarray]:
        function = activation_function(spec)
        if spec != "relu" or position >= len(ROLES):
            return function

        def run(v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
            result = function(v, out=out)
            seen.note(ROLES[position], result)
            return result
        return run
    return [act(spec, position) for position, spec in enumerate(a.activations[d])]


class _GateInputs:
    """x Wᵀ + h Rᵀ + Wb + Rb of one direction, summed in that order in one buffer."""

    def __init__(self, a: LstmAttrs | RnnAttrs, d: int, samples: int) -> None:
        gates = a.W.shape[1]
        self.w, self.r = a.W[d].T, a.R[d].T
        self.wb, self.rb = a.B[d][:, :gates], a.B[d][:, gates:]
        self.sum, self.product = np.empty((samples, gates)), np.empty((samples, gates))

    def __call__(self, x: np.ndarray, h: np.ndarray) -> np.ndarray:
        total = np.matmul(x, self.w, out=self.sum)
        total += np.matmul(h, self.r, out=self.product)
        total += self.wb
        total += self.rb
        return total


class _Lstm:
    """One direction's LSTM step. The gates' activations go to buffers of their own, contiguous
    (an element-wise call over a column slice costs numpy a loop per row)."""

    def __init__(self, a: LstmAttrs, d: int, acts: list, samples: int) -> None:
        self.gate_inputs, self.clip, self.acts = _GateInputs(a, d, samples), _clip(a), acts
        self.sums = _columns(self.gate_inputs.sum, 4)  # i, o, f, g before their activations
        self.iof, self.g = np.empty((samples, 3 * a.hidden)), np.empty((samples, a.hidden))
        self.gates = _columns(self.iof, 3)  # i, o, f
        self.fused = a.P is None and not a.input_forget  # i, o, f side by side: one call of the gate function
        self.peepholes = _columns(a.P[d], 3) if a.P is not None else (None, None, None)
        self.input_forget, self.scratch = a.input_forget, np.empty((samples, a.hidden))

    def __call__(self, x: np.ndarray, h: np.ndarray, c: np.ndarray, out: tuple[np.ndarray, ...]
                 ) -> tuple[np.ndarray, np.ndarray]:
        (f_act, g_act, h_act), clip, scratch, (h_out, c_out) = self.acts, self.clip, self.scratch, out
        total = self.gate_inputs(x, h)
        sum_i, sum_o, sum_f, sum_g = self.sums
        (i, o, f), (p_i, p_o, p_f) = self.gates, self.peepholes
        if self.fused:
            f_act(clip(total[:, : self.iof.shape[1]]), out=self.iof)
        else:
            f_act(clip(_peephole(sum_i, p_i, c, scratch)), out=i)
            if self.input_forget:
                np.subtract(1.0, i, out=f)
            else:
                f_act(clip(_peephole(sum_f, p_f, c, scratch)), out=f)
        g = g_act(clip(sum_g), out=self.g)
        np.multiply(f, c, out=c_out)
        c_out += np.multiply(i, g, out=scratch)  # c = f c + i g
        if not self.fused:
            f_act(clip(_peephole(sum_o, p_o, c_out, scratch)), out=o)
        np.multiply(o, h_act(c_out, out=scratch), out=h_out)
        return h_out, c_out


class _Gru:
    """One direction's GRU step: z and r from one sum, then the candidate, in buffers."""

    def __init__(self, a: GruAttrs, d: int, acts: list, samples: int) -> None:
        hidden = a.hidden
        self.acts, self.clip, self.linear_before_reset = acts, _clip(a), a.linear_before_reset
        self.w, r = a.W[d].T, a.R[d]
        self.r_zr, self.r_h = r[: 2 * hidden].T, r[2 * hidden:].T
        self.wb, rb = a.B[d][:, : 3 * hidden], a.B[d][:, 3 * hidden:]
        self.rb_zr, self.rb_h = rb[:, : 2 * hidden], rb[:, 2 * hidden:]
        self.gx, self.zr = np.empty((samples, 3 * hidden)), np.empty((samples, 2 * hidden))
        self.candidate, self.scratch = np.empty((samples, hidden)), np.empty((samples, hidden))

    def __call__(self, x: np.ndarray, h: np.ndarray, c: np.ndarray, out: tuple[np.ndarray, ...]
                 ) -> tuple[np.ndarray, np.ndarray]:
        (f_act, g_act), clip, hidden = self.acts, self.clip, self.r_h.shape[1]
        gx, zr, candidate, scratch, (h_out,) = self.gx, self.zr, self.candidate, self.scratch, out
        np.matmul(x, self.w, out=gx)
        gx += self.wb
        np.add(gx[:, : 2 * hidden], np.matmul(h, self.r_zr, out=zr), out=zr)
        zr += self.rb_zr
        z, reset = _columns(f_act(clip(zr), out=zr), 2)
        if self.linear_before_reset:  # gx + r (h Rhᵀ + Rbh)
            np.matmul(h, self.r_h, out=candidate)
            candidate += self.rb_h
            candidate *= reset
            np.add(gx[:, 2 * hidden:], candidate, out=candidate)
        else:  # gx + (r h) Rhᵀ + Rbh
            np.matmul(np.multiply(reset, h, out=scratch), self.r_h, out=candidate)
            np.add(gx[:, 2 * hidden:], candidate, out=candidate)
            candidate += self.rb_h
        g_act(clip(candidate), out=candidate)
        np.multiply(np.subtract(1.0, z, out=scratch), candidate, out=scratch)  # (1 - z) candidate + z h
        np.add(scratch, np.multiply(z, h, out=h_out), out=h_out)
        return h_out, c


class _Rnn:
    """One direction's RNN step."""

    def __init__(self, a: RnnAttrs, d: int, acts: list, samples: int) -> None:
        self.gate_inputs, self.clip, (self.f_act,) = _GateInputs(a, d, samples), _clip(a), acts

    def __call__(self, x: np.ndarray, h: np.ndarray, c: np.ndarray, out: tuple[np.ndarray, ...]
                 ) -> tuple[np.ndarray, np.ndarray]:
        return self.f_act(self.clip(self.gate_inputs(x, h)), out=out[0]), c


# each cell's step, and the states it computes (a GRU's or an RNN's c stays its zero initial state)
CELLS = {"lstm": (_Lstm, ("h", "c")), "gru": (_Gru, ("h",)), "rnn": (_Rnn, ("h",))}

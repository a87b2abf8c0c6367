"""Refitting a layer with 2-bit matrices through time: its codebook entries and biases moved, by
gradient descent through the whole calibration sequences, until the compressed layer's hidden
states follow the float layer's.

The step-wise fit (passes/compress.py, passes/joint.py) keeps each step's pre-activations close
for the states the float layer had. At 2 bits a step's error is a tenth of its product's power,
and it compounds: the compressed layer's states drift from the float ones, its gates saturate
differently, and the next steps multiply states the step-wise fit never saw. Fitting the few
continuous values of a 2-bit layer -- four entries a codebook, one bias a row -- against the
float layer's own outputs over whole sequences (back-propagation through time, on the runs of up
to 256 calibration samples that calibration keeps, or windows of their steps where whole sequences
do not fit: ops/recurrent/float_cells.py) takes that drift
into account; the more samples, the better it carries over to others. The indices stay; so do
the stored bytes. At 3 and 4 bits the step-wise error is small and the refit only learns the
calibration samples, so it is left out there; docs/benchmarks.md gives both measurements.

Only the ONNX default cells are refitted (sigmoid and tanh, no clip, no peepholes, LSTM without
coupled input-forget); any other keeps its step-wise fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from compiler.ir import QMatrix
from compiler.memo import Memo
from compiler.ops.recurrent.formats import Run

REFIT_BITS = 2  # a layer is refitted when one of its matrices is compressed to this width
ITERATIONS = 150
RATE = 0.01  # Adam's step, as a share of the RMS of the layer's float weights
DEFAULT_ACTIVATIONS = {"lstm": ("sigmoid", "tanh", "tanh"), "gru": ("sigmoid", "tanh"), "rnn": ("tanh",)}


@dataclass(frozen=True)
class Tied:
    """A compressed matrix's float weights as its codebook entries: rows of W or R (ONNX order)
    that it holds, and each weight's slot (group * entries + index) in `entries`, which the
    chip's entries times its step give in float."""

    rows: np.ndarray
    slot: np.ndarray
    entries: np.ndarray
    unit: float = 0.0  # the float value of one integer step of the entries

    @staticmethod
    def of(q: QMatrix, rows: np.ndarray, in_scale: float, out_scale: float) -> Tied:
        book = q.codebook
        unit = float(q.mult[0]) * 2.0 ** -float(q.shift[0]) * out_scale / in_scale
        slot = book.group_of_row[:, None] * book.entries.shape[1] + book.indices
        return Tied(rows, slot, book.entries.astype(np.float64).ravel() * unit, unit)

    def holds(self, matrix: np.ndarray) -> bool:
        """Whether its entries are `matrix`'s weights to within the rounding of the entries (a
        model trained with shared weights): then there is nothing to refit."""
        return bool(np.all(np.abs(matrix[self.rows] - self.entries[self.slot]) <= 0.5 * self.unit * (1 + 1e-9)))

    def placed(self, matrix: np.ndarray, entries: np.ndarray) -> None:
        matrix[self.rows] = entries[self.slot]

    def gradient(self, d_matrix: np.ndarray) -> np.ndarray:
        return np.bincount(self.slot.ravel(), d_matrix[self.rows].ravel(), minlength=len(self.entries))


@dataclass(frozen=True)
class Layer:
    """One direction of a layer as the refit sees it: float W, R, the pre-activation bias b and
    (a GRU with linear_before_reset) the candidate's recurrent bias rbh; the compressed parts of
    W and R; the cell and, for a GRU, where its reset gate applies."""

    op: str
    W: np.ndarray
    R: np.ndarray
    b: np.ndarray
    rbh: np.ndarray | None
    tied_w: tuple[Tied, ...]
    tied_r: tuple[Tied, ...]
    linear_before_reset: bool = False

    def exact(self) -> bool:
        return all(t.holds(self.W) for t in self.tied_w) and all(t.holds(self.R) for t in self.tied_r)


def refit(layer: Layer, runs: tuple[Run, ...], log: Callable[[str], None], name: str, steps: int) -> Layer:
    """The layer with its tied entries and its biases fitted to the runs' float states, saying so
    in `log`; `steps` is the layer's sequence length, which windows of a long sequence do not span.
    The same layer on the same runs is fitted once (quantisation runs twice where a state's scales
    are pinned, and the search of `--compress auto` may ask for it again)."""
    window, samples = runs[0].x.shape[:2]
    windows = "" if window >= steps else f" (windows of {window} of their {steps} steps)"
    log(f"{name}: refitting through time on {samples} calibration samples{windows} ({ITERATIONS} passes)")
    tied = layer.tied_w + layer.tied_r
    key = (layer.op, layer.linear_before_reset, len(layer.tied_w), tuple(t.unit for t in tied))
    arrays = [layer.W, layer.R, layer.b, layer.rbh, *(a for t in tied for a in (t.rows, t.slot, t.entries)),
              *(a for r in runs for a in (r.x, r.h0, r.c0, r.h))]
    result, before, after = _REFITTED.get(key, arrays, lambda: _descend(layer, runs))
    log(f"{name}: refitted; error of its states {before:.3g} -> {after:.3g} (relative power)")
    return result


_REFITTED: Memo[tuple[Layer, float, float]] = Memo(64)


def _descend(layer: Layer, runs: tuple[Run, ...]) -> tuple[Layer, float, float]:
    """Adam on the entries and biases, ITERATIONS full passes over the runs; the values of least
    loss are kept (the first pass's, if no step lowered it), with the first and the least loss."""
    params = _Params(layer, runs)
    values = params.initial()
    scale = RATE * float(np.sqrt(np.mean(np.concatenate([layer.W.ravel(), layer.R.ravel()]) ** 2)))
    first, second = np.zeros_like(values), np.zeros_like(values)
    best, first_loss = (np.inf, values), None
    for t in range(1, ITERATIONS + 2):
        loss, gradient = params.loss_and_gradient(values)
        first_loss = loss if first_loss is None else first_loss
        best = min(best, (loss, values), key=lambda pair: pair[0])
        first = 0.9 * first + 0.1 * gradient
        second = 0.999 * second + 0.001 * gradient ** 2
        values = values - scale * (first / (1 - 0.9 ** t)) / (np.sqrt(second / (1 - 0.999 ** t)) + 1e-12)
    return params.layer(best[1]), first_loss, best[0]


class _Params:
    """The trainable values of a layer as one vector: tied entries of W, of R, b, rbh."""

    def __init__(self, layer: Layer, runs: tuple[Run, ...]) -> None:
        self.base, self.runs = layer, runs
        self.norm = sum(float(np.sum(run.h ** 2)) for run in runs) or 1.0
        parts = [t.entries for t in layer.tied_w + layer.tied_r] + [layer.b]
        parts += [layer.rbh] if layer.rbh is not None else []
        self.cuts = np.cumsum([len(p) for p in parts])[:-1]
        self.parts = parts

    def initial(self) -> np.ndarray:
        return np.concatenate(self.parts)

    def layer(self, values: np.ndarray) -> Layer:
        base, pieces = self.base, np.split(values, self.cuts)
        W, R = base.W.copy(), base.R.copy()
        tied = base.tied_w + base.tied_r
        for t, entries, matrix in zip(tied, pieces, [W] * len(base.tied_w) + [R] * len(base.tied_r)):
            t.placed(matrix, entries)
        rest = pieces[len(tied):]
        return Layer(base.op, W, R, rest[0], rest[1] if len(rest) > 1 else None, base.tied_w, base.tied_r,
                     base.linear_before_reset)

    def loss_and_gradient(self, values: np.ndarray) -> tuple[float, np.ndarray]:
        """sum ||h_t - run.h_t||² over the runs' steps, relative to sum ||run.h_t||², and its
        gradient by the values."""
        layer = self.layer(values)
        loss, d_w, d_r, d_b, d_rbh = (sum(parts) for parts in zip(*(CELLS[layer.op](layer, run, self.norm)
                                                                   for run in self.runs)))
        pieces = [t.gradient(d_w) for t in layer.tied_w] + [t.gradient(d_r) for t in layer.tied_r] + [d_b]
        return loss, np.concatenate(pieces + ([d_rbh] if layer.rbh is not None else []))


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * v))


def _lstm(layer: Layer, run: Run, norm: float) -> tuple:
    """The loss sum ||h_t - run.h_t||² / norm and its gradients by W, R, b, rbh (ONNX gates i, o,
    f, c; no rbh)."""
    W, R, hidden = layer.W, layer.R, layer.R.shape[1]
    h, c, saved = run.h0, run.c0, []
    for x in run.x:
        z = x @ W.T + h @ R.T + layer.b
        iof, g = _sigmoid(z[:, :3 * hidden]), np.tanh(z[:, 3 * hidden:])
        i, o, f = np.split(iof, 3, axis=1)
        c_new = f * c + i * g
        tc = np.tanh(c_new)
        saved.append((x, h, c, iof, g, tc))
        h, c = o * tc, c_new
    d_w, d_r, d_b = np.zeros_like(W), np.zeros_like(R), np.zeros_like(layer.b)
    d_h, d_c, loss = np.zeros_like(h), np.zeros_like(c), 0.0
    for t in reversed(range(len(saved))):
        x, h_prev, c_prev, iof, g, tc = saved[t]
        i, o, f = np.split(iof, 3, axis=1)
        error = o * tc - run.h[t]
        loss += float(np.sum(error ** 2)) / norm
        d_h = d_h + 2.0 * error / norm
        d_c = d_c + d_h * o * (1.0 - tc ** 2)
        d_iof = np.concatenate([d_c * g, d_h * tc, d_c * c_prev], axis=1) * iof * (1.0 - iof)
        d_z = np.concatenate([d_iof, d_c * i * (1.0 - g ** 2)], axis=1)
        d_w += d_z.T @ x
        d_r += d_z.T @ h_prev
        d_b += d_z.sum(axis=0)
        d_h, d_c = d_z @ R, d_c * f
    return loss, d_w, d_r, d_b, np.zeros(hidden)


def _gru(layer: Layer, run: Run, norm: float) -> tuple:
    """The loss and its gradients by W, R, b and rbh (ONNX gates z, r, h; the candidate's
    recurrent product before the reset gate with linear_before_reset, of r*h without)."""
    W, R, hidden, lbr = layer.W, layer.R, layer.R.shape[1], layer.linear_before_reset
    two = 2 * hidden
    h, saved = run.h0, []
    for x in run.x:
        gx, gh = x @ W.T + layer.b, h @ (R.T if lbr else R[:two].T)
        zr = _sigmoid(gx[:, :two] + gh[:, :two])
        reset = zr[:, hidden:]
        inner = gh[:, two:] + layer.rbh if lbr else (reset * h) @ R[two:].T
        n = np.tanh(gx[:, two:] + reset * inner if lbr else gx[:, two:] + inner)
        saved.append((x, h, zr, inner, n))
        h = (1.0 - zr[:, :hidden]) * n + zr[:, :hidden] * h
    d_w, d_r, d_b, d_rbh = np.zeros_like(W), np.zeros_like(R), np.zeros_like(layer.b), np.zeros(hidden)
    d_h, loss = np.zeros_like(h), 0.0
    for t in reversed(range(len(saved))):
        x, h_prev, zr, inner, n = saved[t]
        z, reset = zr[:, :hidden], zr[:, hidden:]
        error = (1.0 - z) * n + z * h_prev - run.h[t]
        loss += float(np.sum(error ** 2)) / norm
        d_h = d_h + 2.0 * error / norm
        d_n = d_h * (1.0 - z) * (1.0 - n ** 2)
        d_prev = d_h * z
        if lbr:
            d_reset, d_inner = d_n * inner, d_n * reset
            d_rbh += d_inner.sum(axis=0)
        else:
            d_u = d_n @ R[two:]
            d_reset, d_inner = d_u * h_prev, None
            d_prev = d_prev + d_u * reset
            d_r[two:] += d_n.T @ (reset * h_prev)
        d_zr = np.concatenate([d_h * (h_prev - n), d_reset], axis=1) * zr * (1.0 - zr)
        d_gx = np.concatenate([d_zr, d_n], axis=1)
        d_w += d_gx.T @ x
        d_b += d_gx.sum(axis=0)
        d_gh = np.concatenate([d_zr, d_inner], axis=1) if lbr else d_zr
        rows = R if lbr else R[:two]
        d_r[:len(rows)] += d_gh.T @ h_prev
        d_h = d_prev + d_gh @ rows
    return loss, d_w, d_r, d_b, d_rbh


def _rnn(layer: Layer, run: Run, norm: float) -> tuple:
    """The loss and its gradients by W, R, b, rbh (no rbh)."""
    W, R = layer.W, layer.R
    h, saved = run.h0, []
    for x in run.x:
        h_new = np.tanh(x @ W.T + h @ R.T + layer.b)
        saved.append((x, h, h_new))
        h = h_new
    d_w, d_r, d_b, d_h = np.zeros_like(W), np.zeros_like(R), np.zeros_like(layer.b), np.zeros_like(h)
    loss = 0.0
    for t in reversed(range(len(saved))):
        x, h_prev, h_new = saved[t]
        loss += float(np.sum((h_new - run.h[t]) ** 2)) / norm
        d_a = (d_h + 2.0 * (h_new - run.h[t]) / norm) * (1.0 - h_new ** 2)
        d_w += d_a.T @ x
        d_r += d_a.T @ h_prev
        d_b += d_a.sum(axis=0)
        d_h = d_a @ R
    return loss, d_w, d_r, d_b, np.zeros(R.shape[1])


CELLS = {"lstm": _lstm, "gru": _gru, "rnn": _rnn}

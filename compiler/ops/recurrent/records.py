"""The recurrent layers' attribute records: what the frontend gives (all directions at once, in
ONNX's gate order) and what quantisation adds (formats, clip, integer matrices per direction)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.ir import QMatrix
from compiler.ops.recurrent.formats import CellFormats, StateRanges


@dataclass(frozen=True, kw_only=True)
class RecurrentAttrs:
    """W [D, G*H, I], R [D, G*H, H] and B [D, 2*G*H] as float32; the activation specs per
    direction (ops/activation.py); static sequence lengths. `y_steps`: the only steps of Y that
    are read (passes/trim.py); `stream`: one frame per run, the state kept (passes/streaming.py)."""

    hidden: int
    inputs: int
    steps: int
    batch: int
    layout: int  # 0: [T, N, ...] as ONNX's default; 1: batch first
    directions: tuple[str, ...]  # "forward" / "reverse", one per direction
    W: np.ndarray
    R: np.ndarray
    B: np.ndarray
    activations: tuple[tuple[str, ...], ...]
    clip: float | None
    seq_lens: tuple[int, ...]
    y_steps: tuple[int, ...] | None = None
    stream: bool = False
    ranges: StateRanges | None = None  # what calibration saw inside the layer (None: natural formats)


@dataclass(frozen=True, kw_only=True)
class LstmAttrs(RecurrentAttrs):
    P: np.ndarray | None  # peepholes [D, 3H]: i, o, f
    input_forget: bool


@dataclass(frozen=True, kw_only=True)
class GruAttrs(RecurrentAttrs):
    linear_before_reset: bool


@dataclass(frozen=True, kw_only=True)
class RnnAttrs(RecurrentAttrs):
    pass


@dataclass(frozen=True)
class CellWeights:
    """One direction's integer matrices, in their original row order (QMatrix.order is how they
    are stored), and its peepholes at Q3.12. `h` multiplies h_prev (LSTM, RNN, a GRU with
    linear_before_reset); a GRU without it splits R into `zr` (z and r rows, on h_prev) and
    `hh` (the candidate's rows, on r*h)."""

    x: QMatrix
    h: QMatrix | None = None
    zr: QMatrix | None = None
    hh: QMatrix | None = None
    peephole: np.ndarray | None = None

    def named(self) -> dict[str, QMatrix]:
        """The matrices by the names their buffers carry: qx, qh, qzr, qhh."""
        return {f"q{kind}": m for kind, m in (("x", self.x), ("h", self.h), ("zr", self.zr), ("hh", self.hh))
                if m is not None}


@dataclass(frozen=True)
class StepSchedule:
    """How a step's work is ordered (ops/recurrent/cells.py), as the schedule tuning chose it
    (passes/tune.py; R's tile height lives in its matrix's tiles). `cuts`: R h runs in column
    chunks of h's units cut there (ascending; none: one product over all of h), so the next
    step's product starts on the first while the vector unit finishes the others.
    `chains`: the fewest unit groups interleaved together. `late`: a later tile's groups join
    the interleaving a few rounds late. `order`: the step's unit groups all in one batch,
    interleaved in this order (the group whose next op comes next, op by op: what a
    critical-path list scheduler did in a middle step of the tuning's trial, passes/critical.py);
    none: batches by `chains`, one op of each group in turn."""

    cuts: tuple[int, ...] = ()
    chains: int = 3
    late: bool = True
    order: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class QuantRecurrentAttrs:
    formats: tuple[CellFormats, ...]  # per direction (ops/recurrent/formats.py)
    clip_q: int | None  # the clip in the pre-activations' format, or None when it cannot bind
    cells: tuple[CellWeights, ...]  # per direction
    schedule: StepSchedule | None = None  # None: the rule of thumb (cells.default_schedule)


@dataclass(frozen=True, kw_only=True)
class QuantLstmAttrs(LstmAttrs, QuantRecurrentAttrs):
    pass


@dataclass(frozen=True, kw_only=True)
class QuantGruAttrs(GruAttrs, QuantRecurrentAttrs):
    pass


@dataclass(frozen=True, kw_only=True)
class QuantRnnAttrs(RnnAttrs, QuantRecurrentAttrs):
    pass

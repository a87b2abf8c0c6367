"""Weight quantisation and the fixed formats every pass agrees on."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from compiler.ir import QMatrix
from compiler.passes.compress import Compression, compress_matrix
from compiler.passes.tile import row_tiles, tile_rows
from isa.numerics import ACC_MAX, ACC_MIN, ACT_MAX, GATE_FRAC, UNIT_FRAC, quantize_multiplier
from isa.target import Target

GATE_SCALE = 2.0 ** -GATE_FRAC  # Q3.12: activation-table inputs, gate pre-activations, cell state
UNIT_SCALE = 2.0 ** -UNIT_FRAC  # Q0.15: activation-table outputs
HEADROOM = 2.0  # a calibrated format holds this many times the largest value calibration saw
# a row's products can never exceed this in magnitude, leaving a quarter of the accumulator for the bias
PRODUCT_LIMIT = 3 << 29
BIAS_LIMIT = (1 << 31) - 1 - PRODUCT_LIMIT


def quantize_matrix(weight: np.ndarray, bias: np.ndarray | None, in_scale: float, out_scale: float,
                    target: Target, compression: Compression | None = None,
                    moments: np.ndarray | None = None, tiles: list[np.ndarray] | None = None) -> QMatrix:
    """Per-row symmetric weights; bias at accumulator scale; multipliers to the output scale.

    A row's scale is also large enough that sum_k |w[k]| * ACT_MAX stays within PRODUCT_LIMIT and
    the bias within BIAS_LIMIT, so no input can saturate the accumulator: this binds 16-bit
    weights, 8-bit weights only beyond about 380 columns, and biases far larger than the weights.
    A row already on a grid of integers (grid_steps) takes that grid's step instead, if the guard
    allows it, so its integers are exactly the model's. With `compression`, the matrix becomes
    codebook indices instead (compress.py); `moments`, the second moments of the input columns,
    make it activation-aware; `tiles`, the rows of each MAC tile (default: consecutive), are the
    groups that share a codebook by tile.
    """
    weight = np.asarray(weight, dtype=np.float64)
    budget = PRODUCT_LIMIT / ACT_MAX - weight.shape[1] / 2  # rounding adds up to half a step per weight
    if compression is not None:
        tiles = tiles if tiles is not None else tile_rows(np.arange(weight.shape[0]), target.macs)
        groups = tiles if compression.groups == "tile" else [np.arange(weight.shape[0])]
        return compress_matrix(weight, bias, in_scale, out_scale, target, compression, groups, moments, budget)
    qmax = (1 << (target.weight_bits - 1)) - 1
    guard = np.sum(np.abs(weight), axis=1) / budget
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float64)
        largest = np.max(np.abs(bias).reshape(-1, weight.shape[0]), axis=0)
        guard = np.maximum(guard, largest / (BIAS_LIMIT * in_scale))
    max_abs = np.max(np.abs(weight), axis=1)
    row_scale = np.maximum(np.where(max_abs > 0, max_abs, 1.0) / qmax, guard)
    step = grid_steps(weight, qmax)
    row_scale = np.where(step >= guard, step, row_scale)  # NaN (no grid) compares false
    weights = np.clip(np.round(weight / row_scale[:, None]), -qmax, qmax).astype(np.int64)
    acc_scale = row_scale * in_scale
    pairs = [quantize_multiplier(s / out_scale) for s in acc_scale]
    qbias = None
    if bias is not None:
        qbias = np.clip(np.round(bias / acc_scale), ACC_MIN, ACC_MAX).astype(np.int64)
    return QMatrix(weights, np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64), qbias)


def grid_steps(weight: np.ndarray, qmax: int) -> np.ndarray:
    """Each row's step s if its weights are exactly integers q * s with |q| <= qmax (a pre-quantised
    model's dequantised weights), the finest such step; NaN where the row is on no grid.

    Weights of a pre-quantised model are already as exact as they will ever be: quantised again at
    max|w| / qmax they would lose up to half a step each. A row's coarsest grid is found from the
    ratios |w| / max|w| (max|w| is `units` steps, up to GRID_UNITS: 8-bit integers with a zero
    point), first on a sample of its columns, then on the whole row; it is then refined by the
    largest whole factor that still fits qmax. Float weights pass no such test (GRID_TOLERANCE is
    a few float32 roundings), so their rows keep the scale they always had."""
    weight = np.abs(np.asarray(weight, np.float64))
    max_abs = np.max(weight, axis=1, initial=0.0)
    ratios = weight / np.where(max_abs > 0, max_abs, 1.0)[:, None]
    units = np.arange(1, min(qmax, GRID_UNITS) + 1)
    sampled = np.stack([_on_grid(ratios[:, :GRID_SAMPLE], u) for u in units], axis=1)
    steps = np.full(len(weight), np.nan)
    for row in np.flatnonzero(sampled.any(axis=1) & (max_abs > 0)):
        found = next((u for u in units[sampled[row]] if _on_grid(ratios[row:row + 1], u)[0]), None)
        if found is not None:
            steps[row] = max_abs[row] / (found * (qmax // found))
    return steps


GRID_UNITS = 255  # the most steps a row's largest weight may be: uint8, or int8 less its zero point
GRID_SAMPLE = 8  # columns a row is tried on before the whole row is
GRID_TOLERANCE = 2.0 ** -20  # per unit of max|w|/s: float32 rounds w = q * s to 2^-24 of itself


def _on_grid(ratios: np.ndarray, units: int) -> np.ndarray:
    """Per row: is every ratio a whole number of 1/units (within float32 rounding)?"""
    v = ratios * units
    return np.all(np.abs(v - np.rint(v)) <= GRID_TOLERANCE * units, axis=1)


@dataclass(frozen=True)
class WeightPolicy:
    """How every matrix of a graph is quantised: the target, the compression, the input moments.
    `chosen` (passes/budget.py) gives matrices their own compression by name ("<node>/<matrix>",
    as the report names them); the others take `compression`."""

    target: Target
    compression: Compression | None = None
    moments: dict[str, np.ndarray] = field(default_factory=dict)
    chosen: Mapping[str, Compression | None] = field(default_factory=dict)
    first_moments: dict[tuple, np.ndarray | None] = field(default_factory=dict, compare=False)
    log: Callable[[str], None] = field(default=lambda line: None, compare=False, repr=False)

    def compression_of(self, name: str) -> Compression | None:
        """The compression of the matrix called `name`: its own if `chosen` has one, else the graph's."""
        return self.chosen[name] if name in self.chosen else self.compression

    def matrix(self, weight: np.ndarray, bias: np.ndarray | None, in_scale: float, out_scale: float,
               inputs: tuple[str, ...] = (), order: np.ndarray | None = None,
               height: int | None = None, name: str = "") -> QMatrix:
        """Quantise one matrix, and tile it: `order` is the order its rows are stored and computed
        in (None: as they are); `inputs` name the tensors whose features it multiplies (first
        known wins). A matrix several nodes read (one initialiser used twice) is compressed with
        the moments of its first reader for all of them, so its codebooks and index streams come
        out the same and weight memory stores them once (lowering.Lowering.data). `height` caps
        the rows of a tile below the MAC lanes (tile.recurrent_height); given, the tiles are whole
        tiles of that height and a tail (tile.row_tiles)."""
        compression = self.compression_of(name)
        moments = next((self.moments[n] for n in inputs if n in self.moments), None)
        if compression is not None:
            key = (np.asarray(weight).tobytes(), np.shape(weight), None if order is None else order.tobytes())
            moments = self.first_moments.setdefault(key, moments)
        tail = height is not None
        height = height or self.target.macs
        tiles = tile_rows(order, height, tail) if order is not None else None
        q = quantize_matrix(weight, bias, in_scale, out_scale, self.target, compression, moments, tiles)
        return dataclasses.replace(q, order=order, tiles=row_tiles(q.rows, height, tail))

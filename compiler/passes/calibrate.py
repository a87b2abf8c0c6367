"""Calibration: the range of every tensor over sample inputs, from the float model.

Without calibration data the compiler draws DEFAULT_SAMPLES inputs from a standard normal
distribution and says so: real ranges need real data (`--calibration CALIB.npz`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compiler.float_eval import run_float
from compiler.ir import Graph, Node
from compiler.ops import OpDef
from isa.errors import RnnaccelError

DEFAULT_SAMPLES = 16
MAX_FEATURES = 4096  # second moments are kept for tensors up to this many features
DEFAULT_SEED = 0


def default_calibration(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """DEFAULT_SAMPLES random samples for inputs of these shapes (graph input -> shape)."""
    rng = np.random.default_rng(DEFAULT_SEED)
    return {name: rng.standard_normal((DEFAULT_SAMPLES, *shape)) for name, shape in shapes.items()}


def check_calibration(shapes: Mapping[str, tuple[int, ...]], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The calibration arrays for inputs of these shapes, each shaped (samples, *input shape).

    An array of exactly the input's shape is one sample."""
    missing = [n for n in shapes if n not in data]
    if missing:
        raise RnnaccelError(f"calibration data lacks input(s) {', '.join(missing)} (it has "
                            f"{', '.join(map(str, data)) or 'no arrays'})")
    return {name: _calibration_array(name, np.asarray(data[name]), shape) for name, shape in shapes.items()}


def _calibration_array(name: str, value: np.ndarray, want: tuple[int, ...]) -> np.ndarray:
    samples = value[None] if value.ndim == len(want) else value
    if tuple(samples.shape[1:]) != want or samples.shape[0] == 0:
        raise RnnaccelError(f"calibration data for '{name}' has shape {list(value.shape)}; expected "
                            f"[samples, {', '.join(map(str, want))}] (or [{', '.join(map(str, want))}] for one sample)")
    if value.dtype.kind not in "biuf":
        raise RnnaccelError(f"calibration data for '{name}' has dtype {value.dtype}; expected real numbers")
    if not np.all(np.isfinite(value)):
        raise RnnaccelError(f"calibration data for '{name}' must be finite numbers")
    return samples.astype(np.float64)


@dataclass(frozen=True)
class Calibration:
    """What the samples tell: each tensor's largest magnitude (for its scale), the second
    moments of its last-axis features, E[x xᵀ] (how much each column of a consuming matrix
    matters, and how columns go together, for activation-aware compression), for each graph
    input, along each axis, every slice's largest magnitude (whether it packs quantities of
    different ranges, passes/packing.py), and the ranges inside ops that have values of their own
    (a recurrent layer's states: OpDef.float_ranges)."""

    max_abs: dict[str, float]
    moments: dict[str, np.ndarray]
    slice_max: dict[str, tuple[np.ndarray, ...]] = field(default_factory=dict)
    inner: dict[str, Any] = field(default_factory=dict)  # ranges inside an op, by its node's source

    def derived(self, graph: Graph) -> Calibration:
        """Stats for tensors a later pass derived from calibrated ones ('Y@steps' from 'Y', 'r@0' from 'r')."""
        new = [n for n in graph.shapes if n not in self.max_abs and n.rpartition("@")[0] in self.max_abs]
        base = {n: n.rpartition("@")[0] for n in new}
        return Calibration({**self.max_abs, **{n: self.max_abs[b] for n, b in base.items()}},
                           {**self.moments, **{n: self.moments[b] for n, b in base.items() if b in self.moments}},
                           self.slice_max, self.inner)


def _slice_max(values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Along each axis of a tensor (after the samples axis), each slice's largest magnitude."""
    magnitude = np.abs(values)
    return tuple(np.max(magnitude, axis=tuple(a for a in range(values.ndim) if a != axis), initial=0.0)
                 for axis in range(1, values.ndim))


def _max_abs(values: np.ndarray) -> float:
    """The largest |value| (0 for none), from the largest and the smallest value: no array of
    magnitudes as large as a whole sequence's values is made for one number."""
    if not values.size:
        return 0.0
    return abs(max(float(np.max(values)), -float(np.min(values))))  # abs: a max of -0.0 is 0.0


def _max_abs_each(values: dict[str, np.ndarray]) -> dict[str, float]:
    """Each tensor's _max_abs, once for tensors that are the same contiguous block of memory (a
    reshape or an aliased gather of another: on a long sequence, each a whole sequence's values).
    Every array stays alive in `values` meanwhile, so no address is reused."""
    found: dict[tuple[int, int, str], float] = {}

    def largest(v: np.ndarray) -> float:
        if not v.flags.c_contiguous:
            return _max_abs(v)
        block = (v.__array_interface__["data"][0], v.size, v.dtype.str)
        if block not in found:
            found[block] = _max_abs(v)
        return found[block]
    return {name: largest(v) for name, v in values.items()}


def _check_finite(inner: dict[str, Any]) -> None:
    """A recurrent layer whose float states overflow on the calibration samples (unbounded gate
    activations that diverge, say) has no range a fixed-point format could hold. (An op whose
    output is not finite where its input is finite, ln 0 say, says so itself: ops/mantissa.py.)"""
    overflowing = [source for source, ranges in inner.items() if not ranges.finite()]
    if overflowing:
        raise RnnaccelError(f"'{overflowing[0]}': the float model's recurrent states reach inf or NaN on the "
                            f"calibration samples, so no fixed-point format holds them; check the layer's "
                            f"activations or the calibration data")


def _moments(values: np.ndarray) -> np.ndarray:
    rows = values.reshape(-1, values.shape[-1])
    return rows.T @ rows / len(rows)


def calibrate(graph: Graph, data: dict[str, np.ndarray], moments: bool = True) -> Calibration:
    """The stats of every tensor over the samples; the second moments, a recurrent layer's step
    moments among them, only with `moments` (only activation-aware compression reads them, and on
    a long sequence they cost as much as the float run)."""
    inner: dict[str, Any] = {}

    def semantics(op: OpDef) -> Callable:
        """Float semantics; an op with inner ranges notes them on the way."""
        if op.float_ranges is None:
            return op.float_eval

        def run(node: Node, *inputs: np.ndarray | None) -> Any:
            outputs, inner[node.source] = op.float_ranges(node, *inputs, moments=moments)
            return outputs
        return run

    with np.errstate(over="ignore", invalid="ignore"):  # _check_finite or the op says so, in one line
        values = run_float(graph, data, semantics)
    _check_finite(inner)
    return Calibration(
        max_abs=_max_abs_each(values),
        moments={name: _moments(v) for name, v in values.items() if moments and v.ndim > 1 and v.size
                 and v.shape[-1] <= MAX_FEATURES},
        slice_max={name: _slice_max(values[name]) for name in graph.inputs},
        inner=inner,
    )

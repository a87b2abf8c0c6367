"""Running a recurrent layer over its sequences, the same way in float and in integers: every
direction, batch element and valid step, as ONNX defines it. Every value carries a leading
samples axis."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler.ir import Node


def scan(node: Node, x: np.ndarray, h0: np.ndarray | None, c0: np.ndarray | None, step: Callable,
         dtype: type) -> list[np.ndarray]:
    """Run a recurrent layer: every direction, batch element and valid step, as ONNX defines it.

    `step(d, x_t, h, c) -> (h, c)` computes one cell on (samples, ...) arrays. Steps past a
    sequence's length leave the state alone and Y zero; a reverse direction runs from the last
    valid step down. Absent initial states are zeros; so are the final states of an empty
    sequence (length 0), as ONNX Runtime gives them, whatever the initial state.
    """
    a = node.attrs
    seq = x if a.layout == 0 else np.swapaxes(x, 1, 2)  # (S, T, N, I)
    samples, dirs, batch, hidden = seq.shape[0], len(a.directions), a.batch, a.hidden
    y = np.zeros((samples, a.steps, dirs, batch, hidden), dtype)
    h_all, c_all = (_states(s, a.layout, (samples, dirs, batch, hidden), dtype) for s in (h0, c0))
    for d, direction in enumerate(a.directions):
        for b in range(batch):
            h, c = h_all[:, d, b].copy(), c_all[:, d, b].copy()
            length = a.seq_lens[b]
            for t in range(length) if direction == "forward" else reversed(range(length)):
                h, c = step(d, seq[:, t, b], h, c)
                y[:, t, d, b] = h
            h_all[:, d, b], c_all[:, d, b] = (h, c) if length else (0, 0)
    if a.y_steps is not None:  # only these steps of Y are read (passes/trim.py)
        y = y[:, list(a.y_steps)]
    if a.layout == 1:
        return [np.moveaxis(y, 3, 1), np.swapaxes(h_all, 1, 2), np.swapaxes(c_all, 1, 2)]
    return [y, h_all, c_all]


def _states(value: np.ndarray | None, layout: int, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Initial states as (samples, D, N, H), zeros where absent."""
    if value is None:
        return np.zeros(shape, dtype)
    return np.array(value if layout == 0 else np.swapaxes(value, 1, 2), dtype=dtype)

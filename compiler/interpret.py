"""What the float model and the golden reference share: walking the graph in order, and the
layouts of recurrent sequences and states. Every value carries a leading samples axis."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler.ir import Graph, Node


def interpret(graph: Graph, values: dict[str, np.ndarray], ops: dict[str, Callable],
              constant: Callable[[Node], np.ndarray]) -> dict[str, np.ndarray]:
    """Run `ops[node.op](node, *inputs)` over the graph; `values` holds the graph inputs."""
    samples = next(iter(values.values())).shape[0] if values else 1
    for node in graph.nodes:
        if node.op == "constant":
            value = constant(node)
            results = [np.broadcast_to(value, (samples, *value.shape))]
        else:
            results = ops[node.op](node, *[values[n] if n else None for n in node.inputs])
            results = results if isinstance(results, list) else [results]
        for name, value in zip(node.outputs, results):
            if name:
                values[name] = value.reshape((samples, *graph.shapes[name]))
    return values


def gather(node: Node, *xs: np.ndarray) -> np.ndarray:
    flat = np.concatenate([x.reshape(x.shape[0], -1) for x in xs], axis=1)
    return flat[:, node.attrs["index"]]


def scan(node: Node, x: np.ndarray, h0: np.ndarray | None, c0: np.ndarray | None, step: Callable,
         dtype: type) -> list[np.ndarray]:
    """Run a recurrent layer: every direction, batch element and valid step, as ONNX defines it.

    `step(d, x_t, h, c) -> (h, c)` computes one cell on (samples, ...) arrays. Steps past a
    sequence's length leave the state alone and Y zero; a reverse direction runs from the last
    valid step down. Absent initial states are zeros; so are the final states of an empty
    sequence (length 0), as ONNX Runtime gives them, whatever the initial state.
    """
    a = node.attrs
    seq = x if a["layout"] == 0 else np.swapaxes(x, 1, 2)  # (S, T, N, I)
    samples, dirs, batch, hidden = seq.shape[0], len(a["directions"]), a["batch"], a["hidden"]
    y = np.zeros((samples, a["steps"], dirs, batch, hidden), dtype)
    h_all, c_all = (_states(s, a["layout"], (samples, dirs, batch, hidden), dtype) for s in (h0, c0))
    for d, direction in enumerate(a["directions"]):
        for b in range(batch):
            h, c = h_all[:, d, b].copy(), c_all[:, d, b].copy()
            length = a["seq_lens"][b]
            for t in range(length) if direction == "forward" else reversed(range(length)):
                h, c = step(d, seq[:, t, b], h, c)
                y[:, t, d, b] = h
            h_all[:, d, b], c_all[:, d, b] = (h, c) if length else (0, 0)
    if "y_steps" in a:  # only these steps of Y are read (passes/trim.py)
        y = y[:, list(a["y_steps"])]
    if a["layout"] == 1:
        return [np.moveaxis(y, 3, 1), np.swapaxes(h_all, 1, 2), np.swapaxes(c_all, 1, 2)]
    return [y, h_all, c_all]


def _states(value: np.ndarray | None, layout: int, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Initial states as (samples, D, N, H), zeros where absent."""
    if value is None:
        return np.zeros(shape, dtype)
    return np.array(value if layout == 0 else np.swapaxes(value, 1, 2), dtype=dtype)

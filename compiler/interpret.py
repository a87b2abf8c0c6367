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


def time_major(x: np.ndarray, layout: int) -> np.ndarray:
    """A sequence input as (samples, T, N, I), whatever the layout."""
    return x if layout == 0 else np.swapaxes(x, 1, 2)


def state_in(value: np.ndarray | None, layout: int) -> np.ndarray | None:
    """An initial state as (samples, N, H)."""
    if value is None:
        return None
    return value[:, 0] if layout == 0 else value[:, :, 0]


def recurrent_outputs(ys: list[np.ndarray], h: np.ndarray, c: np.ndarray, layout: int) -> list[np.ndarray]:
    """Y, Y_h and Y_c in the layer's layout, from the per-step (samples, N, H) states."""
    y = np.stack(ys, axis=1)[:, :, None]  # (S, T, 1, N, H)
    if layout == 1:
        return [np.moveaxis(y, 3, 1), h[:, :, None], c[:, :, None]]
    return [y, h[:, None], c[:, None]]

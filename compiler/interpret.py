"""Walking the graph in order with one of the ops' semantics: the float model (float_eval.py)
and the golden reference (reference.py) are both this walk. Every value carries a leading
samples axis, so a whole calibration set runs at once."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler.ir import Graph
from compiler.ops import OPS, OpDef


def interpret(graph: Graph, values: dict[str, np.ndarray], semantics: Callable[[OpDef], Callable]
              ) -> dict[str, np.ndarray]:
    """Run `semantics(op)(node, *inputs)` over the graph; `values` holds the graph inputs. An op
    without inputs (a constant) gives one sample, the same for all."""
    samples = next(iter(values.values())).shape[0] if values else 1
    for node in graph.nodes:
        results = semantics(OPS[node.op])(node, *[values[n] if n else None for n in node.inputs])
        for name, value in zip(node.outputs, results if isinstance(results, list) else [results]):
            if name:
                shape = (samples, *graph.shapes[name])
                values[name] = np.broadcast_to(value, shape) if len(value) != samples else value.reshape(shape)
    return values

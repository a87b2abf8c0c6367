"""A float interpreter for the graph IR, used for calibration and as the compiler's own float view
of a model: each op's float semantics (compiler/ops), run in graph order."""

from __future__ import annotations

import numpy as np

from compiler.interpret import interpret
from compiler.ir import Graph


def run_float(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor's float value; `inputs` carry a leading sample axis."""
    values = {name: np.asarray(inputs[name], dtype=np.float64) for name in graph.inputs}
    return interpret(graph, values, lambda op: op.float_eval)

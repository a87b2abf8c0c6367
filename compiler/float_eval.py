"""A float interpreter for the graph IR, used for calibration and as the compiler's own float view
of a model: each op's float semantics (compiler/ops), run in graph order."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler.interpret import interpret
from compiler.ir import Graph
from compiler.ops import OpDef


def run_float(graph: Graph, inputs: dict[str, np.ndarray],
              semantics: Callable[[OpDef], Callable] = lambda op: op.float_eval) -> dict[str, np.ndarray]:
    """Every tensor's float value; `inputs` carry a leading sample axis. Calibration passes float
    semantics of its own that also note what it needs on the way."""
    values = {name: np.asarray(inputs[name], dtype=np.float64) for name in graph.inputs}
    return interpret(graph, values, semantics)

"""The golden reference: the quantised graph evaluated layer by layer in integer numpy.

Each op's fixed-point semantics (compiler/ops) are written from the numerics contract, apart
from the simulator's instruction semantics: they know layers, not instructions, tiles, addresses
or schedules. The simulation of a compiled program must equal this bit for bit. It shares only
the primitives of isa.numerics, the contract's single definition of rounding, saturation and
the activation tables.
"""

from __future__ import annotations

import numpy as np

from compiler.interpret import interpret
from compiler.ir import Graph
from isa import numerics as nx


def run_reference(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor's integer value; `inputs` are float arrays with a leading sample axis."""
    values = {n: nx.quantize(inputs[n], graph.boundary_scale(n)) for n in graph.inputs}
    return interpret(graph, values, lambda op: op.reference)


def reference_outputs(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The graph outputs as integers, as the chip should write them to host memory."""
    values = run_reference(graph, inputs)
    return {name: values[name] for name in graph.outputs}

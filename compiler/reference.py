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
from compiler.passes.streaming import store_runs
from isa import numerics as nx


def run_reference(graph: Graph, inputs: dict[str, np.ndarray], state: dict[str, np.ndarray] | None = None
                  ) -> dict[str, np.ndarray]:
    """Every tensor's integer value; `inputs` are float arrays with a leading sample axis, `state`
    the bound inputs' integers (zeros, a new stream, when not given)."""
    values = {n: nx.quantize(inputs[n], graph.boundary_scale(n)) for n in graph.host_inputs}
    samples = len(next(iter(values.values()))) if values else 1
    for name, _ in graph.bound:
        values[name] = (state or {}).get(name, np.zeros((samples, *graph.shapes[name]), np.int64))
    return interpret(graph, values, lambda op: op.reference)


def reference_stream(graph: Graph, frames: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """A streaming graph run frame after frame from a new stream: each run's host outputs as
    integers, its bound state carried to the next run as the chip stores it (store_runs)."""
    state, results = None, []
    for inputs in frames:
        values = run_reference(graph, inputs, state)
        state = {name: _stored(graph, name, output, values[output]) for name, output in graph.bound}
        results.append({name: values[name] for name in graph.host_outputs})
    return results


def _stored(graph: Graph, name: str, output: str, value: np.ndarray) -> np.ndarray:
    flat = value.reshape(len(value), -1).copy()
    for start, stop, rescale in store_runs(graph, name, output):
        if rescale is not None:
            flat[:, start:stop] = nx.multiply(flat[:, start:stop], *rescale)
    return flat.reshape(len(value), *graph.shapes[name])


def reference_outputs(graph: Graph, inputs: dict[str, np.ndarray],
                      state: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The graph outputs as integers, as the chip should write them to host memory; `state` is
    what the chip keeps between runs (run_reference's), zero where not given."""
    values = run_reference(graph, inputs, state)
    return {name: values[name] for name in graph.host_outputs}

"""The golden reference: the quantised graph evaluated layer by layer in integer numpy.

It is written from the numerics contract, apart from the simulator's instruction semantics:
it knows layers, not instructions, tiles, addresses or schedules. The simulation of a compiled
program must equal it bit for bit. It shares only the primitives of isa.numerics, which are
the contract's single definition of rounding, saturation and the activation tables.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler.interpret import gather, interpret, scan
from compiler.ir import RECURRENT_OPS, Graph, Node
from compiler.reference_recurrent import activation, project, run_cell
from compiler.reference_softmax import SOFTMAX_INTEGER_OPS
from isa import numerics as nx


def _fc(node: Node, x: np.ndarray) -> np.ndarray:
    return project(node.attrs["q"], x)


def _recurrent(node: Node, x: np.ndarray, h0: np.ndarray | None = None, c0: np.ndarray | None = None) -> list:
    return scan(node, x, h0, c0, run_cell(node), np.int64)


INTEGER_OPS: dict[str, Callable] = {
    "fc": _fc,
    **dict.fromkeys(RECURRENT_OPS, _recurrent),
    "relu": lambda node, x: nx.relu(x),
    "table": lambda node, x: activation(node.attrs["table"], x),
    "gather": gather,
    "rescale": lambda node, x: nx.multiply(x, node.attrs["mult"], node.attrs["shift"]),
    "add_const": lambda node, x: nx.add(nx.multiply(x, node.attrs["mult"], node.attrs["shift"]), node.attrs["q"]),
    "mul_const": lambda node, x: nx.multiply(x, node.attrs["q"], node.attrs["shift"]),
    "add": lambda node, x, y: nx.add(x, y),
    "sub": lambda node, x, y: nx.subtract(x, y),
    "mul": lambda node, x, y: nx.multiply(x, y, node.attrs["shift"]),
    **SOFTMAX_INTEGER_OPS,
}


def run_reference(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor's integer value; `inputs` are float arrays with a leading sample axis."""
    values = {n: nx.quantize(inputs[n], graph.scales[n]) for n in graph.inputs}
    return interpret(graph, values, INTEGER_OPS, lambda node: node.attrs["q"])


def reference_outputs(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The graph outputs as integers, as the chip should write them to host memory."""
    values = run_reference(graph, inputs)
    return {name: values[name] for name in graph.outputs}

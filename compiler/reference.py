"""The golden reference: the quantised graph evaluated layer by layer in integer numpy.

It is written from the numerics contract, apart from the simulator's instruction semantics:
it knows layers, not instructions, tiles, addresses or schedules. The simulation of a compiled
program must equal it bit for bit. It shares only the primitives of isa.numerics, which are
the contract's single definition of rounding, saturation and the activation tables.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler.interpret import gather, interpret, recurrent_outputs, state_in, time_major
from compiler.ir import Graph, Node, QMatrix
from compiler.passes.quantize import SHIFT_F_C, SHIFT_I_G, SHIFT_O_TC
from isa import numerics as nx

TABLES = {f: nx.activation_table(f) for f in nx.TABLE_FUNCS}


def _accumulate(q: QMatrix, x: np.ndarray) -> np.ndarray:
    acc = np.einsum("...k,rk->...r", x.astype(np.int64), q.weights)
    return acc if q.bias is None else acc + q.bias


def _fc(node: Node, x: np.ndarray) -> np.ndarray:
    q = node.attrs["q"]
    return nx.requantize(_accumulate(q, x), q.mult, q.shift)


def _lstm(node: Node, x: np.ndarray, h0: np.ndarray | None, c0: np.ndarray | None) -> list[np.ndarray]:
    a = node.attrs
    hidden, layout, qx, qh = a["hidden"], a["layout"], a["qx"], a["qh"]
    seq = time_major(x, layout)
    h, c = state_in(h0, layout), state_in(c0, layout)
    ys = []
    for t in range(seq.shape[1]):
        gates = nx.requantize(_accumulate(qx, seq[:, t]), qx.mult, qx.shift)
        if h is not None:
            gates = nx.requantize_add(_accumulate(qh, h), qh.mult, qh.shift, gates)
        sig = nx.table_lookup(TABLES["sigmoid"], gates[..., : 3 * hidden])
        i, o, f = np.split(sig, 3, axis=-1)
        g = nx.table_lookup(TABLES["tanh"], gates[..., 3 * hidden:])
        ig = nx.multiply(i, g, SHIFT_I_G)
        c = ig if c is None else nx.add(nx.multiply(f, c, SHIFT_F_C), ig)
        h = nx.multiply(o, nx.table_lookup(TABLES["tanh"], c), SHIFT_O_TC)
        ys.append(h)
    return recurrent_outputs(ys, h, c, layout)


INTEGER_OPS: dict[str, Callable] = {
    "fc": _fc,
    "lstm": _lstm,
    "relu": lambda node, x: nx.relu(x),
    "sigmoid": lambda node, x: nx.table_lookup(TABLES["sigmoid"], x),
    "tanh": lambda node, x: nx.table_lookup(TABLES["tanh"], x),
    "gather": gather,
    "rescale": lambda node, x: nx.multiply(x, node.attrs["mult"], node.attrs["shift"]),
}


def run_reference(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor's integer value; `inputs` are float arrays with a leading sample axis."""
    values = {n: nx.quantize(inputs[n], graph.scales[n]) for n in graph.inputs}
    return interpret(graph, values, INTEGER_OPS, lambda node: node.attrs["q"])


def reference_outputs(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The graph outputs as integers, as the chip should write them to host memory."""
    values = run_reference(graph, inputs)
    return {name: values[name] for name in graph.outputs}

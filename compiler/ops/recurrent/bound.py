"""The recurrence bound of each recurrent layer (isa.bounds.recurrence_cycles), measured on the
compiled program: what a schedule of the layer could reach at best, given that step t+1's product
waits for h_t. It goes into the program (the simulator's statistics show it) and the report.

The product is the layer's recurrent matrices (R; a GRU without linear_before_reset: its z/r rows
and its candidate rows) over every step that runs them, every direction and batch element; the
vector chain is the dependent run through the vector work that follows the layer's last `Rh`
instruction in the code (its final step: every unit group's chain is the same, and interleaving
changes no dependency). Both come from the code as written, loops not expanded, so the cost does
not grow with the steps. A GRU without linear_before_reset multiplies r*h by its candidate rows
inside the step: the chain is the one after that product.
"""

from __future__ import annotations

import bisect

from compiler.ir import Graph, Node
from isa.bounds import recurrence_cycles, vector_chain
from isa.container import Program

RECURRENT_OPS = frozenset({"lstm", "gru", "rnn"})
RECURRENT_MATRICES = ("qh", "qzr", "qhh")


def recurrence_bounds(graph: Graph, program: Program) -> tuple[tuple[str, int], ...]:
    """(node, cycles) per recurrent layer with a recurrent product, by node name."""
    nodes = {node.source: node for node in graph.nodes if node.op in RECURRENT_OPS and _waves(node)}
    if not nodes:
        return ()
    starts, code = [loc.pc for loc in program.locs], {name: [] for name in nodes}
    for pc, instr in enumerate(program.code):
        loc = program.locs[bisect.bisect_right(starts, pc) - 1] if starts and starts[0] <= pc else None
        if loc is not None and loc.node in code:
            code[loc.node].append((instr, loc.what.endswith("Rh") and instr.op.unit == "MAC"))
    bounds = {name: _layer_bound(nodes[name], code[name], program) for name in nodes}
    return tuple(sorted((name, cycles) for name, cycles in bounds.items() if cycles is not None))


def _layer_bound(node: Node, instrs: list, program: Program) -> int | None:
    products = [i for i, (_, product) in enumerate(instrs) if product]
    if not products:
        return None
    tail = [instr for instr, _ in instrs[products[-1] + 1:] if instr.op.unit == "VEC"]
    return recurrence_cycles(_product_macs(node), _waves(node), vector_chain(tail, program.target),
                             program.target)


def _product_macs(node: Node) -> int:
    """Useful MACs of the recurrent products over the whole layer: each direction's recurrent
    matrices, times the steps of each batch element that run them."""
    a = node.attrs
    per_step = sum(q.rows * q.cols for cell in a.cells for key, q in cell.named().items() if key in RECURRENT_MATRICES)
    return per_step * sum(max(length - _skipped(node), 0) for length in a.seq_lens)


def _skipped(node: Node) -> int:
    """An LSTM's first step runs no R h when the layer has no initial h (and keeps no state)."""
    has_h0 = len(node.inputs) > 1 and bool(node.inputs[1])
    return int(node.op == "lstm" and not node.attrs.stream and not has_h0)


def _waves(node: Node) -> int:
    """The waves of steps that run a recurrent product, counting the longest sequence."""
    return max(max(node.attrs.seq_lens, default=0) - _skipped(node), 0)

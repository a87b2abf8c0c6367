"""The recurrence bound of each recurrent layer (isa.bounds.recurrence_cycles), measured on the
compiled program: what a schedule of the layer could reach at best, given that step t+1's product
waits for h_t. It goes into the program (the simulator's statistics show it) and the report.

The product is every instruction of the layer tagged `Rh` as executed (loops expanded); the
vector chain is the dependent run through the vector work that follows the layer's last product,
its final step (every unit group's chain is the same; interleaving them changes no dependency).
A GRU without linear_before_reset multiplies r*h by its candidate rows inside the step: that
product counts with the others, and the chain is the one after it.
"""

from __future__ import annotations

import bisect

from compiler.ir import Graph, Node
from isa.bounds import recurrence_cycles, vector_chain
from isa.container import Program
from isa.loops import expand_program
from isa.table import evaluate

RECURRENT_OPS = frozenset({"lstm", "gru", "rnn"})


def recurrence_bounds(graph: Graph, program: Program) -> tuple[tuple[str, int], ...]:
    """(node, cycles) per recurrent layer with a recurrent product, by node name."""
    nodes = [node for node in graph.nodes if node.op in RECURRENT_OPS and _waves(node)]
    if not nodes:
        return ()
    starts, env = [loc.pc for loc in program.locs], program.target.env()
    executed: dict[str, list] = {node.source: [] for node in nodes}
    for pc, instr in expand_program(program):
        loc = program.locs[bisect.bisect_right(starts, pc) - 1]
        if loc.node in executed:
            executed[loc.node].append((instr, loc.what.endswith("Rh") and instr.op.unit == "MAC"))
    bounds = {node.source: _layer_bound(node, executed[node.source], env, program) for node in nodes}
    return tuple(sorted((name, cycles) for name, cycles in bounds.items() if cycles is not None))


def _layer_bound(node: Node, instrs: list, env: dict, program: Program) -> int | None:
    products = [i for i, (_, product) in enumerate(instrs) if product]
    if not products:
        return None
    macs = sum(evaluate(instr.op.macs, instr.env(env)) for instr, product in instrs if product)
    tail = [instr for instr, _ in instrs[products[-1] + 1:] if instr.op.unit == "VEC"]
    return recurrence_cycles(macs, _waves(node), vector_chain(tail, program.target), program.target)


def _waves(node: Node) -> int:
    """The waves of steps that run a recurrent product: every step but an LSTM's first when it has
    no initial h (R h is skipped there), counting the longest sequence."""
    a = node.attrs
    steps = max(a.seq_lens, default=0)
    has_h0 = len(node.inputs) > 1 and bool(node.inputs[1])
    skipped = node.op == "lstm" and not a.stream and not has_h0
    return max(steps - skipped, 0)

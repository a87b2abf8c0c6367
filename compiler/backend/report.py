"""The compile report (`--report`): per layer and in total, work, storage and an estimate.

`est_cycles` is the sum of the busy cycles of the layer's instructions on all units: the
latency if nothing overlapped; `bound_cycles` is the least any schedule could take
(isa.bounds); a recurrent layer's `recurrence_bound_cycles` is the least its recurrence allows
(the program's: the largest of its layers'). The simulator's `cycles` is the real figure.
Energy (docs/energy.md) counts the events of isa/energy.py over the same instructions, so a
layer's `energy_uj` (its dynamic energy) is the simulator's; the total adds leakage over the
cycles no schedule beats (the larger of the two bounds), so it is at most the simulator's.
"""

from __future__ import annotations

import bisect
import functools
import math
import re
from dataclasses import dataclass

import numpy as np

from compiler.ir import Graph, Node
from compiler.kernel import Kernel
from compiler.ops import OPS
from compiler.passes.lowering import period
from compiler.passes.reroll import LOOP_TABLES
from isa.bounds import bound_cycles, vector_elements
from isa.container import Program
from isa.encoding import Instruction
from isa.energy import add_events, breakdown_uj, energy_figures, instruction_events, no_events
from isa.loops import counted
from isa.table import WORD_BYTES, Op, evaluate
from isa.tensors import StateDesc


def build_report(graph: Graph, kernel: Kernel, program: Program) -> dict:
    """Work is counted over the instructions as executed: loops expanded (isa.loops), each loop-body
    instruction's figures computed once and multiplied by its iterations where the fields that
    advance are addresses the figures do not read, so the report costs per instruction of code,
    not per timestep. One row per ONNX node (`source`), keyed as the program's debug locations and
    weight buffers are, so that every instruction and byte lands in exactly one row, and the
    total's useful MACs are the program's, as the simulator counts them."""
    target_env = program.target.env()
    executed = counted(program, _steady)
    starts = [loc.pc for loc in program.locs]
    by_node: dict[str, list[Figures]] = {}
    for pc, instr, times in executed:
        by_node.setdefault(_node_at(program, starts, pc), []).append(_figures(instr, times, target_env))
    owners = _owners(graph, kernel)
    stored, sharing = _stored_bytes(kernel, owners), _sharing(kernel, owners)
    layers = [_layer(nodes, by_node.get(source, []), stored.get(source, 0), program, sharing.get(source, ()))
              for source, nodes in _sources(graph).items()]
    total = {key: sum(layer[key] for layer in layers) for key in ("weight_count", "fp32_bytes", "stored_bytes")}
    every = [figures for node in by_node.values() for figures in node]
    total |= {"op": "model", "mac_ops": sum(f.macs for f in every),
              "compression_ratio": compression_ratio(total["fp32_bytes"], total["stored_bytes"]),
              "weight_bytes_read": sum(f.wmem_read for f in every),
              "est_cycles": sum(f.busy for f in every),
              "bound_cycles": _bound(every, program),
              **_recurrence(max(dict(program.recurrence).values(), default=None))}
    total |= {**_energy(every, program, max(total["bound_cycles"], total.get("recurrence_bound_cycles", 0))),
              "code_bytes": len(program.code) * WORD_BYTES + _stride_bytes(kernel),
              "instructions": len(program.code)}
    state = [_state(d) for d in program.state]
    return {"model": program.model, "target": program.target.to_dict(), "layers": layers, "total": total,
            **({"state": state} if state else {})}


@dataclass(frozen=True)
class Figures:
    """What the report adds up of one instruction, times the number of times it runs."""

    macs: int
    busy: int
    wmem_read: int
    vec_elements: int
    events: dict[str, int]  # the energy model's, without leakage (isa/energy.py)


def _figures(instr: Instruction, times: int, target_env: dict) -> Figures:
    env = instr.env(target_env)
    wmem = sum(evaluate(a.length, env) for a in instr.op.reads if a.memory == "wmem")
    elements = vector_elements(instr) if instr.op.unit == "VEC" else 0
    events = no_events()
    add_events(events, instruction_events(instr, target_env, *instr.footprint(target_env)), times)
    return Figures(times * evaluate(instr.op.macs, env), times * evaluate(instr.op.cycles, env), times * wmem,
                   times * elements, events)


def _events(figures: list[Figures]) -> dict[str, int]:
    total = no_events()
    for f in figures:
        add_events(total, f.events)
    return total


def _energy(figures: list[Figures], program: Program, cycles: int) -> dict:
    """The total's energy: every instruction's events, and leakage over `cycles`."""
    return energy_figures({**_events(figures), "cycles": cycles}, program.target, sum(f.macs for f in figures))


def _dynamic_uj(figures: list[Figures], program: Program) -> float:
    """A layer's energy: its instructions' events (leakage belongs to the whole run)."""
    return math.fsum(breakdown_uj(_events(figures), program.target).values())


def _steady(instr: Instruction, strides: np.ndarray) -> bool:
    """Whether every iteration of a loop-body instruction has the same figures: no field that
    advances appears in its MAC or cycle formula or the length of anything it reads or writes,
    nor is the vector count `n`."""
    advancing = {f.name for f, s in zip(instr.op.fields, strides) if s}
    return not advancing & _formula_names(instr.op)


@functools.cache
def _formula_names(op: Op) -> frozenset[str]:
    exprs = [op.macs, op.cycles, *(a.length for a in op.reads + op.writes)]
    return frozenset({"n", *(name for expr in exprs for name in re.findall(r"[A-Za-z_]\w*", expr))})


def _state(desc: StateDesc) -> dict:
    """A value a streaming program keeps in activation memory between runs (int16 elements)."""
    return {"name": desc.name, **({"output": desc.output} if desc.output else {}),
            "shape": list(desc.shape or (desc.size,)), "elements": desc.size, "bytes": 2 * desc.size}


def _sources(graph: Graph) -> dict[str, list[Node]]:
    """The IR nodes of each ONNX node that computes: quantisation puts the `rescale`s an input
    needs before the node it feeds, under that node's source, so a source's last node is its op."""
    groups: dict[str, list[Node]] = {}
    for node in graph.nodes:
        groups.setdefault(node.source, []).append(node)
    return {source: nodes for source, nodes in groups.items() if OPS[nodes[-1].op].kind != "layout"}


def _parameters(value) -> int:
    """How many numbers a parameter holds: a broadcast constant counts its repeating run once."""
    return period(np.asarray(value).ravel())


def _stride_bytes(kernel: Kernel) -> int:
    """Loop stride tables live in weight memory but are part of the code."""
    return sum(b.size for b in kernel.buffers.values() if b.name.startswith(LOOP_TABLES))


def _node_at(program: Program, starts: list[int], pc: int) -> str:
    index = bisect.bisect_right(starts, pc) - 1
    return program.locs[index].node if index >= 0 else ""


def _bound(figures: list[Figures], program: Program) -> int:
    return bound_cycles(sum(f.macs for f in figures), sum(f.vec_elements for f in figures), program.target)


def _owners(graph: Graph, kernel: Kernel) -> dict[str, str]:
    """The node each weight-memory buffer belongs to (buffers are named `source/...`), asked-for
    names of shared buffers included. A source may hold '/' (`lstm/initial_h` beside `lstm`), so a
    buffer belongs to the longest source it starts with."""
    sources, out = {node.source for node in graph.nodes}, {}
    names = [b.name for b in kernel.buffers.values() if b.memory == "wmem"] + list(kernel.shared)
    for name in names:
        owners = [name[:i] for i, char in enumerate(name) if char == "/" and name[:i] in sources]
        if owners:
            out[name] = owners[-1]
    return out


def _stored_bytes(kernel: Kernel, owners: dict[str, str]) -> dict[str, int]:
    """Weight-memory bytes per node; a payload several nodes read counts for the first only."""
    out: dict[str, int] = {}
    for name, source in owners.items():
        if name in kernel.buffers:
            out[source] = out.get(source, 0) + kernel.buffers[name].size
    return out


def _sharing(kernel: Kernel, owners: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """Per node whose every matrix (weights-region buffer) is another node's (the same initialiser
    read twice): the nodes that store them. Its weights are counted there, once."""
    held = {name: kernel.shared.get(name, name) for name in owners}  # each name -> the buffer holding it
    matrices: dict[str, list[str]] = {}
    for name, source in owners.items():
        if kernel.buffers[held[name]].region == "weights":
            matrices.setdefault(source, []).append(name)
    return {source: tuple(sorted({owners[held[n]] for n in names}))
            for source, names in matrices.items() if all(n in kernel.shared for n in names)}


def _layer(nodes: list[Node], mine: list[Figures], stored: int, program: Program,
           shares: tuple[str, ...]) -> dict:
    """One node's row; a node that reads another's stored matrices counts no weights of its own
    and names the nodes that hold them (`shares_weights_with`)."""
    params = [OPS[node.op].parameters(node.attrs) for node in nodes]
    states = OPS[nodes[-1].op].states(nodes[-1])
    padding = sum(OPS[node.op].padding_macs(node, program.target) for node in nodes)
    weights = 0 if shares else sum(_parameters(value) for p in params for value in p.weights.values())
    biases = sum(value.size for p in params for value in p.biases.values())
    return {
        "name": nodes[-1].source,
        "op": nodes[-1].op,
        "mac_ops": sum(f.macs for f in mine),
        "weight_count": int(weights),
        "fp32_bytes": int(4 * (weights + biases)),
        "stored_bytes": int(stored),
        "compression_ratio": compression_ratio(4 * (weights + biases), stored),
        "est_cycles": sum(f.busy for f in mine),
        "bound_cycles": _bound(mine, program),
        **_recurrence(dict(program.recurrence).get(nodes[-1].source)),
        "weight_bytes_read": sum(f.wmem_read for f in mine),
        "energy_uj": _dynamic_uj(mine, program),
        **({"padding_mac_ops": padding} if padding else {}),
        **({"states": states} if states else {}),
        **({"shares_weights_with": list(shares)} if shares else {}),
    }


def _recurrence(cycles: int | None) -> dict:
    return {} if cycles is None else {"recurrence_bound_cycles": cycles}


def compression_ratio(fp32: int, stored: int) -> float | None:
    return round(fp32 / stored, 3) if stored else None

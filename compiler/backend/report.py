"""The compile report (`--report`): per layer and in total, work, storage and an estimate.

`est_cycles` is the sum of the busy cycles of the layer's instructions on all units: the
latency if nothing overlapped. The simulator's `cycles` is the real figure.
"""

from __future__ import annotations

from compiler.ir import Graph, Node
from compiler.kernel import Kernel
from isa.container import Program
from isa.table import WORD_BYTES, evaluate

WEIGHT_ATTRS = {"fc": ("weight",), "lstm": ("W", "R")}
BIAS_ATTRS = {"fc": ("bias",), "lstm": ("B",)}


def build_report(graph: Graph, kernel: Kernel, program: Program) -> dict:
    target_env = program.target.env()
    per_pc = [(loc_node, instr) for loc_node, instr in zip(_loc_nodes(program), program.code)]
    layers = [_layer(node, kernel, per_pc, target_env) for node in graph.nodes if node.op != "gather"]
    total = {key: sum(layer[key] for layer in layers) for key in ("mac_ops", "weight_count", "fp32_bytes",
                                                                   "stored_bytes", "est_cycles")}
    total["weight_bytes_read"] = sum(_wmem_read(i, target_env) for i in program.code)
    total["est_cycles"] = sum(_busy(i, target_env) for i in program.code)
    total |= {"op": "model", "compression_ratio": _ratio(total["fp32_bytes"], total["stored_bytes"]),
              "code_bytes": len(program.code) * WORD_BYTES, "instructions": len(program.code)}
    return {"model": program.model, "target": program.target.to_dict(), "layers": layers, "total": total}


def _loc_nodes(program: Program) -> list[str]:
    nodes, locs = [], list(program.locs)
    for pc in range(len(program.code)):
        while len(locs) > 1 and locs[1].pc <= pc:
            locs.pop(0)
        nodes.append(locs[0].node if locs else "")
    return nodes


def _layer(node: Node, kernel: Kernel, per_pc: list, target_env: dict) -> dict:
    mine = [instr for name, instr in per_pc if name == node.source]
    weights = sum(node.attrs[a].size for a in WEIGHT_ATTRS.get(node.op, ()))
    biases = sum(node.attrs[a].size for a in BIAS_ATTRS.get(node.op, ()) if node.attrs[a] is not None)
    stored = sum(b.size for b in kernel.buffers.values() if b.memory == "wmem" and b.name.startswith(node.source + "/"))
    return {
        "name": node.source,
        "op": node.op,
        "mac_ops": sum(evaluate(i.op.macs, i.env(target_env)) for i in mine),
        "weight_count": int(weights),
        "fp32_bytes": int(4 * (weights + biases)),
        "stored_bytes": int(stored),
        "compression_ratio": _ratio(4 * (weights + biases), stored),
        "est_cycles": sum(_busy(i, target_env) for i in mine),
        "weight_bytes_read": sum(_wmem_read(i, target_env) for i in mine),
    }


def _wmem_read(instr, target_env: dict) -> int:
    """Bytes of weight memory the instruction reads: what the simulator counts, known statically."""
    return sum(n for memory, _, n in instr.footprint(target_env)[0] if memory == "wmem")


def _busy(instr, target_env: dict) -> int:
    return evaluate(instr.op.cycles, instr.env(target_env))


def _ratio(fp32: int, stored: int) -> float | None:
    return round(fp32 / stored, 3) if stored else None

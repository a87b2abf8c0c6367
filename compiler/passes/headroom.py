"""Where calibration saw a value that its format cannot hold: one warning line per tensor or state.

Formats come from calibration with HEADROOM, so a value saturates only where a format is fixed by
the chip and the value goes beyond it anyway: a state whose calibrated range exceeds even the
coarsest format, a tensor a consumer needs in a fixed format. Inputs of activation tables are not
warned about: the functions are flat beyond Q3.12's +-8, so saturating there is exact.
"""

from __future__ import annotations

from compiler.ir import Graph
from compiler.ops import OPS
from compiler.passes.calibrate import Calibration
from isa.numerics import ACT_MAX

FLAT_READERS = frozenset({"table"})  # ops that read their input's saturation as exactly as its value
BOUNDED = frozenset({"logsoftmax"})  # documented to saturate: docs/numerics.md


def headroom_warnings(graph: Graph, calib: Calibration) -> list[str]:
    """Warnings for the quantised `graph`, from what `calib` saw."""
    made_by = {name: node.op for node in graph.nodes for name in node.outputs}
    lines = [_tensor_warning(graph, name, calib.max_abs[name], made_by.get(name))
             for name in graph.scales if name in calib.max_abs]
    lines += [f"warning: layer '{node.source}': calibration saw |{state}| reach {s['calibrated_max']:.6g}, "
              f"beyond what its format {s['format']} holds; it saturates there"
              for node in graph.nodes for state, s in OPS[node.op].states(node).items() if not s["holds"]]
    return [line for line in lines if line]


def _tensor_warning(graph: Graph, name: str, seen: float, made_by: str | None) -> str:
    scale = graph.scales[name]
    if seen <= (ACT_MAX + 1) * scale or _exempt(graph, name, made_by):  # 1.0 in Q0.15 is its largest value
        return ""
    return (f"warning: tensor '{name}': calibration saw |x| reach {seen:.6g}, beyond the {ACT_MAX * scale:.6g} "
            f"its format (scale {scale:.6g}) holds; it saturates there")


def _exempt(graph: Graph, name: str, made_by: str | None) -> bool:
    """Read only by tables (flat where it saturates), or made by an op documented to saturate."""
    readers = graph.consumers(name)
    flat = bool(readers) and name not in graph.outputs and all(n.op in FLAT_READERS for n in readers)
    return flat or made_by in BOUNDED

"""Scales for softmax and logsoftmax: where x - max(x) is computed, and the rescales around it.

The outputs have fixed formats: softmax Q0.15 (VNORM's), logsoftmax Q4.11 (VLOG's). The input
keeps its calibrated scale s_x -- a Q3.12 input would saturate logits beyond +-8 before the max
is taken. The difference x - max runs at a working scale w = max(s_x, floor), where the floor is
the finest format a path needs (Q3.12 for exp's input; Q4.11 for logsoftmax's output). Then the
difference, which is <= 0, saturates only below -32768 w <= -8 (or -16), where exp is below
3.4e-4 (or the output saturates anyway). Three multipliers (isa.numerics.quantize_multiplier):

    pre     x -> w          (identity unless s_x is finer than the floor)
    to_exp  w -> Q3.12      the exp table's input
    to_out  w -> Q4.11      logsoftmax only: x - max at the output's format
"""

from __future__ import annotations

from compiler.ir import Node
from isa.numerics import GATE_FRAC, LOG_FRAC, UNIT_FRAC, quantize_multiplier

EXP_SCALE = 2.0 ** -GATE_FRAC
LOG_SCALE = 2.0 ** -LOG_FRAC
OUTPUT_SCALES = {"softmax": 2.0 ** -UNIT_FRAC, "logsoftmax": LOG_SCALE}
FLOOR_SCALES = {"softmax": EXP_SCALE, "logsoftmax": LOG_SCALE}


def quantize_softmax(node: Node, scales: dict[str, float]) -> Node:
    x = scales[node.inputs[0]]
    work = max(x, FLOOR_SCALES[node.op])
    attrs = {"pre": quantize_multiplier(x / work), "to_exp": quantize_multiplier(work / EXP_SCALE)}
    if node.op == "logsoftmax":
        attrs["to_out"] = quantize_multiplier(work / LOG_SCALE)
    return node.with_attrs(**attrs)

"""lstm, gru and rnn: the recurrent layers, every direction, layout and option of ONNX's LSTM, GRU
and RNN, all directions of a layer in one node.

    records.py        the attribute records, before and after quantisation
    formats.py        the cells' fixed-point formats and the shift of every product
    float_cells.py    float semantics;   integer_cells.py  the golden reference's
    scan.py           running a cell over directions, batch and steps (both semantics)
    quantize.py       formats, row order and integer weights
    lower.py          the lowering of a layer: directions, batch, lengths, states, waves
    cells.py          one step of each cell as machine ops
    bound.py          the recurrence bound of each layer, measured on the compiled program
"""

from __future__ import annotations

from compiler.ops.recurrent.float_cells import float_ranges, float_recurrent
from compiler.ops.recurrent.formats import layer_states
from compiler.ops.recurrent.integer_cells import integer_recurrent
from compiler.ops.recurrent.lower import lower_recurrent
from compiler.ops.recurrent.quantize import input_scales, output_scales, quantize_recurrent
from compiler.ops.recurrent.records import (
    GruAttrs,
    LstmAttrs,
    QuantGruAttrs,
    QuantLstmAttrs,
    QuantRecurrentAttrs,
    QuantRnnAttrs,
    RecurrentAttrs,
    RnnAttrs,
)
from compiler.ops.registry import OpDef, Parameters, register


def parameters(attrs: RecurrentAttrs) -> Parameters:
    weights = {"W": attrs.W, "R": attrs.R}
    if getattr(attrs, "P", None) is not None:
        weights["P"] = attrs.P
    cells = attrs.cells if isinstance(attrs, QuantRecurrentAttrs) else ()
    matrices = {f"{key}{d}": q for d, cell in enumerate(cells) for key, q in cell.named().items()}
    return Parameters(weights, {"B": attrs.B}, matrices)


RECORDS = {"lstm": (LstmAttrs, QuantLstmAttrs), "gru": (GruAttrs, QuantGruAttrs), "rnn": (RnnAttrs, QuantRnnAttrs)}

register(*(OpDef(op, "recurrent", record, float_recurrent, integer_recurrent, output_scales, lower_recurrent,
                 quantized, quantize_recurrent, input_scales, parameters=parameters, float_ranges=float_ranges,
                 states=layer_states)
           for op, (record, quantized) in RECORDS.items()))

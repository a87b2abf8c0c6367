"""The recurrent operators: LSTM, GRU and RNN, every direction, layout and option, and ONNX
Runtime's DynamicQuantizeLSTM (com.microsoft), an LSTM whose W and R are integers.

Each handler normalises its operator to one IR node (op "lstm", "gru" or "rnn") whose attributes
(compiler/ops/recurrent/records.py) hold, for all directions at once, W [D, G*H, I], R [D, G*H, H],
B [D, 2*G*H] and P [D, 3H] as float32, the activation specs per direction (see activation_ops), the static sequence
lengths, and the cell options. What the chip supports (directions, layouts, activations, weights
that are initialisers) is declared in CONSTRAINTS and checked before a handler runs.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from compiler.frontend.activation_ops import ACTIVATIONS, activation_spec
from compiler.frontend.capability import Constraint, NodeView, constant, declare, one_of
from compiler.frontend.compute_ops import constant_weight
from compiler.frontend.registry import operator, operator_in, padded, unsupported
from compiler.ir import Node
from compiler.ops.constant import ConstantAttrs
from compiler.ops.recurrent.records import GruAttrs, LstmAttrs, RnnAttrs
from isa.errors import RnnaccelError

DIRECTIONS = {"forward": ("forward",), "reverse": ("reverse",), "bidirectional": ("forward", "reverse")}
# cell -> (gates G, default activations per direction)
CELLS = {"lstm": (4, ("Sigmoid", "Tanh", "Tanh")), "gru": (3, ("Sigmoid", "Tanh")), "rnn": (1, ("Tanh",))}
RECORDS = {"lstm": LstmAttrs, "gru": GruAttrs, "rnn": RnnAttrs}


@operator
def LSTM(b, node, name: str, *, hidden_size=None, layout=0, direction="forward", activations=None,
         activation_alpha=None, activation_beta=None, clip=None, input_forget=0):
    x, w, r, bias, seq_lens, h0, c0, peep = padded(node.input, 8)
    attrs = _common(b, "lstm", x, w, r, bias, seq_lens, hidden_size, layout, direction, activations,
                    activation_alpha, activation_beta, clip)
    dirs, hidden = len(attrs["directions"]), attrs["hidden"]
    attrs["P"] = _weight(b, peep, "LSTM P", (dirs, 3 * hidden)) if peep else None
    attrs["input_forget"] = bool(input_forget)
    _emit(b, node, name, "lstm", attrs, (x, h0, c0), 3)


@operator_in("com.microsoft")
def DynamicQuantizeLSTM(b, node, name: str, *, hidden_size=None, direction="forward", activations=None,
                        activation_alpha=None, activation_beta=None, clip=None, input_forget=0):
    """An LSTM with W and R dequantised at compile time (X's run-time quantisation is the chip's own).

    quantize_dynamic writes W [D, I, 4H] and R [D, H, 4H] as int8 or uint8 with a scale and zero
    point per direction or per output channel. (q - zero_point) * scale, transposed to ONNX LSTM's
    [D, 4H, I], puts each row on its channel's grid, which quantisation keeps exactly
    (passes/weights.grid_steps); everything else is the LSTM converter's."""
    x, w, r, bias, seq_lens, h0, c0, peep, w_scale, w_zero, r_scale, r_zero = padded(node.input, 12)
    weights = [_dequantised(b, name, q, scale, zero, what)
               for q, scale, zero, what in ((w, w_scale, w_zero, "W"), (r, r_scale, r_zero, "R"))]
    lstm = helper.make_node("LSTM", [x, *weights, bias, seq_lens, h0, c0, peep], list(node.output))
    LSTM(b, lstm, name, hidden_size=hidden_size, direction=direction, activations=activations,
         activation_alpha=activation_alpha, activation_beta=activation_beta, clip=clip, input_forget=input_forget)


def _dequantised(b, node_name: str, q: str, scale: str, zero: str, what: str) -> str:
    """The float weight (q - zero) * scale as ONNX LSTM lays it out, recorded as a new constant."""
    values, scales, zeros = (b.const(n) for n in (q, scale, zero))
    if values.ndim != 3 or values.dtype not in QUANTISED_WEIGHTS or zeros.dtype != values.dtype:
        raise RnnaccelError(f"{what} '{q}' must be int8 or uint8 of rank 3 with a zero point of its type; "
                            f"got {values.dtype} {list(values.shape)} and {zeros.dtype}")
    per = {(values.shape[0],): (-1, 1, 1), (values.shape[0], values.shape[2]): (values.shape[0], 1, -1)}
    if scales.shape not in per or zeros.shape != scales.shape:
        raise RnnaccelError(f"{what}_scale and {what}_zero_point of shapes {list(scales.shape)} and "
                            f"{list(zeros.shape)} (expected [D] or [D, 4*hidden_size], D={values.shape[0]})")
    shape = per[scales.shape]
    steps = values.astype(np.float32) - zeros.reshape(shape).astype(np.float32)
    result = f"{node_name}/{what}_dequantized"
    b.consts[result] = np.ascontiguousarray((steps * scales.reshape(shape).astype(np.float32)).transpose(0, 2, 1))
    return result


@operator
def GRU(b, node, name: str, *, hidden_size=None, layout=0, direction="forward", activations=None,
        activation_alpha=None, activation_beta=None, clip=None, linear_before_reset=0):
    x, w, r, bias, seq_lens, h0 = padded(node.input, 6)
    attrs = _common(b, "gru", x, w, r, bias, seq_lens, hidden_size, layout, direction, activations,
                    activation_alpha, activation_beta, clip)
    attrs["linear_before_reset"] = bool(linear_before_reset)
    _emit(b, node, name, "gru", attrs, (x, h0), 2)


@operator
def RNN(b, node, name: str, *, hidden_size=None, layout=0, direction="forward", activations=None,
        activation_alpha=None, activation_beta=None, clip=None):
    x, w, r, bias, seq_lens, h0 = padded(node.input, 6)
    attrs = _common(b, "rnn", x, w, r, bias, seq_lens, hidden_size, layout, direction, activations,
                    activation_alpha, activation_beta, clip)
    _emit(b, node, name, "rnn", attrs, (x, h0), 2)


def _common(b, cell: str, x: str, w: str, r: str, bias: str, seq_lens: str, hidden_size, layout: int,
            direction: str, activations, alpha, beta, clip) -> dict:
    """What every recurrent operator has: shapes, weights, directions, activations, clip."""
    gates, defaults = CELLS[cell]
    dirs = DIRECTIONS[direction]
    shape = b.shape(x)
    steps, batch, inputs = (shape[0], shape[1], shape[2]) if layout == 0 else (shape[1], shape[0], shape[2])
    hidden = hidden_size or b.shape(r)[-1]
    attrs = {
        "hidden": hidden, "inputs": inputs, "steps": steps, "batch": batch, "layout": layout, "directions": dirs,
        "W": _weight(b, w, "W", (len(dirs), gates * hidden, inputs)),
        "R": _weight(b, r, "R", (len(dirs), gates * hidden, hidden)),
        "B": _weight(b, bias, "B", (len(dirs), 2 * gates * hidden)) if bias else
        np.zeros((len(dirs), 2 * gates * hidden), np.float32),
        "activations": _activations(activations or list(defaults) * len(dirs), alpha, beta, len(dirs), len(defaults)),
        "clip": None if clip is None else float(clip),
        "seq_lens": _seq_lens(b, seq_lens, steps, batch),
    }
    return attrs


def _float32(b, name: str, what: str) -> np.ndarray:
    """A float tensor of the layer as a constant: ONNX binds W, R, B, P and the initial states to
    X's type T, float32 here, so any other type is refused (ONNX Runtime refuses it too)."""
    value = b.const(name)
    if value is not None and value.dtype != np.float32:
        raise RnnaccelError(f"{what} '{name}' is {value.dtype}; the layer's tensors must be float32, like X")
    return constant_weight(b, name, what)


def _weight(b, name: str, what: str, shape: tuple[int, ...]) -> np.ndarray:
    value = _float32(b, name, what)
    if tuple(value.shape) != shape:
        raise unsupported(f"{what} of shape {list(value.shape)} (expected {list(shape)})")
    return value


def _activations(names: list[str], alphas, betas, dirs: int, per_dir: int) -> tuple[tuple[str, ...], ...]:
    """Activation specs per direction; alpha/beta are consumed in order by the functions that take them."""
    if len(names) != dirs * per_dir:
        raise unsupported(f"{len(names)} activations for {dirs} direction(s) of {per_dir}")
    alphas, betas = list(alphas or []), list(betas or [])
    specs = []
    for name in names:
        takes = bool(ACTIVATIONS.get(name, ("", ()))[1])
        specs.append(activation_spec(name, alphas.pop(0) if takes and alphas else None,
                                     betas.pop(0) if takes and betas else None))
    return tuple(tuple(specs[d * per_dir:(d + 1) * per_dir]) for d in range(dirs))


def _seq_lens(b, name: str, steps: int, batch: int) -> tuple[int, ...]:
    if not name:
        return (steps,) * batch
    value = b.const(name)
    if value.dtype != np.int32:
        raise RnnaccelError(f"sequence_lens '{name}' is {value.dtype}; ONNX defines it as int32")
    lens = tuple(int(v) for v in np.asarray(value).ravel())
    if len(lens) != batch or any(not 0 <= n <= steps for n in lens):
        raise unsupported(f"sequence_lens {list(lens)} for batch {batch} and {steps} steps")
    return lens


def _emit(b, node, name: str, op: str, attrs: dict, inputs: tuple[str, ...], outputs: int) -> None:
    record = RECORDS[op](**attrs)
    dirs, batch, hidden, steps, layout = (len(record.directions), record.batch, record.hidden, record.steps,
                                          record.layout)
    state = (dirs, batch, hidden) if layout == 0 else (batch, dirs, hidden)
    y_shape = (steps, dirs, batch, hidden) if layout == 0 else (batch, steps, dirs, hidden)
    names = padded(node.output, outputs)
    shapes = {n: s for n, s in zip(names, (y_shape, state, state)) if n}
    states = tuple(_state_input(b, n, name, which, state) for n, which in zip(inputs[1:], ("h", "c")))
    b.emit(Node(op, name, (inputs[0], *states), tuple(names), record), shapes)


def _state_input(b, name: str, node_name: str, which: str, shape: tuple[int, ...]) -> str:
    """An initial state: a graph tensor, or a constant that becomes a `constant` node (zeros: absent)."""
    if name and tuple(b.shape(name)) != shape:
        raise unsupported(f"initial_{which} of shape {list(b.shape(name))} (expected {list(shape)})")
    if not name or not b.is_const(name):
        return name
    value = _float32(b, name, f"initial_{which}")
    if not np.any(value):
        return ""
    constant = Node("constant", f"{node_name}/initial_{which}", (), (name,), ConstantAttrs(value=value))
    b.emit(constant, {name: value.shape})
    del b.consts[name]
    return name


def _unknown_activations(view: NodeView) -> list[str]:
    return [name for name in view.attr("activations") or () if name not in ACTIVATIONS]


DIRECTION = one_of("direction", tuple(DIRECTIONS), "forward", "direction must be forward, reverse or bidirectional")
LAYOUT = one_of("layout", (0, 1), 0, "layout must be 0 or 1")
OPERANDS = (
    Constraint("X must have rank 3", lambda v: v.input(0).rank == 3, lambda v: f"rank {v.input(0).rank}"),
    constant(1, "W"), constant(2, "R"), constant(3, "B"), constant(4, "sequence_lens"),
    Constraint(f"each activation must be one of {', '.join(ACTIVATIONS)}", lambda v: not _unknown_activations(v),
               lambda v: ", ".join(_unknown_activations(v))),
)
QUANTISED_WEIGHTS = (np.dtype(np.int8), np.dtype(np.uint8))
QUANTISATION = tuple(constant(i, what) for i, what in enumerate(
    ("W_scale", "W_zero_point", "R_scale", "R_zero_point"), start=8))
RECURRENT = (DIRECTION, LAYOUT, *OPERANDS)
CONSTRAINTS = {"LSTM": (*RECURRENT, constant(7, "P")), "GRU": RECURRENT, "RNN": RECURRENT,
               "com.microsoft.DynamicQuantizeLSTM": (DIRECTION, *OPERANDS, constant(7, "P"), *QUANTISATION)}
# the operator types this module converts, whatever their domain (macs and --streaming read op_type)
RECURRENT_OP_TYPES = frozenset(key.rpartition(".")[2] for key in CONSTRAINTS)
declare(CONSTRAINTS)

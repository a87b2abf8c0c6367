"""Operators that compute: LSTM, Gemm, MatMul, Add (as a bias) and the activations.

Each handler checks what the chip supports, normalises the operator to the IR's canonical
form (fc: weight [out, in] plus bias; lstm: W, R, B of one direction) and records shapes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler.frontend.registry import OPERATORS, fold, operator, padded, unsupported
from compiler.ir import Node
from isa.errors import RnnaccelError

DEFAULT_LSTM_ACTIVATIONS = ["Sigmoid", "Tanh", "Tanh"]


def elementwise(op: str, fn: Callable) -> Callable:
    def handler(b, node, name: str) -> None:
        if b.is_const(node.input[0]):
            return fold(b, node, fn)
        b.emit(Node(op, name, (node.input[0],), (node.output[0],)), {node.output[0]: b.shape(node.input[0])})

    return handler


OPERATORS["Relu"] = elementwise("relu", lambda x: np.maximum(x, 0))
OPERATORS["Sigmoid"] = elementwise("sigmoid", lambda x: 1 / (1 + np.exp(-x)))
OPERATORS["Tanh"] = elementwise("tanh", np.tanh)


def constant_weight(b, name: str, what: str) -> np.ndarray:
    """A weight-like input as float32; it must be a finite constant."""
    value = b.const(name)
    if value is None:
        raise unsupported(f"a computed {what} ('{name}'); it must be an initialiser")
    value = np.asarray(value, dtype=np.float32)
    if not np.all(np.isfinite(value)):
        raise RnnaccelError(f"{what} '{name}' contains NaN or Inf")
    return value


def _emit_fc(b, name: str, x: str, out: str, weight: np.ndarray, bias: np.ndarray | None) -> None:
    shape = b.shape(x)
    if not shape or shape[-1] != weight.shape[1]:
        raise unsupported(f"input shape {list(shape)} for a {weight.shape[1]}-input layer")
    attrs = {"weight": weight, "bias": bias}
    b.emit(Node("fc", name, (x,), (out,), attrs), {out: tuple(shape[:-1]) + (weight.shape[0],)})


@operator
def Gemm(b, node, name: str, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    a, bmat, c = padded(node.input, 3)
    if all(b.is_const(n) for n in node.input):
        return fold(b, node, lambda x, y, z=0.0: alpha * (x.T if transA else x) @ (y.T if transB else y) + beta * z)
    if transA:
        raise unsupported("Gemm with transA=1 on computed data")
    weight = constant_weight(b, bmat, "Gemm weight")
    weight = alpha * (weight if transB else weight.T)
    bias = None
    if c:
        bias = beta * np.broadcast_to(constant_weight(b, c, "Gemm bias"), (1, weight.shape[0]))
        if bias.ndim != 2:
            raise unsupported("a Gemm bias that differs per row of A")
        bias = np.asarray(bias[0], dtype=np.float32)
    _emit_fc(b, name, a, node.output[0], weight.astype(np.float32), bias)


@operator
def MatMul(b, node, name: str):
    a, w = node.input
    if b.is_const(a) and b.is_const(w):
        return fold(b, node, np.matmul)
    weight = constant_weight(b, w, "MatMul weight")
    if weight.ndim != 2:
        raise unsupported(f"MatMul with a {weight.ndim}-D constant operand")
    _emit_fc(b, name, a, node.output[0], np.ascontiguousarray(weight.T), None)


@operator
def Add(b, node, name: str):
    if all(b.is_const(n) for n in node.input):
        return fold(b, node, np.add)
    data, bias = (node.input[0], node.input[1]) if b.is_const(node.input[1]) else (node.input[1], node.input[0])
    producer = next((n for n in reversed(b.nodes) if data in n.outputs), None)
    if not b.is_const(bias) or producer is None or producer.op != "fc" or producer.attrs["bias"] is not None:
        raise unsupported("Add other than a constant bias after MatMul or Gemm")
    rows = producer.attrs["weight"].shape[0]
    value = constant_weight(b, bias, "Add bias")
    if value.size not in (1, rows) or (value.ndim and value.shape[-1] not in (1, rows)):
        raise unsupported(f"an Add bias of shape {list(value.shape)} after a {rows}-output layer")
    full = np.broadcast_to(value.reshape(-1), (rows,)).astype(np.float32)
    _emit_fc(b, name, producer.inputs[0], node.output[0], producer.attrs["weight"], full)


@operator
def LSTM(b, node, name: str, *, hidden_size=None, layout=0, direction="forward", activations=None,
         activation_alpha=None, activation_beta=None, clip=None, input_forget=0):
    x, w, r, bias, seq_lens, h0, c0, peep = padded(node.input, 8)
    _check_lstm_options(direction, activations, activation_alpha, activation_beta, clip, input_forget, peep)
    W, R = constant_weight(b, w, "LSTM W")[0], constant_weight(b, r, "LSTM R")[0]
    hidden = R.shape[-1]
    if hidden_size is not None and hidden_size != hidden:
        raise unsupported(f"hidden_size={hidden_size} with R of hidden size {hidden}")
    B = constant_weight(b, bias, "LSTM B")[0] if bias else np.zeros(8 * hidden, np.float32)
    shape = b.shape(x)
    if len(shape) != 3 or shape[2] != W.shape[1]:
        raise unsupported(f"LSTM input shape {list(shape)} with W of input size {W.shape[1]}")
    steps, batch = (shape[0], shape[1]) if layout == 0 else (shape[1], shape[0])
    _check_seq_lens(b, seq_lens, steps)
    outs = padded(node.output, 3)
    state = (1, batch, hidden) if layout == 0 else (batch, 1, hidden)
    y_shape = (steps, 1, batch, hidden) if layout == 0 else (batch, steps, 1, hidden)
    inputs = (x, _state_input(b, h0, name, "h"), _state_input(b, c0, name, "c"))
    attrs = {"W": W, "R": R, "B": B, "hidden": hidden, "layout": layout, "steps": steps, "batch": batch}
    shapes = {n: s for n, s in zip(outs, (y_shape, state, state)) if n}
    b.emit(Node("lstm", name, inputs, tuple(outs), attrs), shapes)


def _check_lstm_options(direction, activations, alpha, beta, clip, input_forget, peep) -> None:
    checks = [
        (direction == "forward", f"LSTM direction={direction}"),
        (activations in (None, DEFAULT_LSTM_ACTIVATIONS), f"LSTM activations={activations}"),
        (alpha is None and beta is None, "LSTM activation_alpha/activation_beta"),
        (clip is None, "LSTM clip"),
        (not input_forget, "LSTM input_forget=1"),
        (not peep, "LSTM peepholes (P)"),
    ]
    for ok, what in checks:
        if not ok:
            raise unsupported(what)


def _check_seq_lens(b, seq_lens: str, steps: int) -> None:
    if not seq_lens:
        return
    value = b.const(seq_lens)
    if value is None or np.any(value != steps):
        raise unsupported("LSTM sequence_lens shorter than the sequence")


def _state_input(b, name: str, node_name: str, which: str) -> str:
    """An initial state: a graph tensor, or a constant that becomes a `constant` node (zeros: absent)."""
    if not name or not b.is_const(name):
        return name
    value = constant_weight(b, name, f"LSTM initial_{which}")
    if not np.any(value):
        return ""
    b.emit(Node("constant", f"{node_name}/initial_{which}", (), (name,), {"value": value}), {name: value.shape})
    del b.consts[name]
    return name

"""Activation functions: Relu exactly, the bounded ones by the vector unit's tables.

An activation is named by a *spec*: "relu", or a table name from isa.numerics ("sigmoid",
"tanh", "hardsigmoid(0.2,0.5)"). The element-wise operators below and the recurrent layers'
`activations` attributes both go through `activation_spec`, so they support the same set.
"""

from __future__ import annotations

from compiler.frontend.registry import fold, operator
from compiler.ops.activation import activation_node, float_activation
from isa.numerics import table_name

# ONNX activation name -> (table function or "relu", its attribute defaults (alpha, beta) or ())
ACTIVATIONS = {
    "Relu": ("relu", ()),
    "Sigmoid": ("sigmoid", ()),
    "Tanh": ("tanh", ()),
    "HardSigmoid": ("hardsigmoid", (0.2, 0.5)),
}


def activation_spec(onnx_name: str, alpha: float | None = None, beta: float | None = None) -> str:
    """The spec of an ONNX activation, with its alpha/beta (or their defaults) where it has them (a
    recurrent layer's CONSTRAINTS have checked that the name is one of ACTIVATIONS)."""
    func, defaults = ACTIVATIONS[onnx_name]
    if not defaults:
        return func
    params = (defaults[0] if alpha is None else alpha, defaults[1] if beta is None else beta)
    return table_name(func, *params)


def _emit(b, node, name: str, spec: str) -> None:
    if b.is_const(node.input[0]):
        return fold(b, node, lambda x: float_activation(spec, x))
    b.emit(activation_node(spec, name, node.input[0], node.output[0]), {node.output[0]: b.shape(node.input[0])})


@operator
def Relu(b, node, name: str) -> None:
    _emit(b, node, name, "relu")


@operator
def Sigmoid(b, node, name: str) -> None:
    _emit(b, node, name, activation_spec("Sigmoid"))


@operator
def Tanh(b, node, name: str) -> None:
    _emit(b, node, name, activation_spec("Tanh"))


@operator
def HardSigmoid(b, node, name: str, *, alpha=0.2, beta=0.5) -> None:
    _emit(b, node, name, activation_spec("HardSigmoid", alpha, beta))

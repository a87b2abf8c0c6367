"""The frontend's operator table: one function per supported ONNX operator.

Each function is named after its operator and takes the operator's attributes as keyword
arguments with the ONNX spec's defaults; `OPERATORS` maps the ONNX name to it. The frontend
dispatches on this table and `--supported-ops` prints it, so the two cannot disagree. What else
an operator needs (constant weights, an axis, a direction) its module declares beside it, in
capability.CONSTRAINTS, which the importer asks before it calls the handler.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from compiler.frontend.limits import check_elements
from isa.errors import RnnaccelError

OPERATORS: dict[str, Callable] = {}  # keyed by op_key: the bare name in the default domain
DEFAULT_DOMAINS = ("", "ai.onnx")


def op_key(domain: str, op_type: str) -> str:
    """An operator's key in OPERATORS and capability.CONSTRAINTS: a default-domain operator by its
    name, any other by its domain-qualified name (com.microsoft.DynamicQuantizeLSTM), so an
    operator of another domain never answers for a standard one of the same name."""
    return op_type if domain in DEFAULT_DOMAINS else f"{domain}.{op_type}"


def operator(fn: Callable) -> Callable:
    OPERATORS[fn.__name__] = fn
    return fn


def operator_in(domain: str) -> Callable[[Callable], Callable]:
    """Register a handler for an operator of another domain (ONNX Runtime's contrib operators)."""

    def register(fn: Callable) -> Callable:
        OPERATORS[op_key(domain, fn.__name__)] = fn
        return fn

    return register


def unsupported(what: str) -> RnnaccelError:
    return RnnaccelError(f"{what} is not supported")


def padded(names, count: int) -> list[str]:
    """A node's input or output names, with "" for the optional ones it leaves out."""
    return list(names) + [""] * (count - len(names))


def fold(b, node, fn: Callable, **attrs) -> None:
    """Evaluate `fn` on the node's constant inputs and record the result as a constant.

    Inputs that broadcast (element-wise operators, Where, a MatMul of [N,1] by [1,M]) make a
    result of their broadcast shape, however small they are: that size is checked first, so two
    constants of 2^16 and 2^15 elements cannot ask for 2^31."""
    args = [b.const(n) for n in node.input]
    check_elements(f"the result of {node.op_type}", _broadcast_shape(args))
    b.consts.update(outputs_of(node, apply(fn, args, attrs)))


def outputs_of(node, result: np.ndarray | tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
    """Each output the node names and its value. An operator of several outputs (Split) returns a
    tuple with one array per output; an output the model leaves out ("") is skipped."""
    values = result if isinstance(result, tuple) else (result,)
    if len(values) != len(node.output):
        raise RnnaccelError(f"it names {len(node.output)} outputs but computes {len(values)}")
    return {name: value for name, value in zip(node.output, values) if name}


def _broadcast_shape(args: list) -> tuple[int, ...]:
    """The shape the inputs broadcast to; () if they do not (the operator is not element-wise)."""
    try:
        return np.broadcast_shapes(*(np.shape(a) for a in args if a is not None))
    except ValueError:
        return ()


def apply(fn: Callable, args: list, attrs: dict) -> np.ndarray | tuple[np.ndarray, ...]:
    """Run an operator's numpy function; numpy's complaints about a malformed model are user errors.
    A function of several outputs returns a tuple of arrays (see outputs_of).
    Constants may overflow to Inf quietly here: a weight made of one is refused where it is used
    (compute_ops.constant_weight), and shape arithmetic cannot turn Inf into a size."""
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            result = fn(*args, **attrs)
            return tuple(map(np.asarray, result)) if isinstance(result, tuple) else np.asarray(result)
    except (ValueError, IndexError, np.exceptions.AxisError, OverflowError) as exc:
        raise RnnaccelError(f"cannot be evaluated: {exc}") from None
    except MemoryError:  # a backstop: the operators that size arrays from data check them first (limits)
        raise RnnaccelError("cannot be evaluated: its result does not fit in memory") from None


def fold_handler(fn: Callable) -> Callable:
    """A handler for an operator that only ever computes on constants (shape arithmetic); the module
    that registers it declares so (capability.ON_CONSTANTS), and the importer checks it first."""

    def handler(b, node, name: str, **attrs) -> None:
        fold(b, node, fn, **attrs)

    handler = functools.wraps(fn)(handler)  # so its signature, which lists the attributes, is fn's
    handler.kind = "fold"  # what --supported-ops and docs/operators.md say about it
    return handler

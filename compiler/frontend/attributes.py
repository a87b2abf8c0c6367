"""ONNX attributes to plain Python values, every value checked here once for every operator.

`onnx.checker` has matched each attribute's type against the operator's schema, but not its
value: protobuf hands a STRING attribute over as raw bytes, whatever they hold; a FLOAT may be
NaN or Inf; an INT any 64-bit number. So text is decoded here (it must be UTF-8), and the
attributes named in RULES must lie where they mean something, whichever operator carries them.
The operator handlers then receive values they can trust, and a new operator benefits from the
table without code of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from compiler.frontend.limits import SUPPORTED_DTYPES, tensor_value
from isa.errors import RnnaccelError


@dataclass(frozen=True)
class Rule:
    """What every value of an attribute (each element, for a list) must satisfy."""

    accepts: Callable[[object], bool]
    expected: str  # completes "it must be ..."


def _positive(value: object) -> bool:
    return math.isfinite(value) and value > 0  # type: ignore[arg-type]


FINITE = Rule(math.isfinite, "a finite number")
POSITIVE = Rule(_positive, "a finite number above 0")
COUNT = Rule(lambda value: value > 0, "a positive integer")  # type: ignore[operator]
TENSOR_TYPE = Rule(lambda value: value in SUPPORTED_DTYPES,
                   f"a supported tensor type: {', '.join(f'{k} ({v})' for k, v in SUPPORTED_DTYPES.items())}")

RULES = {
    "alpha": FINITE, "beta": FINITE,  # Gemm's factors, HardSigmoid's slope and offset
    "activation_alpha": FINITE, "activation_beta": FINITE,  # the recurrent layers' activation parameters
    "clip": POSITIVE,  # the recurrent layers' cell clip: a bound on |x|, so 0 or less means nothing
    "hidden_size": COUNT,
    "to": TENSOR_TYPE,  # Cast
}


def decode_attributes(node: onnx.NodeProto) -> dict[str, object]:
    """The node's attributes by name, as Python values, each one checked."""
    return {attr.name: _checked(attr.name, _value(attr)) for attr in node.attribute}


def _value(attr: onnx.AttributeProto) -> object:
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return _text(attr.name, value)
    if isinstance(value, onnx.TensorProto):
        return tensor_value(value)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [_text(attr.name, v) for v in value]
    return value


def _text(name: str, value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        shown = value if len(value) <= 16 else value[:16] + b"..."
        raise RnnaccelError(f"attribute '{name}' is not valid UTF-8 text ({shown!r})") from None


def _checked(name: str, value: object) -> object:
    rule = RULES.get(name)
    if rule is None:
        return value
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, (int, float, np.number)) or not rule.accepts(item):
            raise RnnaccelError(f"attribute '{name}' = {item!r} is not valid: it must be {rule.expected}")
    return value

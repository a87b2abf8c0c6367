"""The IR's operators, one module (or package, for a family) each: attributes, float and
fixed-point semantics, quantisation, lowering and report figures (registry.py says how).

Importing this package registers every op and checks the table is complete. docs/architecture.md
walks one op through its module and gives the recipe for adding one.
"""

from __future__ import annotations

from compiler.ops import (  # noqa: F401
    activation,
    constant,
    conv,
    depthwise,
    elementwise,
    fake_quant,
    fc,
    gather,
    mantissa,
    normalize,
    piecewise,
    recurrent,
    reduce,
    rescale,
    softmax,
)
from compiler.ops.registry import MATRIX_KINDS, OPS, OpDef, Parameters, Scales, check_complete, with_kind

check_complete()

RECURRENT_OPS = with_kind("recurrent")
MATRIX_OPS = with_kind(*MATRIX_KINDS)

__all__ = ["MATRIX_OPS", "OPS", "RECURRENT_OPS", "OpDef", "Parameters", "Scales"]

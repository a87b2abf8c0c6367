"""The operator registry: every IR op declared once, as data, with all it means to the compiler.

An `OpDef` ties an op's name to its typed attribute records (what the frontend gives it and what
quantisation adds), its float semantics (calibration, the compiler's float view), its fixed-point
semantics (the golden reference, written apart from the simulator's instruction semantics), its
quantisation rule, its lowering to machine ops and its report figures. Each op module calls
`register` once per op; `compiler.ops` imports them all and checks the table is complete, so a
pass that looks an op up never meets a missing entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compiler.ir import Node, QMatrix
from isa.target import Target

KINDS = {
    "matrix": "multiplies by a weight matrix on the MAC array (a layer of the report)",
    "recurrent": "a recurrent layer: matrices on the MAC array, the cell on the vector unit",
    "vector": "element-wise or row-wise work on the vector unit",
    "layout": "moves data: an alias, or copies",
    "constant": "a value in weight memory, copied to activation memory",
}
MATRIX_KINDS = frozenset({"matrix", "recurrent"})


@dataclass(frozen=True)
class Scales:
    """What an op's scale rule sees: its inputs' scales, and the scale its first output would get
    if nothing fixed it (what its consumers need, else its calibrated range), asked for lazily."""

    inputs: tuple[float, ...]
    free: Callable[[], float]


@dataclass(frozen=True)
class Parameters:
    """An op's stored numbers, by name: the float ones for the report and the early capacity
    check, and once quantised its integer matrices (as their buffers are named)."""

    weights: dict[str, np.ndarray] = field(default_factory=dict)
    biases: dict[str, np.ndarray] = field(default_factory=dict)
    matrices: dict[str, QMatrix] = field(default_factory=dict)


# float semantics that also tells the ranges of the values inside an op (a recurrent layer's
# states), which its formats must hold: (node, *inputs) -> (outputs, ranges)
RangedRun = Callable[..., tuple[Any, Any]]


def same_as_inputs(node: Node, scales: Scales) -> tuple[float, ...]:
    """The output keeps its (common) input scale: what moves or clips data without scaling it."""
    return (max(scales.inputs),)


def free_scale(node: Node, scales: Scales) -> tuple[float, ...]:
    return (scales.free(),)


def no_requirements(node: Node) -> tuple[float | None, ...]:
    return ()


def no_common_scale(node: Node, scales: Scales) -> float | None:
    return None


def unchanged(node: Node, scales: dict[str, float], policy: Any) -> Node:
    return node


def no_parameters(attrs: Any) -> Parameters:
    return Parameters()


def no_states(node: Node) -> dict[str, dict]:
    return {}


def no_padding(node: Node, target: Target) -> int:
    return 0


def no_rows(node: Node) -> frozenset[int] | None:
    return None


def one_row(node: Node) -> frozenset[int]:
    """The rows of an op that normalises runs of `attrs.row` elements (softmax, normalize)."""
    return frozenset({node.attrs.row})


@dataclass(frozen=True)
class OpDef:
    """One IR op. `attrs` is the record the frontend builds; `quantized` the one quantisation makes
    (a subclass of `attrs`, or `attrs` itself when quantisation adds nothing).

    float_eval(node, *inputs) and reference(node, *inputs) take arrays with a leading samples axis
    (None for an absent optional input) and return an array, or a list for several outputs.
    output_scales(node, Scales) gives each output's scale; input_scales(node) the scale each input
    must have (None: any); common_scale(node, Scales) one scale all inputs must share, or None;
    quantize(node, scales, policy) the node with `quantized` attributes; lower(ctx, node, where)
    emits its machine ops; parameters(attrs) its stored numbers. float_ranges, where the op has
    inner values whose formats come from calibration, is float_eval that also returns their
    ranges (float_ranges(node, *inputs, moments=...): with `moments`, also the second moments
    activation-aware compression reads); quantisation hands them back through the attribute
    `ranges`. states(node) names those inner values with their formats and calibrated ranges (the
    report's `states`). padding_macs(node, target) counts the MACs per inference that multiply zero
    padding (SPEC rule 3: no useful work, though the ISA table counts them; the report's
    `padding_mac_ops`), as lowered for `target`.
    rows(node), for an op that reduces runs of its input to one value each (a mean, pool,
    normalisation, softmax), is the lengths of those runs, None for any other op (a stream checks
    they do not shrink with time).
    `pointwise` marks an op of one input that is the same function of every element alone, so it
    commutes with any gather (passes/sink.py moves it before one)."""

    name: str
    kind: str
    attrs: type
    float_eval: Callable[..., Any]
    reference: Callable[..., Any]
    output_scales: Callable[[Node, Scales], tuple[float, ...]]
    lower: Callable[..., None]
    quantized: type | None = None
    quantize: Callable[[Node, dict[str, float], Any], Node] = unchanged
    input_scales: Callable[[Node], tuple[float | None, ...]] = no_requirements
    common_scale: Callable[[Node, Scales], float | None] = no_common_scale
    parameters: Callable[[Any], Parameters] = no_parameters
    float_ranges: RangedRun | None = None
    states: Callable[[Node], dict[str, dict]] = no_states
    padding_macs: Callable[[Node, Target], int] = no_padding
    rows: Callable[[Node], frozenset[int] | None] = no_rows
    pointwise: bool = False

    @property
    def final(self) -> type:
        """The attributes record after quantisation."""
        return self.quantized or self.attrs


OPS: dict[str, OpDef] = {}


def register(*ops: OpDef) -> None:
    for op in ops:
        assert op.name not in OPS, f"op {op.name} declared twice"
        OPS[op.name] = op


def check_complete() -> None:
    """Every op has a known kind, callable hooks and frozen attribute records, the quantised one
    extending the frontend's: a table with a hole fails at import, not in the middle of a compile."""
    for op in OPS.values():
        assert op.kind in KINDS, f"{op.name}: unknown kind {op.kind}"
        for hook in dataclasses.fields(op):
            value = getattr(op, hook.name)
            assert not hook.type.startswith("Callable") or callable(value), f"{op.name}: {hook.name} not callable"
        for record in (op.attrs, op.final):
            assert dataclasses.is_dataclass(record) and record.__dataclass_params__.frozen, \
                f"{op.name}: {record.__name__} is not a frozen dataclass"
        assert issubclass(op.final, op.attrs), f"{op.name}: {op.final.__name__} does not extend {op.attrs.__name__}"


def with_kind(*kinds: str) -> frozenset[str]:
    """The names of the ops of these kinds."""
    return frozenset(name for name, op in OPS.items() if op.kind in kinds)


"""What the chip and the compiler can take, judged per node before anything is converted.

Each operator declares its limits as `Constraint`s: a predicate over a `NodeView` (the node as
the importer sees it before conversion: decoded attributes, each input's shape, dtype and
constant value, the opset) and the reason users read when it fails. The importer refuses a node
with its first failing reason (onnx_import.convert_node), `--check` lists every failing reason
(support.py), `--supported-ops` and docs/operators.md print them (opdoc.py), and a host/chip
partitioner can ask `unsupported_reasons` per node to learn what to leave on the host and why.

Capability is not validity: a node whose data contradicts itself (a weight shape that disagrees
with hidden_size, an axis out of range) is a malformed model, and its handler raises when it is
converted. Nor is it capacity: whether the converted graph fits the target's memories is
limits.check_fits_target, asked once the whole graph is imported.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from compiler.frontend.attributes import decode_attributes
from compiler.frontend.registry import OPERATORS, op_key
from isa.errors import RnnaccelError

GRAPH_OUTPUT = ""  # what NodeView.readers lists for a graph output
HANDLER_PARAMETERS = ("b", "node", "name")  # what a compute handler takes besides the attributes


@dataclass(frozen=True)
class InputView:
    """One input of a node: absent (an optional input left out), computed, or a known constant."""

    name: str = ""
    shape: tuple[int, ...] | None = None  # None only when absent: every shape is static
    dtype: np.dtype | None = None  # computed data is always float32 (graph inputs must be)
    value: np.ndarray | None = None  # a constant's value (an initialiser or a folded result)
    producer: str = ""  # the IR op that computes it ("" for a graph input, a constant or a host tensor)

    @property
    def present(self) -> bool:
        return bool(self.name)

    @property
    def is_const(self) -> bool:
        return self.value is not None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)


ABSENT = InputView()


@dataclass(frozen=True)
class NodeView:
    """A node as its constraints see it: plain data, so a test (or a partitioner) can build one."""

    op_type: str
    attrs: Mapping[str, object]
    inputs: tuple[InputView, ...]
    opset: int  # the default domain's version: some attributes change meaning with it (Softmax's axis)
    domain: str = ""
    readers: tuple[str, ...] = ()  # the ONNX operators that read its outputs; GRAPH_OUTPUT for the graph
    outputs: tuple[str, ...] = ()  # the names of the outputs it gives (an optional one left out is not)

    def input(self, index: int) -> InputView:
        return self.inputs[index] if index < len(self.inputs) else ABSENT

    def attr(self, name: str, default: object = None) -> object:
        return self.attrs.get(name, default)

    @property
    def all_const(self) -> bool:
        """Every input given is a constant: the node folds at compile time."""
        return all(i.is_const for i in self.inputs if i.present)

    def computed(self, start: int = 0) -> list[str]:
        """The names of the computed inputs from position `start` on, each once."""
        return list(dict.fromkeys(i.name for i in self.inputs[start:] if i.present and not i.is_const))


@dataclass(frozen=True)
class Constraint:
    """One thing a node must satisfy to be compiled; `reason` is what users read when it does not."""

    reason: str
    holds: Callable[[NodeView], bool]
    found: Callable[[NodeView], object] | None = None  # what the node has instead, to name it

    def message(self, view: NodeView) -> str:
        return self.reason if self.found is None else f"{self.reason}; got {self.found(view)}"


CONSTRAINTS: dict[str, tuple[Constraint, ...]] = {}  # registry.op_key -> its constraints, in order


def declare(table: Mapping[str, tuple[Constraint, ...]]) -> None:
    """Add each operator's constraints (a *_ops module's CONSTRAINTS table) to the one table.
    An operator the frontend does not register is a mistake in the table, refused at import."""
    for op, constraints in table.items():
        if op not in OPERATORS:
            raise ValueError(f"constraints declared for {op}, which is not a registered operator")
        CONSTRAINTS[op] = CONSTRAINTS.get(op, ()) + tuple(constraints)


# -- constraints that several operators share ------------------------------------------------------

def constant(index: int, what: str) -> Constraint:
    """Input `index` must be a known constant (when given) unless the whole node folds."""
    return Constraint(f"{what} must be a constant (an initialiser)",
                      lambda v: v.all_const or not v.input(index).present or v.input(index).is_const,
                      lambda v: f"computed '{v.input(index).name}'")


def matrix(index: int, what: str) -> Constraint:
    """Input `index` must be 2-D unless the whole node folds."""
    return Constraint(f"{what} must be a matrix (rank 2)", lambda v: v.all_const or v.input(index).rank == 2,
                      lambda v: f"rank {v.input(index).rank}")


def one_of(attribute: str, allowed: tuple, default: object, reason: str) -> Constraint:
    """Attribute `attribute` (the ONNX default when absent) must be one of `allowed`."""
    return Constraint(reason, lambda v: v.attr(attribute, default) in allowed,
                      lambda v: repr(v.attr(attribute, default)))


def constants_from(start: int, names: list[str]) -> Constraint:
    """Inputs from position `start` on (shape, axes, indices, ...) must be constants: a layout
    operator computes which element goes where at compile time."""
    shown = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    return Constraint(f"{shown} must be {'constants' if len(names) > 1 else 'a constant'}",
                      lambda v: not v.computed(start),
                      lambda v: "computed " + ", ".join(f"'{n}'" for n in v.computed(start)))


ON_CONSTANTS = Constraint("every input must be a constant (it is folded at compile time)",
                          lambda v: v.all_const,
                          lambda v: "computed " + ", ".join(f"'{n}'" for n in v.computed()))


# -- evaluation -------------------------------------------------------------------------------------

def handler_of(domain: str, op_type: str) -> Callable | None:
    return OPERATORS.get(op_key(domain, op_type))


def node_view(builder, node: onnx.NodeProto) -> NodeView:
    """The node as its constraints see it. It raises RnnaccelError for a malformed node: an input no
    earlier node defines, an attribute value that means nothing. An operator the table does not
    know is judged by its name alone, so its attributes and inputs are not read."""
    if handler_of(node.domain, node.op_type) is None:
        return NodeView(node.op_type, {}, (), builder.opset, node.domain)
    inputs = tuple(_input_view(builder, name) for name in node.input)
    readers = tuple(r for o in node.output if o for r in builder.readers.get(o, ()))
    return NodeView(node.op_type, decode_attributes(node), inputs, builder.opset, node.domain, readers,
                    tuple(o for o in node.output if o))


def _input_view(builder, name: str) -> InputView:
    if not name:
        return ABSENT
    if name not in builder.consts and name not in builder.shapes:
        raise RnnaccelError(f"input '{name}' is not defined by any earlier node or initialiser")
    value = builder.const(name)
    dtype = np.dtype(np.float32) if value is None else value.dtype
    producer = builder.producers[name].op if name in builder.producers else ""
    return InputView(name, tuple(builder.shape(name)), dtype, value, producer)


def unsupported_reasons(view: NodeView) -> list[str]:
    """Every reason the node cannot be compiled, in a fixed order; [] if it can: the operator must be
    in the table, each attribute one its handler takes, and each of its constraints must hold."""
    handler = handler_of(view.domain, view.op_type)
    if handler is None:
        return [f"operator {view.domain + '.' if view.domain else ''}{view.op_type} is not supported"]
    known = accepted_attributes(handler)
    return [*(f"attribute '{name}' is not supported" for name in view.attrs if name not in known),
            *(c.message(view) for c in CONSTRAINTS.get(op_key(view.domain, view.op_type), ()) if not c.holds(view))]


@functools.cache
def accepted_attributes(handler: Callable) -> frozenset[str]:
    """The attributes a handler takes: the keyword parameters of its signature (a numpy ufunc's own
    keywords are not ONNX attributes). Dropout's `ratio`, an attribute before opset 12 and an
    input from it on, is a positional parameter, so both forms reach it."""
    if isinstance(inspect.unwrap(handler), np.ufunc):
        return frozenset()
    params = inspect.signature(handler).parameters.values()
    keywords = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return frozenset(p.name for p in params if p.kind in keywords and p.name not in HANDLER_PARAMETERS)

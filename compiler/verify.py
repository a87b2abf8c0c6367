"""The IR's invariants, checked between passes: definition before use, one definition per
tensor, a shape for each, and every node's attributes as its op declares them.

Attribute records are frozen dataclasses with type hints; a pass that stores a value of the wrong
type (an array where an int belongs, a dict, the wrong stage's record) is a compiler bug, caught
at the pass that made it rather than three passes later where the value is read. A graph with
scales is quantised, so its nodes carry their ops' quantised records.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from typing import Any

from compiler.ir import Graph, Node
from compiler.ops import OPS
from isa.errors import RnnaccelError


def verify(graph: Graph) -> Graph:
    """Check the IR's invariants; a failure here is a compiler bug, so it asserts (a graph output
    that no node computes is the model's fault, and says so)."""
    defined = set(graph.inputs)
    quantized = bool(graph.scales)
    for node in graph.nodes:
        check_node(node, quantized)
        for name in node.inputs:
            assert not name or name in defined, f"{node.source}: {name} used before it is defined"
        for name in node.outputs:
            assert name not in defined, f"{node.source}: {name} defined twice"
            assert not name or name in graph.shapes, f"{node.source}: {name} has no shape"
        defined.update(n for n in node.outputs if n)
    missing = [o for o in graph.outputs if o not in defined]
    if missing:
        raise RnnaccelError(f"graph output(s) {', '.join(missing)} are not computed by any node")
    return graph


def check_node(node: Node, quantized: bool) -> None:
    """Assert that `node` is a declared op whose attributes are its stage's record, well typed."""
    op = OPS.get(node.op)
    assert op is not None, f"unknown op {node.op}"
    record = op.final if quantized else op.attrs
    assert type(node.attrs) is record, \
        f"{node.source}: {node.op} has {type(node.attrs).__name__} attributes, expected {record.__name__}"
    for name, hint in _hints(record).items():
        value = getattr(node.attrs, name)
        assert _matches(value, hint), f"{node.source}: {node.op}.{name} is {type(value).__name__}, not {hint}"


@cache
def _hints(record: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(record)}
    return {k: v for k, v in typing.get_type_hints(record).items() if k in names}


def _matches(value: Any, hint: Any) -> bool:
    """Whether `value` fits `hint`: classes, unions (X | None), tuple[X, ...] and tuple[X, Y]."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin or hint)

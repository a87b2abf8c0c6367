"""Control flow: `If`, which reaches the importer only when its condition depends on data.

An `If` whose condition is computable from constants (initialisers, frozen inputs) has been
replaced by the branch it takes before import (freeze.inline_constant_ifs). One that is left
branches on data: the chip has no branches, so it stays on the host with everything inside it,
and the compiler refuses it with the reason below (`--check` lists it, a partitioner reads it).
"""

from __future__ import annotations

from compiler.frontend.capability import Constraint, NodeView, declare
from compiler.frontend.registry import operator
from isa.errors import RnnaccelError

DATA_CONDITION = "If on a condition computed from data (freeze the inputs it depends on with --const)"


@operator
def If(b, node, name: str, *, then_branch, else_branch) -> None:
    """Reached only with a condition that became constant during import, from input dims that
    --shape fixed: the inlining pass, which decides constant Ifs, runs before --shape applies."""
    raise RnnaccelError("If on a condition that is constant only once --shape fixes the input dims; "
                        "export the model with those dims static, or freeze the inputs with --const")


If.kind = "inline"  # what --supported-ops and docs/operators.md say about it


def _constant_condition(view: NodeView) -> bool:
    return view.input(0).is_const


CONSTRAINTS = {"If": (Constraint(DATA_CONDITION, _constant_condition, lambda v: f"'{v.input(0).name}'"),)}
declare(CONSTRAINTS)

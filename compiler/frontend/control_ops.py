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
    """Reached only with a constant condition that the inlining pass did not see (a model given to
    import_model without freeze.freeze): that pass is where a constant If is decided."""
    raise RnnaccelError("If with a constant condition must be inlined first (compiler.frontend.freeze)")


If.kind = "inline"  # what --supported-ops and docs/operators.md say about it


def _constant_condition(view: NodeView) -> bool:
    return view.input(0).is_const


CONSTRAINTS = {"If": (Constraint(DATA_CONDITION, _constant_condition, lambda v: f"'{v.input(0).name}'"),)}
declare(CONSTRAINTS)

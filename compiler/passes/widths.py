"""Widths by name: bits per named matrix, compiled without the search of `--compress auto`
(passes/budget.py), whose log ends with the `--widths` option that repeats its choice. The names
are the report's: a node's source name and its matrix's key (`NODE/qx0`, `NODE/qh0`, `NODE/q`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from compiler.ir import Graph, QMatrix
from compiler.ops import OPS
from compiler.passes.compress import Compression
from isa.errors import RnnaccelError

WIDTHS = (None, 4, 3, 2)  # the widths a matrix takes, from plain weights down
WRITTEN = {"plain" if bits is None else str(bits): bits for bits in WIDTHS}  # as --widths writes them
TEXT = {bits: text for text, bits in WRITTEN.items()}


def chosen_width(bits: int | None, groups: str, activation_aware: bool, refit: bool = True) -> Compression | None:
    """A matrix's compression as `--compress auto` chooses it and `--widths` repeats it; None for
    plain weights. The search measures its trials with `refit=False`, the step-wise fit: a refit
    through time (ops/recurrent/refit.py) learns the calibration samples the budget is measured
    on, so measured with it the budget would bound nothing. The chosen program is refitted, since
    on other inputs the refit lowers the error that the budget was measured with."""
    return None if bits is None else Compression(bits, groups, activation_aware, refit=refit)


@dataclass(frozen=True)
class Widths:
    """Bits per named matrix (4, 3, 2, or None for plain), every other matrix plain: a choice
    `--compress auto` made, or a user's, compiled again without measuring anything. Names are the
    report's (`NODE/qx0`...)."""

    bits: tuple[tuple[str, int | None], ...] | Mapping[str, int | None]
    groups: str = "tile"
    activation_aware: bool = True

    def __post_init__(self) -> None:
        names = [name for name, _ in (self.bits.items() if isinstance(self.bits, Mapping) else self.bits)]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise RnnaccelError(f"--widths: {', '.join(twice)} given twice; give each matrix one width")
        object.__setattr__(self, "bits", tuple(dict(self.bits).items()))
        wrong = [f"{name}={b}" for name, b in self.bits if b not in WIDTHS]
        if wrong:
            raise RnnaccelError(f"--widths {', '.join(wrong)}: expected 4, 3, 2 or plain bits per matrix")

    @property
    def chosen(self) -> dict[str, Compression | None]:
        return {name: chosen_width(b, self.groups, self.activation_aware) for name, b in self.bits}

    @property
    def smallest(self) -> Compression | None:
        widths = [b for _, b in self.bits if b is not None]
        return chosen_width(min(widths) if widths else None, self.groups, self.activation_aware, refit=False)

    def check_names(self, graphs: list[Graph]) -> None:
        """Every name must be a matrix of the program (of one of its islands) that takes the bits
        given: a misspelt one, or a depthwise kernel's taps (never a codebook), would silently stay plain."""
        known = {name: q for graph in graphs for name, q in named_matrices(graph)}
        unknown = [name for name, _ in self.bits if name not in known]
        if unknown:
            raise RnnaccelError(f"--widths: {', '.join(unknown)} is no matrix of this program; its matrices are "
                                f"{', '.join(sorted(known)) or 'none'}")
        plain = [f"{name}={b}" for name, b in self.bits if b is not None and known[name].codebook is None]
        if plain:
            raise RnnaccelError(f"--widths {', '.join(plain)}: takes no codebook (a depthwise kernel's taps never "
                                "do); give it plain or leave it out")


def parse_widths(text: str) -> tuple[tuple[str, int | None], ...]:
    """NAME=BITS,... as (name, bits) pairs, plain as None."""
    pairs = []
    for item in text.split(","):
        name, _, bits = item.strip().rpartition("=")
        if not name or bits not in WRITTEN:
            raise RnnaccelError(f"--widths {item}: expected NAME=BITS with BITS 4, 3, 2 or plain")
        pairs.append((name, WRITTEN[bits]))
    return tuple(pairs)


def as_option(widths: Iterable[tuple[str, int | None]]) -> str:
    """(matrix, bits) pairs as --widths takes them."""
    return ",".join(f"{name}={TEXT[bits]}" for name, bits in widths)


def matrix_names(graph: Graph) -> list[str]:
    """The names `Widths` and the report give a quantised graph's matrices."""
    return [name for name, _ in named_matrices(graph)]


def named_matrices(graph: Graph) -> Iterator[tuple[str, QMatrix]]:
    """A quantised graph's matrices by the names WeightPolicy.chosen gives them."""
    for node in graph.nodes:
        for key, q in OPS[node.op].parameters(node.attrs).matrices.items():
            yield f"{node.source}/{key}", q

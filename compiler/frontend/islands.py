"""Chip islands: the largest connected, convex groups of chip nodes (partition.py places them).

An island becomes one chip program, run between host operators. It must be convex: no path may
leave it (through a host node or another island) and come back into it, or the host would have
to run in the middle of the program. The greedy walk below sees the nodes in graph order, which
is topological; a node joins the islands of its chip producers unless a path through the host
already links one of them to it, and islands merge when a node joins several of them and neither
reaches the other through the host. `is_convex` checks the result by brute force, for tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class _Islands:
    """Union-find over island ids, with what each island can reach only through outside nodes."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.tainted: list[set[int]] = []  # islands with a path into this one that leaves them first

    def new(self) -> int:
        self.parent.append(len(self.parent))
        self.tainted.append(set())
        return len(self.parent) - 1

    def find(self, island: int) -> int:
        while self.parent[island] != island:
            island = self.parent[island]
        return island

    def roots(self, islands: set[int]) -> set[int]:
        return {self.find(i) for i in islands}

    def merge(self, a: int, b: int) -> int:
        self.parent[b] = a
        self.tainted[a] |= self.tainted[b]
        return a

    def compatible(self, a: int, b: int) -> bool:
        """Merging a and b keeps both convex: neither reaches the other through outside nodes."""
        return a not in self.roots(self.tainted[b]) and b not in self.roots(self.tainted[a])


def form_islands(nodes: Sequence[int], chip: set[int], producers: Mapping[int, Sequence[int]]) -> list[list[int]]:
    """The islands of the `chip` nodes among `nodes` (in topological order), each in that order.
    `producers[n]` are the nodes whose outputs n reads (ignored when they are not in `nodes`)."""
    sets = _Islands()
    island: dict[int, int] = {}
    reach: dict[int, set[int]] = {}  # islands with any path to the node (its own included)
    taint: dict[int, set[int]] = {}  # islands with a path to the node through an outside node
    for n in nodes:
        known = [p for p in producers.get(n, ()) if p in reach]
        reach[n] = set().union(*(reach[p] for p in known)) if known else set()
        taint[n] = set().union(*(taint[p] | (reach[p] if p not in chip else set()) for p in known)) if known else set()
        if n not in chip:
            continue
        bad = sets.roots(taint[n])
        candidates = [r for r in dict.fromkeys(sets.find(island[p]) for p in known if p in chip) if r not in bad]
        joined = candidates[0] if candidates else sets.new()
        for other in candidates[1:]:
            if sets.compatible(joined, other):
                joined = sets.merge(joined, other)
        island[n] = joined
        sets.tainted[joined] |= taint[n]
        reach[n].add(joined)
        for p in known:  # a chip producer left in another island is an outside node on this path
            if p in chip and sets.find(island[p]) != joined:
                taint[n] |= reach[p]
    groups: dict[int, list[int]] = {}
    for n in nodes:
        if n in island:
            groups.setdefault(sets.find(island[n]), []).append(n)
    return list(groups.values())


def is_convex(members: set[int], nodes: Sequence[int], producers: Mapping[int, Sequence[int]]) -> bool:
    """No node outside `members` is both reached from them and reaches them (brute force)."""
    below: set[int] = set()  # nodes reached from the island, outside it
    for n in nodes:
        feeds = [p for p in producers.get(n, ()) if p in members or p in below]
        if not feeds:
            continue
        if n in members:
            if any(p in below for p in feeds):
                return False
        else:
            below.add(n)
    return True

"""Schedule tuning: each recurrent layer's step schedule chosen by timing it.

The rules of thumb (tile.recurrent_height, cells.default_schedule) judge a step by a few
figures; on wide arrays and on hidden sizes that do not fill whole tiles they missed the
reachable by up to 15 % (bench/schedule.py). This pass lowers a short copy of each recurrent
layer (TRIAL_STEPS steps, the layer alone) under a few schedules, times each with the machine's
own timing rules (isa.timing, the simulator's too), and keeps the fastest. For each of a few
tile heights of R (`_heights`: the largest powers of two, and heights of whole unit groups) it
finds how the unit groups best batch (how many interleave at least, whether a later tile's
groups join late), then with that where R h best splits into two column chunks, then the
batching again with that cut (the two interact). At the best one's tile height it then tries the
step's unit groups in one batch in critical-path order (passes/critical.py), for each cut, and
last the best with R's last whole tile and tail cut again (tile.recut_tail). The rule of thumb
is the first candidate and wins ties, so as the trial measures it tuning never makes a layer
slower.

A schedule decides the order and shape of instructions, never their arithmetic: accumulators keep
their guard bits, so results are the same to the bit whatever is chosen. What the trial times
depends on the layer's shape, formats and the target, not on its weights; the choice is kept per
shape (`_CHOSEN`), so a process compiling the same layer again does not time it again, and the
same model always compiles to the same program. Layers with compressed recurrent matrices (their
cycles depend on the weights), streaming layers (one step per run), short sequences, steps of
more than MOST_GROUPS unit groups (their trials grow with them while the waits tuning hides
shrink to a small share of the step) and arrays narrower than TUNED_FROM (a tile smaller than a
unit group's rows: the MAC work of a step dwarfs its waits, and the rule measured within 0.3 %
of the bound on every bench model) keep the rule of thumb.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator

import numpy as np

from compiler.backend.emit import instruction
from compiler.ir import Graph, Node, QMatrix
from compiler.kernel import Kernel
from compiler.ops.recurrent.cells import default_schedule, recurrent_matrix
from compiler.ops.recurrent.records import CellWeights, QuantRecurrentAttrs, StepSchedule
from compiler.passes.critical import Issuer, critical_order
from compiler.passes.interleave import interleave
from compiler.passes.schedule import lower
from compiler.passes.tile import group_heights, recurrent_heights, recut_tail, row_tiles, unit_groups
from isa.bounds import bound_cycles, vector_elements
from isa.encoding import Instruction
from isa.table import evaluate
from isa.target import Target

TRIAL_STEPS = 10  # a first and a last step apart, and three pairs of middle steps (chunked steps alternate)
# where R h may be cut, as shares of h's unit groups (three or four chunks measured no faster)
CUTS = ((1 / 4,), (3 / 8,), (1 / 2,), (5 / 8,))
CHAINS = (2, 3, 4)
TUNED_FROM = 32  # MACs; on 8 and 16 lanes a tile is smaller than a unit group: the rule measured within 0.3 %
MOST_GROUPS = 32  # unit groups a step; more make the waits a small share (256 units: >= 98.9 % untuned)
GOOD = 0.985  # of the work bound: a rule of thumb this close leaves a search little to find
HEIGHTS = 2  # the largest tile heights tried: smaller ones won no bench model by more than 0.3 %


@dataclasses.dataclass(frozen=True)
class Choice:
    """One candidate: R's tile height, whether its last whole tile and tail are cut again
    (tile.recut_tail), and the step schedule."""

    height: int
    schedule: StepSchedule
    recut: bool = False


_CHOSEN: dict[tuple, Choice] = {}


def tune_schedules(graph: Graph, target: Target, log: Callable[[str], None] = lambda message: None) -> Graph:
    """The graph with each tunable recurrent layer's fastest schedule (its R re-tiled to it)."""
    def tuned(node: Node) -> Node:
        if not _tunable(node, target):
            return node
        choice = _choose(graph, node, target, log)
        recut = " (the last whole tile and the tail cut again)" if choice.recut else ""
        log(f"schedule of {node.source}: R in tiles of {choice.height} rows{recut}, {_said(choice.schedule)}")
        return _with(node, choice, target)
    return graph.replace(nodes=tuple(tuned(node) for node in graph.nodes))


def _tunable(node: Node, target: Target) -> bool:
    a = node.attrs
    if not isinstance(a, QuantRecurrentAttrs) or a.stream or a.steps < TRIAL_STEPS or target.macs < TUNED_FROM:
        return False
    groups = len(unit_groups(a.hidden, target.vec_lanes)) * len(a.directions) * a.batch
    return groups <= MOST_GROUPS and all(m.codebook is None for cell in a.cells for m in _recurrent(cell).values())


def _recurrent(cell: CellWeights) -> dict:
    return {k: m for k, m in (("h", cell.h), ("zr", cell.zr), ("hh", cell.hh)) if m is not None}


def _said(schedule: StepSchedule) -> str:
    chunks = f"R h in chunks cut at unit {', '.join(map(str, schedule.cuts))}" if schedule.cuts else "R h whole"
    if schedule.order:
        return f"{chunks}, the unit groups interleaved in critical-path order"
    return f"{chunks}, at least {schedule.chains} unit groups interleaved{'' if schedule.late else ', none late'}"


def _choose(graph: Graph, node: Node, target: Target, log: Callable[[str], None] = lambda message: None) -> Choice:
    key = (_shape_key(node, target), _keeps_every_step(graph, node))
    if key not in _CHOSEN:
        _CHOSEN[key] = _search(graph, node, target, log)
    return _CHOSEN[key]


def _search(graph: Graph, node: Node, target: Target, log: Callable[[str], None] = lambda message: None) -> Choice:
    """For each tile height, the best batching of the groups, the best column cut with it, and
    the best batching with that cut; the fastest of those, the rule of thumb first and kept on a
    tie; then that one against the critical-path orders at its height, and the winner against
    itself with the tail re-cut. Nothing to search where the rule's steps already take within
    GOOD of their work's bound."""
    best = _rule_of_thumb(node, target, _height(node))
    rule = _trial(graph, node, target, best)
    if rule.bound >= GOOD * rule.period:
        return best
    log(f"tuning the schedule of {node.source}: its steps run at {rule.bound / rule.period:.1%} of their work's "
        f"bound; timing trials (a few seconds)")
    timed = {best: rule.cycles}

    def cycles(choice: Choice) -> float:
        if choice not in timed:
            timed[choice] = _trial(graph, node, target, choice).cycles
        return timed[choice]
    for height in _heights(node, target):
        local = min(_batchings(_rule_of_thumb(node, target, height)), key=cycles)
        local = min(_cuts(node, target, local), key=cycles)
        local = min(_batchings(local), key=cycles)
        if cycles(local) < cycles(best):
            best = local
    best = min(_critical(graph, node, target, best), key=cycles)
    return min(_recut(node, target, best), key=cycles)


def _r(node: Node) -> QMatrix:
    """The first direction's matrix that multiplies h (its tiles are R's)."""
    return recurrent_matrix(node.attrs.cells[0].named())


def _height(node: Node) -> int:
    start, end = _r(node).tiles[0]
    return end - start


def _rule_of_thumb(node: Node, target: Target, height: int) -> Choice:
    tiles = row_tiles(_r(node).rows, height, tail=True)
    return Choice(height, default_schedule(node.attrs, target, len(tiles), False))


def _heights(node: Node, target: Target) -> list[int]:
    """The largest HEIGHTS powers of two, then the heights of whole unit groups (tile.group_heights)."""
    hidden = node.attrs.hidden
    gates = _r(node).rows // hidden
    powers = recurrent_heights(hidden, gates, target)[:HEIGHTS]
    return list(dict.fromkeys(powers + group_heights(hidden, gates, target)))


def _cuts(node: Node, target: Target, rule: Choice) -> Iterator[Choice]:
    """The rule, then R h whole or cut into two column chunks at each of CUTS (one direction
    only: two directions already fill each other's waits)."""
    yield rule
    a = node.attrs
    groups = unit_groups(a.hidden, target.vec_lanes)
    for shares in ((), *CUTS) if len(a.directions) == 1 and len(groups) > 1 else ():
        cuts = tuple(sorted({groups[min(len(groups) - 1, max(1, round(s * len(groups))))][0] for s in shares}))
        yield dataclasses.replace(rule, schedule=dataclasses.replace(rule.schedule, cuts=cuts))


def _batchings(choice: Choice) -> Iterator[Choice]:
    """The choice, then each batching of the unit groups (`chains`, `late`) with its tiles and cut."""
    yield choice
    for chains, late in itertools.product(CHAINS, (True, False)):
        yield dataclasses.replace(choice, schedule=dataclasses.replace(choice.schedule, chains=chains, late=late))


def _critical(graph: Graph, node: Node, target: Target, best: Choice) -> Iterator[Choice]:
    """The best choice, then with its tile height, R h whole and cut at each of CUTS: the
    step's unit groups in one batch, in the order a critical-path list scheduler issues them in a
    middle step of the trial (passes/critical.py). Not for a GRU without linear_before_reset,
    whose step has two batches of other streams."""
    yield best
    groups = unit_groups(node.attrs.hidden, target.vec_lanes)
    if len(groups) < 2 or node.attrs.cells[0].zr is not None:
        return
    for cut in list(_cuts(node, target, _rule_of_thumb(node, target, best.height)))[1:]:
        one = dataclasses.replace(cut.schedule, chains=len(groups), late=False)
        kernel = lower(_trial_graph(graph, _with(node, dataclasses.replace(cut, schedule=one), target)), target)
        def rank(k: int, cuts: tuple[int, ...] = one.cuts) -> int:
            return sum(groups[k][0] >= c for c in cuts)
        middle = kernel.loops[0].waves[TRIAL_STEPS // 2][0]
        order = critical_order(kernel, _apart(kernel), target, rank, middle)
        yield dataclasses.replace(cut, schedule=dataclasses.replace(one, order=order))


def _recut(node: Node, target: Target, best: Choice) -> Iterator[Choice]:
    """The best choice, then with its last whole tile and tail cut again where that changes them."""
    yield best
    recut = dataclasses.replace(best, recut=True)
    if any(_tiles(m, recut, target) != _tiles(m, best, target) for m in _recurrent(node.attrs.cells[0]).values()):
        yield recut


def _tiles(m: QMatrix, choice: Choice, target: Target) -> tuple[tuple[int, int], ...]:
    """A recurrent matrix's tiles under the choice."""
    tiles = row_tiles(m.rows, choice.height, tail=True)
    return recut_tail(tiles, m.cols, target.macs) if choice.recut else tiles


def _with(node: Node, choice: Choice, target: Target) -> Node:
    """The node with R in tiles of the choice's height and the choice's step schedule."""
    def retiled(cell: CellWeights) -> CellWeights:
        tiles = {k: dataclasses.replace(m, tiles=_tiles(m, choice, target)) for k, m in _recurrent(cell).items()}
        return dataclasses.replace(cell, **tiles)
    return node.with_attrs(cells=tuple(retiled(c) for c in node.attrs.cells), schedule=choice.schedule)


@dataclasses.dataclass(frozen=True)
class Trial:
    """What a trial tells of a schedule: the layer's cycles over its own steps (the trial's,
    plus the steps it leaves out at the period of its middle steps, so a schedule that starts or
    ends a little faster does not win over one that runs faster), that period, and a middle
    step's work over the units' lanes (isa.bounds), which no schedule beats."""

    cycles: float
    period: float
    bound: float


def _trial(graph: Graph, node: Node, target: Target, choice: Choice) -> Trial:
    kernel = interleave(lower(_trial_graph(graph, _with(node, choice, target)), target))
    addresses = _apart(kernel)
    code = [instruction(op, addresses) for op in kernel.ops]
    ready = ready_times(code, target)
    (loop,) = kernel.loops
    done = [max(ready[start:end]) for start, end in loop.waves]
    first, last = 2, TRIAL_STEPS - 2
    period = (done[last] - done[first]) / (last - first)
    middle = [instr for start, end in loop.waves[first + 1:last + 1] for instr in code[start:end]]
    tenv = target.env()
    work = bound_cycles(sum(evaluate(i.op.macs, i.env(tenv)) for i in middle),
                        sum(vector_elements(i) for i in middle if i.op.unit == "VEC"), target)
    return Trial(max(ready) + (node.attrs.steps - TRIAL_STEPS) * period, period, work / (last - first))


def _trial_graph(graph: Graph, node: Node) -> Graph:
    """The layer alone over TRIAL_STEPS whole sequences from zero state, its hidden states
    written where the real layer writes them: every step into Y, or two buffers in turn."""
    a, steps = node.attrs, TRIAL_STEPS
    x, (y, y_h) = node.inputs[0], (node.outputs + ("", ""))[:2]
    every = _keeps_every_step(graph, node)
    out = y if every else (y_h or f"{node.source}/Y_h")
    dirs = len(a.directions)
    x_shape = (steps, a.batch, a.inputs) if a.layout == 0 else (a.batch, steps, a.inputs)
    y_shape = (steps, dirs, a.batch, a.hidden) if a.layout == 0 else (a.batch, steps, dirs, a.hidden)
    shape = y_shape if every else ((dirs, a.batch, a.hidden) if a.layout == 0 else (a.batch, dirs, a.hidden))
    attrs = dataclasses.replace(a, steps=steps, seq_lens=(steps,) * a.batch, y_steps=None)
    zero_state = (x,) + ("",) * (len(node.inputs) - 1)
    trial = dataclasses.replace(node, inputs=zero_state, outputs=(out,) if every else ("", out), attrs=attrs)
    scales = {x: graph.scales.get(x, 1.0), out: graph.scales.get(out, 1.0)}
    return Graph(f"tune {node.source}", (x,), (out,), (trial,), {x: x_shape, out: shape}, scales)


def _keeps_every_step(graph: Graph, node: Node) -> bool:
    y = node.outputs[0] if node.outputs else ""
    return bool(y) and graph.is_used(y) and node.attrs.y_steps is None


def ready_times(code: list[Instruction], target: Target) -> list[int]:
    """When each instruction has its result readable, run once in program order (no loops) by
    the machine's timing rules: the simulator's times for a program of this code."""
    issuer = Issuer(code, target)
    return [issuer.issue(i) for i in range(len(code))]


def _apart(kernel: Kernel) -> dict[str, int]:
    """Every buffer at its own addresses, one after another in each memory: a trial's layout.
    Allocation would let buffers whose lives do not overlap share space, which can only add a
    wait where a reuse follows a read closely; a trial's buffers nearly all live through it."""
    top: dict[str, int] = {}
    addresses = {}
    for buffer in kernel.buffers.values():
        addresses[buffer.name] = top.get(buffer.memory, 0)
        top[buffer.memory] = addresses[buffer.name] + buffer.size
    return addresses


def _shape_key(node: Node, target: Target) -> tuple:
    """What the trial's instructions and figure depend on: everything but the weights' values
    (arrays count by their shapes) and what calibration saw."""
    a = node.attrs
    def part(name: str, value) -> object:
        if isinstance(value, np.ndarray):
            return value.shape
        if name == "cells":
            return tuple((tuple((k, m.weights.shape, m.tiles) for k, m in _recurrent(c).items()),
                          c.x.weights.shape, c.x.tiles, c.peephole is not None) for c in value)
        return value
    skip = {"seq_lens", "ranges", "schedule"}
    fields = tuple((f.name, part(f.name, getattr(a, f.name))) for f in dataclasses.fields(a) if f.name not in skip)
    return node.op, type(a).__name__, fields, target

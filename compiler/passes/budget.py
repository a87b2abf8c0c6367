"""`--compress auto`: bits per matrix (4, 3, 2 or none) for the fewest stored bytes within an
accuracy budget, measured on the calibration samples through the golden reference against the
float model, so no labels are needed.

A user who picks one width for every matrix must guess, and then measure with labels they may
not have. The matrices of a model differ: a recurrent R compounds its rounding error through
time, a wide input projection or a classifier head may take 2 bits for nothing. So each
matrix's *sensitivity* is measured alone (the outputs' error with only that matrix compressed,
at each width), then matrices go down one width at a time, the step that saves the most bytes
per unit of sensitivity first; each step is kept only if the whole model, measured again, still
meets the budget, and a matrix whose step fails stays where it is. The budget is either the
share of calibration samples (each frame of a sequence output) whose top-1 class agrees with the
float model's, or the outputs' relative RMS error against it. docs/numerics.md says how to read
the figures the report keeps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from compiler.float_eval import run_float
from compiler.ir import Graph
from compiler.passes.compress import Compression, stored_bytes_at_least
from compiler.passes.confidence import agreement_at_least, samples_to_resolve
from compiler.passes.widths import WIDTHS, Widths, chosen_width, named_matrices
from compiler.reference import reference_outputs
from isa import numerics as nx
from isa.errors import RnnaccelError
from isa.target import Target

DEFAULT_AGREEMENT = 0.99
FLOOR = 1e-9  # sensitivity below this counts as this: a free step is taken first, largest first


@dataclass(frozen=True)
class Budget:
    """What `--compress auto` must keep: top-1 agreement with the float model on at least
    `min_agreement` of the calibration samples, or else (given) outputs within `max_error`
    relative RMS error of the float model's. `groups` and `activation_aware` are every chosen
    codebook's (compress.Compression)."""

    min_agreement: float | None = DEFAULT_AGREEMENT
    max_error: float | None = None
    groups: str = "tile"
    activation_aware: bool = True

    def __post_init__(self) -> None:
        if (self.min_agreement is None) == (self.max_error is None):
            raise RnnaccelError("--compress auto takes one budget: --min-agreement or --max-error")
        if self.min_agreement is not None and not 0.0 < self.min_agreement <= 1.0:
            raise RnnaccelError(f"--min-agreement {self.min_agreement}: expected a share in (0, 1]")
        if self.max_error is not None and not 0.0 < self.max_error < math.inf:
            raise RnnaccelError(f"--max-error {self.max_error}: expected a finite relative error above 0")

    def compression(self, bits: int | None) -> Compression | None:
        """A width as the chosen program takes it (widths.chosen_width)."""
        return chosen_width(bits, self.groups, self.activation_aware)

    def measured(self, bits: int | None) -> Compression | None:
        """A width as the search measures it: the step-wise fit, not refitted (widths.chosen_width)."""
        return chosen_width(bits, self.groups, self.activation_aware, refit=False)

    @property
    def smallest(self) -> Compression:
        """The most any matrix may be compressed: what the early capacity check judges."""
        return self.measured(WIDTHS[-1])

    def describe(self) -> str:
        if self.min_agreement is not None:
            return f"top-1 agreement with the float model >= {self.min_agreement:.2%}"
        return f"relative RMS error against the float model <= {self.max_error:g}"


@dataclass(frozen=True)
class Closeness:
    """How close a quantised model's outputs are to the float model's on the calibration samples:
    top-1 agreement (None when no output has classes) over `compared` top-1 decisions, and the
    worst output's relative RMS error."""

    agreement: float | None
    error: float
    compared: int = 0

    def within(self, budget: Budget) -> bool:
        if budget.min_agreement is not None:
            return self.agreement is not None and self.agreement >= budget.min_agreement
        return self.error <= budget.max_error

    def figures(self) -> dict:
        bound = None if self.agreement is None else round(agreement_at_least(self.agreement, self.compared), 6)
        return {"agreement": self.agreement, "agreement_at_least": bound, "error": round(self.error, 6)}


@dataclass(frozen=True)
class MatrixChoice:
    name: str
    shape: tuple[int, int]
    bits: int | None
    stored_bytes: int  # at least (compress.stored_bytes_at_least): what the choice weighs
    sensitivity: dict[int, float]  # bits -> the error it adds alone (relative RMS)


@dataclass(frozen=True)
class Choice:
    """The widths chosen, with what they were chosen on; `chosen` is WeightPolicy.chosen."""

    budget: Budget
    samples: int
    baseline: Closeness  # every matrix plain
    reached: Closeness
    matrices: tuple[MatrixChoice, ...]

    @property
    def chosen(self) -> dict[str, Compression | None]:
        return {m.name: self.budget.compression(m.bits) for m in self.matrices}

    def figures(self) -> dict:
        """The report's `compression` object."""
        budget = {"min_agreement": self.budget.min_agreement} if self.budget.min_agreement is not None \
            else {"max_error": self.budget.max_error}
        return {"mode": "auto", "budget": budget, "samples": self.samples, "plain": self.baseline.figures(),
                "reached": self.reached.figures(),
                "matrices": [{"matrix": m.name, "shape": list(m.shape), "bits": m.bits,
                              "stored_bytes_at_least": m.stored_bytes,
                              "sensitivity": {str(b): round(s, 6) for b, s in m.sensitivity.items()}}
                             for m in self.matrices]}


def fewest_bytes(compression: Compression | Budget | Widths | None) -> Compression | None:
    """What a capacity check before quantising judges the weights by: a budget may compress any
    matrix to its smallest width, and so may widths by name (the check cannot tell which)."""
    return compression.smallest if isinstance(compression, Budget | Widths) else compression


Quantizer = Callable[[Mapping[str, Compression | None]], Graph]


def choose_compression(graph: Graph, samples: Mapping[str, np.ndarray], budget: Budget, target: Target,
                       quantize: Quantizer, log: Callable[[str], None], states: frozenset[str] = frozenset()) -> Choice:
    """The widths for `graph`'s matrices within `budget`; `quantize(chosen)` is the graph
    quantised with those widths (passes/quantize.py, with everything else as the compile has it).
    State pairs' outputs (`states`) have no top-1 class, and whether the host reads them must not
    change the choice: they are not measured."""
    floats = _float_outputs(graph, samples, states)
    measured = _measure(floats, samples, budget, graph.name)
    plain = quantize({})
    names = _compressible(plain, quantize, budget)
    count = len(next(iter(samples.values())))
    baseline = measured(plain)

    def closeness(chosen: Mapping[str, Compression | None]) -> Closeness:
        return measured(quantize(chosen))
    if not names:
        log("--compress auto: no matrix of this model takes a codebook; its weights stay plain")
        return Choice(budget, count, baseline, baseline, ())
    log(f"choosing the compression of {_count(len(names), 'matrix', 'matrices')} for {budget.describe()} on "
        f"{_count(count, 'calibration sample', 'calibration samples')}: {len(names) * (len(WIDTHS) - 1)} "
        f"measurements, then one per step")
    _warn_unresolved(budget, baseline, log)
    if not baseline.within(budget):
        log(f"plain weights already miss the budget ({_said(baseline)}): nothing is compressed")
    sensitivity = {name: {bits: max(closeness({name: budget.measured(bits)}).error - baseline.error, 0.0)
                          for bits in WIDTHS[1:]} for name in names}
    bits, reached = _descend(names, sensitivity, closeness, budget, target, baseline, log) if baseline.within(budget) \
        else (dict.fromkeys(names), baseline)
    matrices = tuple(MatrixChoice(name, shape, bits[name], _stored(shape, bits[name], budget, target),
                                  sensitivity[name]) for name, shape in names.items())
    choice = Choice(budget, count, baseline, reached, matrices)
    log(f"compression within the budget: {', '.join(f'{m.name} {_width(m.bits)}' for m in matrices)}; "
        f"{_said(reached)} (plain weights: {_said(baseline)})")
    return choice


def _count(n: int, one: str, more: str) -> str:
    return f"{n} {one if n == 1 else more}"


def _warn_unresolved(budget: Budget, baseline: Closeness, log: Callable[[str], None]) -> None:
    """Says so when the calibration samples are too few for the agreement asked: the budget is
    then met on them, but no more is known of other inputs than the report's `agreement_at_least`."""
    wanted = budget.min_agreement
    if wanted is None or baseline.agreement is None or agreement_at_least(1.0, baseline.compared) >= wanted:
        return
    log(f"--min-agreement {wanted:g} on {baseline.compared} top-1 decisions: even all of them agreeing bounds the "
        f"agreement on other inputs only above {agreement_at_least(1.0, baseline.compared):.1%} (95 % confidence); "
        f"{samples_to_resolve(wanted)} would resolve it")


def _descend(names: Mapping[str, tuple[int, int]], sensitivity: dict[str, dict[int, float]],
             closeness: Callable[[Mapping[str, Compression | None]], Closeness], budget: Budget, target: Target,
             reached: Closeness, log: Callable[[str], None]) -> tuple[dict[str, int | None], Closeness]:
    """Greedy: of the steps still open, the one that saves the most bytes per unit of the error it
    adds alone; kept if the model still meets the budget. A step that misses it is tried once more
    in exchange for one step already taken by a matrix that saved fewer bytes: matrices interact
    (a recurrent layer's W and R are fitted together), so a large R may go down where a small W
    gives back its last step. Then the widths further down are tried: rounding is not monotone in
    the width (a head at 2 bits may keep every top-1 class that it flipped at 4). Otherwise that
    matrix waits until another matrix takes a step, and is tried again then."""
    descent = _Descent(names, sensitivity, closeness, budget, target, log, dict.fromkeys(names), reached)
    open_, parked = set(names), set()
    while open_:
        name = max(sorted(open_), key=lambda n: _worth(names[n], descent.bits[n], sensitivity[n], budget, target))
        open_.discard(name)
        lower = descent.step_down(name, open_)
        if lower is None:
            parked.add(name)
            continue
        open_ |= parked | ({name} if lower != WIDTHS[-1] else set())
        parked = set()
    return descent.bits, descent.reached


@dataclass
class _Descent:
    """The widths so far, and the trials that move them."""

    names: Mapping[str, tuple[int, int]]
    sensitivity: dict[str, dict[int, float]]
    closeness: Callable[[Mapping[str, Compression | None]], Closeness]
    budget: Budget
    target: Target
    log: Callable[[str], None]
    bits: dict[str, int | None]
    reached: Closeness

    def attempt(self, changes: dict[str, int | None]) -> bool:
        """Measure the widths with `changes`; keep them if the budget holds."""
        trial = self.closeness({n: self.budget.measured(b) for n, b in {**self.bits, **changes}.items()})
        kept = trial.within(self.budget)
        moves = " and ".join(f"{n} {_width(self.bits[n])} -> {_width(b)}" for n, b in changes.items())
        self.log(f"  {moves}: {_said(trial)}, {'kept' if kept else 'over the budget'}")
        if kept:
            self.bits.update(changes)
            self.reached = trial
        return kept

    def step_down(self, name: str, open_: set[str]) -> int | None:
        """The width `name` went down to: the next one (alone, or in exchange), else a lower one
        alone; None if every one misses the budget."""
        lower = _below(self.bits[name])
        if self.attempt({name: lower}) or self.exchange(name, lower, open_):
            return lower
        return next((deeper for deeper in WIDTHS[WIDTHS.index(lower) + 1:] if self.attempt({name: deeper})), None)

    def exchange(self, name: str, lower: int, open_: set[str]) -> bool:
        """`name`'s step with another matrix's last step undone, the one whose step added the most
        error first, among those that saved fewer bytes; the matrix given back stops there."""
        gain = self._saved(name, self.bits[name], lower)
        taken = [n for n, b in self.bits.items() if n != name and b is not None
                 and self._saved(n, _above(b), b) < gain]
        for other in sorted(taken, key=lambda n: -self._added(n)):
            if self.attempt({name: lower, other: _above(self.bits[other])}):
                open_.discard(other)
                return True
        return False

    def _saved(self, name: str, high: int | None, low: int) -> int:
        return _saved(self.names[name], high, low, self.budget, self.target)

    def _added(self, name: str) -> float:
        """The error a matrix's last step added alone."""
        bits = self.bits[name]
        return _added(self.sensitivity[name], _above(bits), bits)


def _below(bits: int | None) -> int:
    return WIDTHS[WIDTHS.index(bits) + 1]


def _above(bits: int) -> int | None:
    return WIDTHS[WIDTHS.index(bits) - 1]


def _worth(shape: tuple[int, int], bits: int | None, sensitivity: dict[int, float], budget: Budget,
           target: Target) -> float:
    """Bytes a matrix's next step down saves, per unit of the error it adds over its present width."""
    lower = _below(bits)
    return _saved(shape, bits, lower, budget, target) / max(_added(sensitivity, bits, lower), FLOOR)


def _saved(shape: tuple[int, int], high: int | None, low: int, budget: Budget, target: Target) -> int:
    """Stored bytes a step from width `high` down to `low` saves."""
    return _stored(shape, high, budget, target) - _stored(shape, low, budget, target)


def _added(sensitivity: dict[int, float], high: int | None, low: int) -> float:
    """The error a step from width `high` down to `low` adds alone (plain weights add none)."""
    return sensitivity[low] - (0.0 if high is None else sensitivity[high])


def _stored(shape: tuple[int, int], bits: int | None, budget: Budget, target: Target) -> int:
    return stored_bytes_at_least(np.ones(shape), target, budget.measured(bits))


def _compressible(plain: Graph, quantize: Quantizer, budget: Budget) -> dict[str, tuple[int, int]]:
    """The matrices the chosen widths reach (a depthwise kernel's taps never are), by name, with
    their shapes: those that take a codebook when every named matrix is asked for one."""
    names = {name: q.weights.shape for name, q in named_matrices(plain)}
    return {name: names[name] for name, q in named_matrices(quantize(dict.fromkeys(names, budget.smallest)))
            if q.codebook is not None}


def _float_outputs(graph: Graph, samples: Mapping[str, np.ndarray], states: frozenset[str]) -> dict[str, np.ndarray]:
    """The float model's host outputs but the states (all of them if nothing else is left); the
    state the chip keeps is the calibration's (zero where it has none), as `_reference_outputs`'s."""
    count = len(next(iter(samples.values())))
    inputs = {**{name: np.zeros((count, *graph.shapes[name])) for name, _ in graph.bound}, **samples}
    values = run_float(graph, {name: inputs[name] for name in graph.inputs})
    measured = [name for name in graph.host_outputs if name not in states] or graph.host_outputs
    return {name: values[name] for name in measured}


def _measure(floats: dict[str, np.ndarray], samples: Mapping[str, np.ndarray], budget: Budget,
             model: str) -> Callable[[Graph], Closeness]:
    """How close a quantised graph's outputs, through the golden reference, are to `floats`; an
    island (`model.islandK`) is measured on the tensors it gives the host, which the refusal names."""
    classes = {name for name, value in floats.items() if value.ndim > 1 and value.shape[-1] > 1}
    if budget.min_agreement is not None and not classes:
        raise RnnaccelError(f"--compress auto --min-agreement: no output of {model} has classes to agree on "
                            f"({', '.join(floats)}: one value per sample or frame); give --max-error instead")
    top = {name: floats[name].argmax(-1) for name in classes}

    def closeness(graph: Graph) -> Closeness:
        ints = _reference_outputs(graph, samples)
        values = {name: ints[name] * graph.boundary_scale(name) for name in floats}
        agree = np.concatenate([(values[n].argmax(-1) == top[n]).ravel() for n in sorted(classes)]) if classes \
            else None
        return Closeness(None if agree is None else float(agree.mean()),
                         max(_relative_rms(values[n], floats[n]) for n in floats), 0 if agree is None else agree.size)
    return closeness


def _reference_outputs(graph: Graph, samples: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The golden reference's host outputs, the state the chip keeps starting from the calibration's
    (closed loop): from zero state on every sample, a frame model's R would never be exercised."""
    state = {name: nx.quantize(samples[name], graph.boundary_scale(name)) for name, _ in graph.bound
             if name in samples}
    return reference_outputs(graph, {name: samples[name] for name in graph.host_inputs}, state)


def _relative_rms(value: np.ndarray, reference: np.ndarray) -> float:
    return float(np.sqrt(np.sum((value - reference) ** 2) / max(np.sum(reference ** 2), 1e-30)))


def _width(bits: int | None) -> str:
    return "plain" if bits is None else f"{bits}-bit"


def _said(closeness: Closeness) -> str:
    agreement = "" if closeness.agreement is None else f"top-1 agreement {closeness.agreement:.2%}, "
    return f"{agreement}relative error {closeness.error:.4f}"


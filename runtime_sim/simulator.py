"""The runtime API: load a program, feed float inputs, run, read outputs, statistics and trace.

    sim = runtime_sim.load("kws.rnna")
    result = sim.run({"audio": x})                 # one inference
    result = sim.run({"audio": xs}, batch=True)    # a leading sample axis: many at once
    stream = sim.stream()                          # a streaming program, one frame per step
    result = stream.step({"audio": frame})         # the recurrent state carries over


Inputs are quantised with numerics.quantize into host memory at each input descriptor;
outputs are read back from host memory and dequantised. A batch runs vectorised (all samples
step through each instruction together) in chunks that keep memory bounded. The program is
checked (every address inside its memory, no matrix-vector op wider than the MAC array) and
scheduled once, on the first run; timing is data-independent, so the statistics and trace
are the same for every sample. The trace (a record per executed instruction) is kept only when
asked for: the statistics are accumulated as the schedule is built. What a run needs beyond the
data is prepared with the schedule too: each instruction's decoded operands and semantics (a
Step, shared by a loop's unchanged instructions) and the fused steps (runtime_sim.fusion) that a
run executes, so a warm run is the arithmetic and little else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from isa import numerics
from isa.container import Program
from isa.encoding import Instruction
from isa.energy import energy_figures
from isa.errors import RnnaccelError
from isa.loops import MAX_EXECUTED, expand_program
from isa.target import Target
from isa.tensors import StateDesc, TensorDesc
from isa.timing import extents
from runtime_sim.breakdown import Breakdown
from runtime_sim.energy import at_rate
from runtime_sim.fusion import Levels, fused_steps
from runtime_sim.machine import (
    Machine,
    Tables,
    WeightMemory,
    check_descriptors,
    check_instruction,
    memory_sizes,
)
from runtime_sim.semantics import Step
from runtime_sim.timing import Timing, schedule

CHUNK = 512  # samples simulated together: large enough for BLAS, small enough for the caches


@dataclass(frozen=True)
class Result:
    """Dequantised float32 outputs, their raw integers, statistics and the per-instruction trace
    (None unless the Simulator keeps it)."""

    outputs: dict[str, np.ndarray]
    raw_outputs: dict[str, np.ndarray]
    stats: dict
    trace: list[dict] | None
    islands: tuple[IslandRun, ...] = ()  # a partitioned program's chip calls, in the order they ran


@dataclass(frozen=True)
class IslandRun:
    """One island's call within a partitioned run: the float inputs the host handed it (leading
    sample axis when batched), and its own Result (raw integer outputs, stats, trace)."""

    index: int
    inputs: dict[str, np.ndarray]
    result: Result


@dataclass(frozen=True)
class _Plan:
    stream: list[tuple[int, Instruction]]
    steps: tuple[Step, ...]  # the stream with operands decoded and semantics looked up, once
    fused: tuple[Step, ...]  # the same, independent instructions of a kind fused (runtime_sim.fusion)
    extents: dict[str, int]
    timing: Timing
    layers: tuple[int, list[dict]]


class Simulator:
    """A loaded program, ready to run any number of inferences.

    `max_instructions` bounds the executed (loop-expanded) instructions per inference, so a
    hostile or broken LOOP fails fast with RnnaccelError instead of running for hours. `trace`
    keeps a record per executed instruction (`timing.trace`, `Result.trace`; about a kilobyte
    each); without it they are None.
    """

    def __init__(self, program: Program, max_instructions: int = MAX_EXECUTED, trace: bool = True) -> None:
        self.program = program
        self.max_instructions = max_instructions
        self.keep_trace = trace

    @cached_property
    def _plan(self) -> _Plan:
        """Validate and schedule the program once; raises RnnaccelError naming the first problem."""
        prog = self.program
        sizes = memory_sizes(prog)
        check_descriptors(prog, sizes)
        stream = expand_program(prog, self.max_instructions)
        levels = Levels(sizes)
        reach = {**extents(levels.observe(_checked_footprints(stream, sizes, prog.target))), "host": sizes["host"]}
        layers = Breakdown(prog)
        timing = schedule(stream, prog.target, self.keep_trace, layers.add, reach)
        steps = _steps(stream)
        return _Plan(stream, steps, fused_steps(steps, levels.levels), reach, timing, layers.result())

    @cached_property
    def _wmem(self) -> WeightMemory:
        return WeightMemory(self.program)

    @cached_property
    def _tables(self) -> Tables:
        return Tables(list(self.program.tables.values()))

    @property
    def timing(self) -> Timing:
        return self._plan.timing

    @property
    def inputs(self) -> tuple[TensorDesc, ...]:
        return self.program.inputs

    @property
    def outputs(self) -> tuple[TensorDesc, ...]:
        return self.program.outputs

    @property
    def stats(self) -> dict:
        return make_stats(self._plan.timing, self.program, self._plan.layers)

    def run(self, inputs: Mapping[str, np.ndarray], batch: bool = False,
            progress: Callable[[int, int], None] | None = None) -> Result:
        """Run one inference (or, with batch=True, one per entry of the leading axis).

        `progress(done, total)` is called after each chunk of samples, so a long batch can show
        a progress bar without the simulator knowing about terminals.
        """
        quantised, count = self._quantise(inputs, batch)
        raws = []
        for part in chunks(count):
            raws.append(self._invoke(self.machine(part.stop - part.start), _part(quantised, part)))
            if progress is not None:
                progress(part.stop, count)
        return self._result(self._joined(raws), batch)

    def stream(self, samples: int | None = None) -> Stream:
        """Frame-by-frame runs of a streaming program (rnnaccel-compile --streaming), from zero
        state; with `samples`, that many independent streams step together."""
        if not self.program.streaming:
            raise RnnaccelError("this program keeps no state between runs; compile it with --streaming to stream it")
        return Stream(self, samples)

    def _result(self, raw: dict[str, np.ndarray], batch: bool) -> Result:
        trace = self.timing.trace
        if not batch:
            raw = {k: v[0] for k, v in raw.items()}
        outputs = {d.name: numerics.dequantize(raw[d.name], d.scales()) for d in self.program.outputs}
        return Result(outputs, raw, self.stats, None if trace is None else list(trace))

    def machine(self, batch: int = 1) -> Machine:
        """Fresh machine state for `batch` inferences (zeroed memories, weights loaded)."""
        return Machine.empty(batch, self._plan.extents, self._wmem, self._tables)

    def execute(self, m: Machine, fused: bool = True) -> None:
        """Run the whole program on `m` (the raw-integer level, for debugging): independent
        instructions fused (runtime_sim.fusion), or with fused=False one at a time in program
        order, the order the fused one is tested against."""
        for step in self._plan.fused if fused else self._plan.steps:
            step(m)

    def _invoke(self, m: Machine, quantised: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One run of the program on machine `m`: inputs in, code, outputs out."""
        for d in self.program.inputs:
            m.write_host(d, quantised[d.name])
        self.execute(m)
        return {d.name: m.read_host(d) for d in self.program.outputs}

    def _joined(self, raws: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The chunks' raw outputs as one array per output, samples in order."""
        return {d.name: np.concatenate([r[d.name] for r in raws]) for d in self.program.outputs}

    def _quantise(self, inputs: Mapping[str, np.ndarray], batch: bool) -> tuple[dict[str, np.ndarray], int]:
        """Validated, quantised inputs, each with a leading sample axis, and the sample count."""
        arrays = check_inputs(self.program.inputs, inputs, batch)
        counts = {len(a) for a in arrays.values()}
        if len(counts) > 1:
            raise RnnaccelError(f"inputs disagree on the number of samples: {sorted(counts)}")
        count = counts.pop() if counts else 1
        return {d.name: numerics.quantize(arrays[d.name], d.scales()) for d in self.program.inputs}, count


class Stream:
    """A streaming program's chip between runs: the machines, and with them the state, persist
    from one `step` to the next; `reset` zeroes them, as the host does for a new stream. `state`
    and `set_state` read and write the kept state as floats (Program.state), for a host that
    saves a stream and resumes it later; `read_state` and `write_state`, one region's raw integers.

    The streams are held in chunks of CHUNK samples, a machine each, as Simulator.run batches,
    so every instruction works on arrays of a batch run's shapes: over thousands of samples at
    once its matrix products cost more per sample, several times more with threaded BLAS."""

    def __init__(self, sim: Simulator, samples: int | None) -> None:
        self.sim, self.samples = sim, samples
        self.reset()

    def reset(self) -> None:
        self._machines = [self.sim.machine(part.stop - part.start) for part in chunks(self.samples or 1)]

    def step(self, inputs: Mapping[str, np.ndarray]) -> Result:
        """Run the program once on the next frame (with a leading sample axis if `samples`)."""
        batch = self.samples is not None
        quantised, count = self.sim._quantise(inputs, batch)
        if batch and count != self.samples:
            raise RnnaccelError(f"the stream has {self.samples} samples but the inputs have {count}")
        raws = [self.sim._invoke(m, _part(quantised, part)) for m, part in self._parts()]
        return self.sim._result(self.sim._joined(raws), batch)

    def state(self) -> dict[str, np.ndarray]:
        """Each kept state by name (a bound input's, or `state:<layer>/d<k>/<h|c>`), dequantised,
        in its shape (with a leading sample axis if `samples`)."""
        out = {}
        for d in self.sim.program.state:
            raw = self.read_state(d).reshape(-1, *state_shape(d))
            values = numerics.dequantize(raw, d.scales())
            out[d.name] = values if self.samples is not None else values[0]
        return out

    def set_state(self, values: Mapping[str, np.ndarray]) -> None:
        """Overwrite the named states (any subset of `state()`'s) with these floats."""
        descs = {d.name: d for d in self.sim.program.state}
        arrays = checked_state({name: state_shape(d) for name, d in descs.items()}, values, self.samples)
        for name, array in arrays.items():
            d = descs[name]
            self.write_state(d, numerics.quantize(array, d.scales()).reshape(len(array), d.size))

    def read_state(self, desc: StateDesc) -> np.ndarray:
        """The raw integers of state region `desc`, [samples or 1, desc.size] int64."""
        return np.concatenate([m.amem[:, _region(desc)] for m in self._machines]).astype(np.int64)

    def write_state(self, desc: StateDesc, values: np.ndarray) -> None:
        """Set state region `desc` of every stream: `values` is [samples or 1, desc.size] raw
        integers within the activation range."""
        values = np.asarray(values)
        want = (self.samples or 1, desc.size)
        if values.shape != want or values.dtype.kind not in "iu":
            raise RnnaccelError(f"state '{desc.name}' takes integers of shape {want}, "
                                f"not {values.dtype} {values.shape}")
        if values.size and (values.min() < numerics.ACT_MIN or values.max() > numerics.ACT_MAX):
            raise RnnaccelError(f"state '{desc.name}' holds activations in [{numerics.ACT_MIN}, {numerics.ACT_MAX}]; "
                                f"the values reach [{values.min()}, {values.max()}]")
        for m, part in self._parts():
            m.amem[:, _region(desc)] = values[part]

    def _parts(self) -> list[tuple[Machine, slice]]:
        """Each machine with the samples it holds."""
        return list(zip(self._machines, chunks(self.samples or 1)))


def chunks(count: int) -> list[slice]:
    """The samples simulated together, CHUNK at a time; one (maybe empty) chunk at least."""
    return [slice(i, min(i + CHUNK, count)) for i in range(0, max(count, 1), CHUNK)]


def _part(quantised: dict[str, np.ndarray], part: slice) -> dict[str, np.ndarray]:
    return {k: v[part] for k, v in quantised.items()}


def _region(desc: StateDesc) -> slice:
    return slice(desc.address, desc.address + desc.size)

@dataclass(frozen=True)
class _StateInput:
    """What _check_array needs to check a state's new value like an input."""

    name: str
    shape: tuple[int, ...]


def state_shape(d: StateDesc) -> tuple[int, ...]:
    return d.shape or (d.size,)


def checked_state(shapes: Mapping[str, tuple[int, ...]], values: Mapping[str, object],
                  samples: int | None) -> dict[str, np.ndarray]:
    """New values for kept states (name -> shape), each checked as an input is and against the
    stream's number of samples; with a leading sample axis."""
    unknown = sorted(set(values) - set(shapes))
    if unknown:
        raise RnnaccelError(f"unknown state(s) {', '.join(unknown)}; the program keeps "
                            f"{', '.join(shapes) or 'no state'}")
    arrays = {name: _check_array(_StateInput(name, shapes[name]), value, samples is not None)
              for name, value in values.items()}
    for name, array in arrays.items():
        if len(array) != (samples or 1):
            raise RnnaccelError(f"the stream has {samples} samples but state '{name}' has {len(array)}")
    return arrays


def _steps(stream: list[tuple[int, Instruction]]) -> tuple[Step, ...]:
    """The stream ready to execute; a loop's unchanged instructions share one Step."""
    last: dict[int, Step] = {}  # by pc, the latest
    steps = []
    for pc, instr in stream:
        if pc not in last or last[pc].instr != instr:
            last[pc] = Step.of(pc, instr)
        steps.append(last[pc])
    return tuple(steps)


def _checked_footprints(stream: list[tuple[int, Instruction]], sizes: dict[str, int], target: Target):
    """Each instruction's (reads, writes), once its accesses are checked against the memories."""
    tenv = target.env()
    for pc, instr in stream:
        reads, writes = instr.footprint(tenv)
        check_instruction(pc, instr, reads + writes, sizes, target)
        yield reads, writes


def check_inputs(descs: Sequence[TensorDesc], inputs: Mapping[str, object], batch: bool) -> dict[str, np.ndarray]:
    """Every expected input present, none extra, each numeric, finite and of its declared shape.

    The arrays come back with a leading sample axis (added when batch is False).
    """
    check_input_names(descs, inputs)
    return {d.name: _check_array(d, inputs[d.name], batch) for d in descs}


def check_input_names(descs: Sequence[TensorDesc], inputs: Mapping[str, object]) -> None:
    """Every expected input present and none extra (descs: anything with a `name`)."""
    expected = [d.name for d in descs]
    missing = [n for n in expected if n not in inputs]
    if missing:
        raise RnnaccelError(f"missing input(s) {', '.join(missing)}; the program expects {', '.join(expected)} "
                            f"and was given {', '.join(map(str, inputs)) or 'no arrays'}")
    extra = sorted(set(inputs) - set(expected))
    if extra:
        raise RnnaccelError(f"unknown input(s) {', '.join(extra)}; the program expects {', '.join(expected)}")


def _check_array(desc: TensorDesc, value: object, batch: bool) -> np.ndarray:
    try:
        array = np.asarray(value)
    except ValueError as exc:
        raise RnnaccelError(f"input '{desc.name}' is not an array: {exc}") from None
    if array.dtype.kind not in "iuf":
        raise RnnaccelError(f"input '{desc.name}' has dtype {array.dtype}, expected a real numeric array")
    shape = array.shape[1:] if batch else array.shape
    if shape != desc.shape or (batch and array.ndim == 0):
        want = ("N, " if batch else "") + ", ".join(map(str, desc.shape))
        raise RnnaccelError(f"input '{desc.name}' has shape {array.shape}, expected ({want})")
    if not np.isfinite(array).all():
        raise RnnaccelError(f"input '{desc.name}' contains non-finite values (NaN or infinity)")
    return array if batch else array[None]


def make_stats(timing: Timing, program: Program, breakdown: tuple[int, list[dict]]) -> dict:
    """STATS.json (SPEC section 4): per inference, the same for every sample; `breakdown` is
    (bound cycles, per-layer records) from runtime_sim.breakdown.Breakdown. Energy and power
    (docs/energy.md) at the back-to-back rate."""
    t = program.target
    bound_cycles, layers = breakdown
    return at_rate({
        "cycles": timing.cycles,
        "mac_ops": timing.mac_ops,
        "macs": t.macs,
        "mac_utilization": timing.mac_ops / (t.macs * timing.cycles) if timing.cycles else 0.0,
        "instructions": timing.instructions,
        "unit_busy": dict(timing.unit_busy),
        "stall_cycles": sum(timing.unit_stall.values()),
        "unit_stall_cycles": dict(timing.unit_stall),
        "weight_bytes_read": timing.weight_bytes_read,
        "clock_mhz": t.clock_mhz,
        "latency_us": timing.cycles / t.clock_mhz,
        "bound_cycles": bound_cycles,
        **({"recurrence_bound_cycles": max(dict(program.recurrence).values())} if program.recurrence else {}),
        **energy_figures(timing.events, t, timing.mac_ops),
        "layers": layers,
    }, None)

"""Running a partitioned program end to end: the host part in float, each island on the chip.

    sim = runtime_sim.load("model.rnna")           # a PartitionedSimulator for a partitioned file
    result = sim.run({"x": x})                     # as Simulator.run, batch=True included
    result.islands[k].inputs, result.islands[k].result.raw_outputs   # what island k saw and made

The host graph (runtime_sim.host) runs segment by segment; each island call goes to that island's
`Simulator`, which quantises the floats with the island's input scales and dequantises its
outputs, bit-exactly as for a chip-only program. In a batch the host runs per sample while each
island runs the whole batch at once. The statistics are the islands' summed, since the chip runs
one island after the other, plus each island's own and the host's figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from isa import programfile
from isa.bounds import recurrence_total
from isa.container import Program
from isa.energy import combined
from isa.errors import RnnaccelError
from isa.loops import MAX_EXECUTED
from isa.partitioned import PartitionedProgram
from runtime_sim.energy import at_rate
from runtime_sim.simulator import (
    IslandRun,
    Result,
    Simulator,
    Stream,
    check_input_names,
    check_inputs,
    checked_state,
    state_shape,
)

if TYPE_CHECKING:
    from runtime_sim.host import HostGraph, Port

SUMMED = ("cycles", "mac_ops", "instructions", "stall_cycles", "weight_bytes_read", "bound_cycles", "latency_us")
RunIsland = Callable[[int, dict[str, np.ndarray]], Result]


class PartitionedSimulator:
    """A loaded partitioned program: Simulator's surface (run, stream, stats, program) for the whole model.

    `force_reference` runs the host part with onnx's reference evaluator even when ONNX Runtime
    is installed. A partitioned Result's `raw_outputs` is empty: integers exist only at the
    islands, in `Result.islands`; its trace is the islands' records, each with its `island`.
    """

    def __init__(self, program: PartitionedProgram, max_instructions: int = MAX_EXECUTED, trace: bool = True,
                 force_reference: bool = False) -> None:
        from runtime_sim.host import HostGraph  # onnx (1 s, 40 MB) loads only for a program with a host part

        self.program = program
        self.host = HostGraph(program, force_reference)
        self.islands = tuple(Simulator(p, max_instructions, trace) for p in program.islands)

    @cached_property
    def inputs(self) -> tuple[Port, ...]:
        return self.host.inputs()

    @cached_property
    def outputs(self) -> tuple[Port, ...]:
        return self.host.outputs()

    @property
    def stats(self) -> dict:
        return partitioned_stats([sim.stats for sim in self.islands], self.host)

    def run(self, inputs: Mapping[str, np.ndarray], batch: bool = False,
            progress: Callable[[int, int], None] | None = None) -> Result:
        """One inference (or one per entry of the leading axis with batch=True), host and islands."""
        arrays = check_inputs(self.inputs, inputs, batch)
        total = len(next(iter(arrays.values()))) * len(self.islands) if arrays else 0

        def run_island(index: int, feeds: dict[str, np.ndarray]) -> Result:
            done = len(calls.runs) * total // len(self.islands)
            step = None if progress is None else lambda d, _: progress(done + d, total)
            return self.islands[index].run(feeds, batch, step)

        calls = _Calls(run_island, batch)
        count = len(next(iter(arrays.values()))) if arrays else 1
        return self._result(self.host.run({**arrays, **self.fresh_state(count)}, calls), calls.runs, batch)

    def fresh_state(self, count: int) -> dict[str, np.ndarray]:
        """The state the host carries, as a new stream starts it: zeros, for `count` samples."""
        return {p.name: np.zeros((count, *p.shape), np.float32) for p in self.host.state()}

    def stream(self, samples: int | None = None) -> PartitionedStream:
        """Frame-by-frame runs when every island is a streaming program; see Simulator.stream."""
        return PartitionedStream(self, samples)

    def _result(self, outputs: dict[str, np.ndarray], runs: list[IslandRun], batch: bool) -> Result:
        outputs = {k: np.asarray(v if batch else v[0], np.float32) for k, v in outputs.items()
                   if k in self.program.host.outputs}
        traces = [[{**r, "island": run.index} for r in run.result.trace] for run in runs
                  if run.result.trace is not None]
        trace = [r for t in traces for r in t] if len(traces) == len(runs) else None
        return Result(outputs, {}, self.stats, trace, tuple(runs))


class PartitionedStream:
    """Each streaming island's chip `Stream` persists between steps (its state stays on chip); an
    island without state, like the host segments, simply runs on each frame afresh. State the host
    carries (HostPart.state) goes from each step's outputs to the next step's inputs."""

    def __init__(self, sim: PartitionedSimulator, samples: int | None) -> None:
        if not any(island.program.streaming for island in sim.islands) and not sim.program.host.state:
            raise RnnaccelError("no island of this program keeps state between runs; compile it with --streaming "
                                "to stream it")
        self.sim, self.samples = sim, samples
        self.streams: list[Stream | None] = [island.stream(samples) if island.program.streaming else None
                                             for island in sim.islands]
        self.carried = sim.fresh_state(samples or 1)

    def reset(self) -> None:
        for stream in self.streams:
            if stream is not None:
                stream.reset()
        self.carried = self.sim.fresh_state(self.samples or 1)

    def _step_island(self, index: int, feeds: dict[str, np.ndarray]) -> Result:
        stream = self.streams[index]
        return self.sim.islands[index].run(feeds, self.samples is not None) if stream is None else stream.step(feeds)

    def step(self, inputs: Mapping[str, np.ndarray]) -> Result:
        """Run the model once on the next frame (with a leading sample axis if `samples`)."""
        batch = self.samples is not None
        check_input_names(self.sim.inputs, inputs)
        arrays = {k: np.asarray(v) if batch else np.asarray(v)[None] for k, v in inputs.items()}
        calls = _Calls(self._step_island, batch)
        outputs = self.sim.host.run({**arrays, **self.carried}, calls)
        self.carried = {name: outputs[output] for name, output in self.sim.program.host.state}
        return self.sim._result(outputs, calls.runs, batch)

    def state(self) -> dict[str, np.ndarray]:
        """Every kept state by name: what the host carries and what each island keeps on chip."""
        host = {k: v if self.samples is not None else v[0] for k, v in self.carried.items()}
        return host | {k: v for s in self.streams if s is not None for k, v in s.state().items()}

    def set_state(self, values: Mapping[str, np.ndarray]) -> None:
        """Overwrite the named states (any subset of `state()`'s) with these floats."""
        on_chip = [{d.name for d in island.program.state} for island in self.sim.islands]
        shapes = {p.name: p.shape for p in self.sim.host.state()} | \
            {d.name: state_shape(d) for island in self.sim.islands for d in island.program.state}
        arrays = checked_state(shapes, values, self.samples)
        self.carried |= {name: array.astype(np.float32) for name, array in arrays.items() if name in self.carried}
        for stream, names in zip(self.streams, on_chip):
            if stream is not None:
                stream.set_state({k: v for k, v in values.items() if k in names})


class _Calls:
    """The host's island callback for one run: hands each island its inputs as the run is shaped
    (leading sample axis only in a batch) and keeps what it saw and made."""

    def __init__(self, run_island: RunIsland, batch: bool) -> None:
        self.run_island, self.batch = run_island, batch
        self.runs: list[IslandRun] = []

    def __call__(self, index: int, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        given = feeds if self.batch else {k: v[0] for k, v in feeds.items()}
        result = self.run_island(index, given)
        self.runs.append(IslandRun(index, given, result))
        return result.outputs if self.batch else {k: v[None] for k, v in result.outputs.items()}


def partitioned_stats(islands: list[dict], host: HostGraph) -> dict:
    """STATS.json for a partitioned run: the chip figures summed over the islands (they run one
    after the other), each island's own stats, and the host's share. Energy is the islands' chip
    energy: the host CPU's is not modelled (its `energy_uj` is null)."""
    first, totals = islands[0], {key: sum(s[key] for s in islands) for key in SUMMED}
    lane_cycles = sum(s["macs"] * s["cycles"] for s in islands)
    return at_rate({
        **totals,
        **recurrence_total(islands),
        "macs": first["macs"],
        "mac_utilization": totals["mac_ops"] / lane_cycles if lane_cycles else 0.0,
        "unit_busy": _summed(s["unit_busy"] for s in islands),
        "unit_stall_cycles": _summed(s["unit_stall_cycles"] for s in islands),
        "clock_mhz": first["clock_mhz"],
        "layers": [{**layer, "island": k} for k, s in enumerate(islands) for layer in s["layers"]],
        "islands": [{"index": k, **s} for k, s in enumerate(islands)],
        "host": {"nodes": sum(host.ops.values()), "ops": dict(host.ops), "mac_ops": host.part.host_mac_ops,
                 "runtime": host.runtime, "energy_uj": None},
        "boundary_bytes": host.part.boundary_bytes,
        "chip_mac_fraction": host.part.chip_mac_fraction,
        **combined(islands),
    }, None)


def _summed(counts) -> dict[str, int]:
    total: Counter = Counter()
    for c in counts:
        total.update(c)
    return dict(total)


def simulator_for(program: Program | PartitionedProgram, max_instructions: int = MAX_EXECUTED,
                  trace: bool = True) -> Simulator | PartitionedSimulator:
    """The simulator that runs this kind of program."""
    if isinstance(program, PartitionedProgram):
        return PartitionedSimulator(program, max_instructions, trace)
    return Simulator(program, max_instructions, trace)


def load(path: str, trace: bool = True, max_instructions: int = MAX_EXECUTED) -> Simulator | PartitionedSimulator:
    """A simulator for the program file at `path`: a chip program's, or a partitioned program's."""
    return simulator_for(programfile.load(path), max_instructions, trace)

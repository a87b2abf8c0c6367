"""The exported test models of host/chip partitioning (tests/data/partitioned), compiled and run
as a user would: shared by tests/test_partitioned_models.py and bench/partitioned.py.

Each case is compiled with its own samples as calibration (and --const where it has a setting),
run on the simulator (host part in float, islands bit-exact), and compared with ONNX Runtime on
the original model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from compiler.compiled import Compiled
from compiler.pipeline import compile_model
from compiler.reference import reference_outputs
from runtime_sim.partitioned import PartitionedSimulator, simulator_for
from runtime_sim.simulator import Result

from report_checks import check_against_stats

DATA = Path(__file__).resolve().parent / "data" / "partitioned"
EXPORTERS = ("script", "dynamo")
# name -> the settings frozen with --const (an If on them is decided at compile time)
CASES = {"crnn1d": {}, "crnn2d": {}, "lstm-ln": {}, "mlp-bn-gelu": {}, "two-islands": {},
         "sr-branch@16000": {"sr": 16000}, "sr-branch@8000": {"sr": 8000}}


@dataclass(frozen=True)
class Run:
    compiled: Compiled
    result: Result  # the batch run over every sample
    want: dict[str, np.ndarray]  # ONNX Runtime on the original model, per sample

    @property
    def worst_error(self) -> float:
        return max(float(np.max(np.abs(self.result.outputs[k] - v))) for k, v in self.want.items())


def model_path(case: str, exporter: str) -> Path:
    return DATA / f"{case.split('@')[0]}-{exporter}.onnx"


def samples(case: str, exporter: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(inputs the program takes, every input of the original model), samples on the leading axis;
    for a case with settings, only the samples recorded with those settings."""
    path, settings = model_path(case, exporter), CASES[case]
    data = dict(np.load(path.with_suffix(".npz")))
    names = [v.name for v in onnx.load(str(path), load_external_data=False).graph.input]
    keep = np.all([data[k] == v for k, v in settings.items()], axis=0) if settings else slice(None)
    every = {n: data[n][keep] for n in names}
    return {n: a for n, a in every.items() if n not in settings}, every


def ort_outputs(path: Path, every: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    count = len(next(iter(every.values())))
    rows = [session.run(None, {k: np.asarray(v[i]) for k, v in every.items()}) for i in range(count)]
    return {o.name: np.stack([r[k] for r in rows]) for k, o in enumerate(session.get_outputs())}


def compile_case(case: str, exporter: str) -> Compiled:
    inputs, _ = samples(case, exporter)
    consts = {k: [str(v)] for k, v in CASES[case].items()}
    return compile_model(model_path(case, exporter), calibration=inputs, consts=consts)


def run_case(case: str, exporter: str, force_reference: bool = False) -> Run:
    compiled = compile_case(case, exporter)
    inputs, every = samples(case, exporter)
    sim = (PartitionedSimulator(compiled.program, force_reference=force_reference) if compiled.islands
           else simulator_for(compiled.program))
    result = sim.run(inputs, batch=True)
    check_against_stats(compiled, result.stats)
    return Run(compiled, result, ort_outputs(model_path(case, exporter), every))


@dataclass(frozen=True)
class Loop:
    compiled: Compiled
    results: list[Result]  # one per frame
    worst_error: float  # over y and the state, against PyTorch's closed loop


def closed_loop(exporter: str, frames: int = 50) -> Loop:
    """gru-state: x and h_in in, y and h_out out; the host feeds h_out back as h_in each frame."""
    path = DATA / f"gru-state-{exporter}.onnx"
    data = dict(np.load(path.with_suffix(".npz")))
    compiled = compile_model(path, calibration={"x": data["x"], "h_in": data["h_in"]})
    sim, h, results, worst = PartitionedSimulator(compiled.program), np.zeros_like(data["h_in"][0]), [], 0.0
    for t in range(frames):
        results.append(sim.run({"x": data["x"][t], "h_in": h}))
        h = results[-1].outputs["h_out"]
        worst = max(worst, float(np.max(np.abs(results[-1].outputs["y"] - data["y"][t]))),
                    float(np.max(np.abs(h - data["h_out"][t]))))
    check_against_stats(compiled, results[0].stats)
    return Loop(compiled, results, worst)


def assert_islands_bit_exact(graphs: list, result: Result, batch: bool) -> None:
    """Each island's raw outputs equal the golden reference's on the inputs the island received."""
    for run in result.islands:
        feeds = run.inputs if batch else {k: v[None] for k, v in run.inputs.items()}
        for name, want in reference_outputs(graphs[run.index], feeds).items():
            got = run.result.raw_outputs[name] if batch else run.result.raw_outputs[name][None]
            np.testing.assert_array_equal(got, want, err_msg=f"island {run.index} {name}")


def figures(run: Run) -> dict:
    """What the issue's note reports per model (a model all on the chip has one island and no host)."""
    stats = run.result.stats
    return {"chip_mac_fraction": stats.get("chip_mac_fraction", 1.0), "cycles": stats["cycles"],
            "island_cycles": [i["cycles"] for i in stats.get("islands", [stats])],
            "boundary_bytes": stats.get("boundary_bytes", 0), "host_ops": stats.get("host", {}).get("ops", {}),
            "worst_error": run.worst_error, "output_range": max(float(np.max(np.abs(v))) for v in run.want.values())}

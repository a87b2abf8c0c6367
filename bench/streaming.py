"""Streaming benchmark: the trained keyword spotters compiled --streaming, one frame per run.

Prints, per model, the cycles and latency of one frame against the whole-sequence program's,
and streams the whole test split frame by frame (all utterances as parallel streams): the time
it takes and whether the logits after the last frame equal the whole-sequence program's. Then,
measured in the same run (the machine is shared, so figures from separate runs do not compare),
the simulator's cost per stream-frame against its cost per sample-step of the whole-sequence
batch run, and their ratio.

    .venv/bin/python bench/streaming.py [--streams N] [--repeat R] [MODEL ...]

Default: the three KWS models, the 1200 test utterances as streams. `--streams N` repeats the
test split to N streams; `--repeat R` times each run R times and keeps the best.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import numpy as np

from compiler.pipeline import compile_model
from runtime_sim import Simulator

KWS = Path(__file__).resolve().parent.parent / "examples" / "kws"
MODELS = ["kws_lstm64", "kws_gru64", "kws_lstm128x2"]


def best(run, repeat: int):
    """(run's result, its shortest wall time, its shortest CPU time) over `repeat` runs: the
    least disturbed by the machine's other load. CPU time is not stretched by other processes
    (with one BLAS thread it is the wall time of an idle machine)."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return result, min(walls), min(cpus)


def whole_logits(whole: Simulator, x: np.ndarray) -> np.ndarray:
    return whole.run({"mfcc": x}, batch=True).raw_outputs["logits"]


def stream_all(sim: Simulator, x: np.ndarray):
    """Every utterance of x as a parallel stream, frame by frame; the last frame's result."""
    stream = sim.stream(samples=len(x))
    for t in range(x.shape[2]):
        result = stream.step({"mfcc": x[:, :, t:t + 1]})
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=MODELS)
    parser.add_argument("--streams", type=int, default=None, help="streams (default: the test split)")
    parser.add_argument("--repeat", type=int, default=1, help="time each run this many times, keep the best")
    args = parser.parse_args(argv)
    test, calib = np.load(KWS / "test.npz"), dict(np.load(KWS / "calib.npz"))
    x, y = test["x"], test["y"]
    if args.streams:
        index = np.arange(args.streams) % len(x)
        x, y = x[index], y[index]
    samples, steps = len(x), x.shape[2]
    print(f"{'model':<15} {'frame cycles':>12} {'frame us':>9} {'MAC util':>9} {'state':>6} {'whole cycles':>13} "
          f"{'stream s':>9} {'top-1':>7} {'= whole':>8} {'us/frame':>9} {'us/step':>8} {'ratio':>6} "
          f"{'cpu/frame':>9} {'cpu/step':>8} {'ratio':>6}")
    for name in args.models:
        whole = Simulator(compile_model(KWS / f"{name}.onnx", calibration=calib).program)
        sim = Simulator(compile_model(KWS / f"{name}.onnx", calibration=calib, streaming=True).program)
        stats, state = sim.stats, sum(s.size for s in sim.program.state)  # both scheduled before timing
        whole_cycles = whole.stats["cycles"]
        expected, whole_seconds, whole_cpu = best(partial(whole_logits, whole, x), args.repeat)
        result, seconds, cpu = best(partial(stream_all, sim, x), args.repeat)
        top1 = np.mean(result.outputs["logits"].reshape(len(x), -1).argmax(-1) == y)
        same = "yes" if np.array_equal(result.raw_outputs["logits"], expected) else "NO"
        per_frame, per_step, cpu_frame, cpu_step = (1e6 * s / (samples * steps)
                                                    for s in (seconds, whole_seconds, cpu, whole_cpu))
        print(f"{name:<15} {stats['cycles']:>12} {stats['latency_us']:>9.2f} {stats['mac_utilization']:>9.1%} "
              f"{state:>6} {whole_cycles:>13} {seconds:>9.2f} {top1:>7.2%} {same:>8} "
              f"{per_frame:>9.1f} {per_step:>8.1f} {per_frame / per_step:>6.2f} "
              f"{cpu_frame:>9.1f} {cpu_step:>8.1f} {cpu_frame / cpu_step:>6.2f}")
    print(f"({samples} parallel streams of {steps} frames each; state in activation-memory elements; "
          "us/frame: wall time per stream-frame, us/step: per sample-step of the whole-sequence batch run; "
          "cpu/frame, cpu/step: the same in CPU time)")


if __name__ == "__main__":
    main()

"""Simulation speed: one warm Simulator.run, and a 2000-utterance batch against ONNX Runtime.

    .venv/bin/python bench/sim_speed.py [--runs N] [--utterances N] [--repeat N] [--single-thread]

For the 64-unit LSTM and GRU and the 2-layer LSTM 128 of bench/bench_models.py (default
target, batch 1): the median wall time of one warm `Simulator.run` (the program already checked
and scheduled, no trace), and the time to simulate the same random utterances through
runtime_sim.batch.run_batch (rnnaccel-sim --batch) next to ONNX Runtime running the float model
on them in the same process, one utterance per call as the model is declared (batch 1). Both
are timed --repeat times, alternately, and the best of each kept: on a shared machine one timing
of ONNX Runtime's thousands of small calls moves by 2x with the other processes' load.
Both use their default threads; --single-thread gives each one thread (BLAS through its
environment variables, set here before numpy loads; ONNX Runtime through its session options),
which on a loaded machine keeps idle threads from spinning against the other processes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
SINGLE = "--single-thread" in sys.argv
if SINGLE:  # BLAS reads these once, when numpy loads it
    os.environ.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from bench_models import INPUTS, MODELS, STEPS  # noqa: E402

from compiler.pipeline import compile_model  # noqa: E402
from runtime_sim import Simulator  # noqa: E402
from runtime_sim.batch import run_batch  # noqa: E402

NAMES = ("KWS LSTM 64", "KWS GRU 64", "2-layer LSTM 128")


def warm_run_ms(sim: Simulator, x: np.ndarray, runs: int) -> float:
    """Median wall time of one run after a first one has checked and scheduled the program."""
    sim.run({"mfcc": x[0]})
    times = []
    for i in range(runs):
        start = time.perf_counter()
        sim.run({"mfcc": x[i % len(x)]})
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def float_timer(model_bytes: bytes, x: np.ndarray) -> Callable[[], float]:
    """A timing of ONNX Runtime on the float model, one utterance per call (the model's declared
    batch of 1), the session made and warmed once."""
    options = ort.SessionOptions()
    if SINGLE:
        options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    session.run(None, {"mfcc": x[0]})

    def timed() -> float:
        start = time.perf_counter()
        for sample in x:
            session.run(None, {"mfcc": sample})
        return time.perf_counter() - start

    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="warm single runs timed (the median is printed)")
    parser.add_argument("--utterances", type=int, default=2000, help="samples in the batch")
    parser.add_argument("--repeat", type=int, default=3, help="timings of batch and ONNX Runtime (the best kept)")
    parser.add_argument("--single-thread", action="store_true", help="one thread for BLAS and ONNX Runtime")
    args = parser.parse_args()
    x = np.random.default_rng(0).standard_normal((args.utterances, 1, STEPS, INPUTS)).astype(np.float32)
    print(f"{'model':<18} {'warm run':>9} {'batch ' + str(args.utterances):>11} {'ONNX Runtime':>12} {'ratio':>6}")
    for name in NAMES:
        model = MODELS[name]()
        sim = Simulator(compile_model(model).program, trace=False)
        single = warm_run_ms(sim, x, args.runs)
        run_batch(sim, {"mfcc": x[:1]})
        onnx = float_timer(model.SerializeToString(), x)
        timings = [(run_batch(sim, {"mfcc": x})[1]["wall_seconds"], onnx()) for _ in range(args.repeat)]
        batch_s, onnx_s = (min(column) for column in zip(*timings))
        print(f"{name:<18} {single:>6.2f} ms {batch_s:>9.3f} s {onnx_s:>10.3f} s {batch_s / onnx_s:>5.1f}x")


if __name__ == "__main__":
    main()

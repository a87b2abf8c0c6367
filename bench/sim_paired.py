"""Two checkouts' batch simulation, timed in turn: a change's effect on a loaded machine.

    .venv/bin/python bench/sim_paired.py BEFORE AFTER [--rounds N] [--utterances N]

BEFORE and AFTER are checkouts of this repository (e.g. a worktree of main and this one). One
process per checkout loads bench/bench_models.py's three sizes, and they are asked in turn for
the same batch (runtime_sim.batch.run_batch, one BLAS thread), the order swapped every round.
Printed per model: each side's best wall and process CPU time, and the median over the rounds of
AFTER / BEFORE. On a shared machine one timing moves by 2x with the other sessions' load; two
timings taken a second apart see nearly the same load, so their ratio is steady where the
times are not.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

NAMES = ("KWS LSTM 64", "KWS GRU 64", "2-layer LSTM 128")


def serve(utterances: int) -> None:
    """Worker: for each model name read on stdin, time one batch and print 'wall cpu'."""
    sys.path.insert(0, str(Path.cwd() / "bench"))
    from bench_models import INPUTS, MODELS, STEPS

    from compiler.pipeline import compile_model
    from runtime_sim import Simulator
    from runtime_sim.batch import run_batch
    x = {"mfcc": np.random.default_rng(0).standard_normal((utterances, 1, STEPS, INPUTS)).astype(np.float32)}
    sims: dict[str, Simulator] = {}
    for line in sys.stdin:
        name = line.strip()
        if name not in sims:
            sims[name] = Simulator(compile_model(MODELS[name]()).program, trace=False)
        wall, cpu = time.perf_counter(), time.process_time()
        run_batch(sims[name], x)
        print(time.perf_counter() - wall, time.process_time() - cpu, flush=True)


def worker(checkout: str, utterances: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=checkout, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", str(utterances)],
                            cwd=checkout, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def timed(process: subprocess.Popen, name: str) -> tuple[float, float]:
    process.stdin.write(name + "\n")
    process.stdin.flush()
    wall, cpu = process.stdout.readline().split()
    return float(wall), float(cpu)


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        return serve(int(sys.argv[2]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=8, help="timings of each side per model")
    parser.add_argument("--utterances", type=int, default=2000, help="samples in the batch")
    args = parser.parse_args()
    before, after = worker(args.before, args.utterances), worker(args.after, args.utterances)
    for name in NAMES:
        timed(before, name), timed(after, name)  # compile and warm up
        pairs = []
        for i in range(args.rounds):
            first, second = (before, after) if i % 2 == 0 else (after, before)
            times = {id(first): timed(first, name), id(second): timed(second, name)}
            pairs.append((times[id(before)], times[id(after)]))
        b, a = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        print(f"{name:<18} before {b[:, 0].min():.3f} s wall {b[:, 1].min():.3f} s cpu, after {a[:, 0].min():.3f} s "
              f"wall {a[:, 1].min():.3f} s cpu, after/before median: wall {np.median(a[:, 0] / b[:, 0]):.2f} "
              f"cpu {np.median(a[:, 1] / b[:, 1]):.2f}")
    for process in (before, after):
        process.stdin.close()
        process.wait()


if __name__ == "__main__":
    main()

"""Compile time and peak memory against the number of timesteps and the layer size.

    python bench/compile_time.py [--base REV] [--timeout S] [--cases 64x49,64x500]

Each case compiles one model (bench_models.recurrent_classifier: an LSTM over `steps` steps, its
last h into a classifier) in a fresh interpreter with one BLAS thread, on a target whose memories
are large enough for a 1024-unit layer, and prints the wall-clock seconds of compile_model and the
process's peak resident memory. With --base, the same cases run on that commit's code too (checked
out into a temporary git worktree), side by side: the machine is shared and noisy, so the two are
measured in one run. --cases picks some of the cases (hidden x steps). A case that fails or runs
past --timeout prints its reason instead of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIG_MEMORIES = {"weight_mem_bytes": 1 << 24, "act_mem_bytes": 1 << 21, "acc_entries": 1 << 16}
# calibration's float products: a BLAS that spreads them over threads on a shared, loaded machine
# made them up to 10x slower than one thread, and the figures as noisy as the neighbours
ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CASES = ((64, 49), (64, 500), (128, 49), (128, 500), (256, 500), (1024, 49), (1024, 500))

CHILD = """
import json, resource, sys, time
from bench.bench_models import recurrent_classifier
from compiler.pipeline import compile_model
from isa.target import Target
hidden, steps, memories = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
model = recurrent_classifier("LSTM", hidden, steps=steps)
start = time.perf_counter()
compile_model(model, Target(**memories))
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(tree: Path, hidden: int, steps: int, timeout: float) -> str:
    """'seconds s, peak MB' of one compile in a fresh interpreter on `tree`'s code, or why not."""
    command = [sys.executable, "-c", CHILD, str(hidden), str(steps), json.dumps(BIG_MEMORIES)]
    try:
        environment = {**os.environ, "PYTHONPATH": str(tree), **ONE_BLAS_THREAD}
        done = subprocess.run(command, cwd=tree, env=environment, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"over {timeout:.0f} s"
    if done.returncode:
        return "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1].split(": ")[-1][:40]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return f"{figures['seconds']:6.2f} s {figures['peak_mb']:6.0f} MB"


def _cases(text: str) -> tuple[tuple[int, int], ...]:
    """'64x49,64x500' as ((64, 49), (64, 500))."""
    try:
        return tuple((int(h), int(s)) for h, s in (case.split("x") for case in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of HIDDENxSTEPS cases") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="also measure this commit (e.g. main), side by side")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a case may take (default 300)")
    parser.add_argument("--cases", type=_cases, default=CASES,
                        help="comma-separated HIDDENxSTEPS cases (default: all of CASES)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="compile-time-") as work:
        trees = {"this tree": ROOT}
        if args.base:
            trees = {args.base: Path(work) / "base", **trees}
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(trees[args.base]), args.base],
                           cwd=ROOT, check=True)
        try:
            print(f"{'LSTM':>6} {'steps':>6}  " + "  ".join(f"{name:>26}" for name in trees))
            for hidden, steps in args.cases:
                row = [measure(tree, hidden, steps, args.timeout) for tree in trees.values()]
                print(f"{hidden:>6} {steps:>6}  " + "  ".join(f"{cell:>26}" for cell in row), flush=True)
        finally:
            if args.base:
                subprocess.run(["git", "worktree", "remove", "--force", str(trees[args.base])], cwd=ROOT,
                               check=False)


if __name__ == "__main__":
    main()

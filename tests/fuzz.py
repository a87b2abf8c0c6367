"""`make fuzz`: run every fuzz target (tests/fuzz_targets.py) for a bounded time.

    python -m tests.fuzz [--seconds 600] [--target container --target assembler ...]

The time is shared equally between the targets. Inputs come from hypothesis in rounds of
ROUND examples with fresh seeds until a target's time is up; any exception other than a
well-formed RnnaccelError is shrunk by hypothesis to a small input, printed, and fails the run.
So does a RuntimeWarning (numpy's overflow and invalid-value warnings): it would print a second
line on a command's standard error. Prints the number of inputs tried per target.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_targets import TARGETS, FuzzTarget  # noqa: E402
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

ROUND = 200


def fuzz(target: FuzzTarget, seconds: float, rng: random.Random) -> int:
    """Run `target` for about `seconds`; the number of inputs tried. Raises on a bug."""
    tried, deadline = 0, time.monotonic() + seconds

    def body(value: object) -> None:
        nonlocal tried
        tried += 1
        target.run(value)

    while time.monotonic() < deadline:
        test = settings(max_examples=ROUND, deadline=None, database=None, derandomize=False,
                        suppress_health_check=list(HealthCheck))(given(target.inputs)(body))
        seed(rng.getrandbits(64))(test)()
    return tried


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600, help="total time for all targets (default 600)")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS), help="only these targets")
    parser.add_argument("--seed", type=int, default=None, help="seed of the rounds (default: random)")
    args = parser.parse_args(argv)
    names = args.target or list(TARGETS)
    rng = random.Random(args.seed)
    warnings.simplefilter("error", RuntimeWarning)
    failed = False
    for name in names:
        start = time.monotonic()
        try:
            tried = fuzz(TARGETS[name], args.seconds / len(names), rng)
        except Exception as exc:  # noqa: BLE001  (a bug found: report it and go on with the others)
            print(f"{name}: FAILED after {time.monotonic() - start:.0f} s: {type(exc).__name__}: {exc}", flush=True)
            failed = True
            continue
        print(f"{name}: {tried} inputs in {time.monotonic() - start:.0f} s, no failure", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

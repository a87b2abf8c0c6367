"""Many inferences at once: a progress bar for people watching, and the batch's totals.

A batch is N independent inferences with identical timing (the schedule never depends on
data), so the chip-side totals are N times one inference's; only the wall time is measured.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import TextIO

import numpy as np

from runtime_sim.simulator import Result, Simulator


def progress_bar(stream: TextIO = sys.stderr, width: int = 30) -> Callable[[int, int], None] | None:
    """A `progress(done, total)` drawing one `\\r` line on `stream`, or None if it is not a terminal.

    None when redirected, so logs and captured stderr never fill with carriage returns.
    """
    if not stream.isatty():
        return None

    def draw(done: int, total: int) -> None:
        filled = width * done // total if total else width
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} samples")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return draw


def run_batch(sim: Simulator, inputs: Mapping[str, np.ndarray],
              progress: Callable[[int, int], None] | None = None) -> tuple[Result, dict]:
    """Run every sample of `inputs` (leading samples axis); the result and the batch totals."""
    start = time.perf_counter()
    result = sim.run(inputs, batch=True, progress=progress)
    wall = time.perf_counter() - start
    samples = len(next(iter(result.outputs.values()))) if result.outputs else 0
    return result, batch_totals(result.stats, samples, wall)


def batch_totals(stats: dict, samples: int, wall_seconds: float) -> dict:
    """STATS.json's `batch` entry: chip time is cycles at the target clock, MACs/s against wall time."""
    cycles = stats["cycles"] * samples
    macs = stats["mac_ops"] * samples
    return {
        "samples": samples,
        "cycles": cycles,
        "chip_seconds": cycles / (stats["clock_mhz"] * 1e6),
        "mac_ops": macs,
        "energy_uj": stats["energy_uj"] * samples,
        "wall_seconds": wall_seconds,
        "simulated_macs_per_second": macs / wall_seconds if wall_seconds > 0 else 0.0,
    }


def batch_summary(totals: dict) -> str:
    """Lines appended to rnnaccel-sim's summary for a batch."""
    return (f"batch:           {totals['samples']} samples, {totals['cycles']} cycles "
            f"({totals['chip_seconds'] * 1e3:.3f} ms of chip time, {totals['energy_uj']:.1f} uJ)\n"
            f"simulation:      {totals['wall_seconds']:.2f} s wall, "
            f"{totals['simulated_macs_per_second'] / 1e6:.1f} M simulated MACs/s\n")

"""Partitioning benchmark: whole models as PyTorch exports them, host operators and all.

For every model in tests/data/partitioned (both exporters), compiled with partitioning (the
default) on its own samples and run on them: the operators left to the host, the islands, the
chip's share of the MACs, the chip cycles per inference (each island's and the total), the bytes
crossing between host and chip, and the worst error against ONNX Runtime on the original model
with the largest output beside it; then the compile and simulation time against ONNX Runtime's
time for the same float model on the same samples (the reference in the same run: the machine
is shared and noisy).

    .venv/bin/python bench/partitioned.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from partitioned_cases import (  # noqa: E402
    CASES,
    EXPORTERS,
    closed_loop,
    figures,
    model_path,
    ort_outputs,
    run_case,
    samples,
)


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def main() -> None:
    print(f"{'model':<26} {'host':<38} {'isl':>3} {'chip MACs':>9} {'cycles':>14} {'boundary B':>10} "
          f"{'worst err':>9} {'|y| max':>8} {'compile+sim s':>13} {'ORT s':>7}")
    for case in CASES:
        for exporter in EXPORTERS:
            run, seconds = timed(run_case, case, exporter)
            _, ort_seconds = timed(ort_outputs, model_path(case, exporter), samples(case, exporter)[1])
            f = figures(run)
            host = ", ".join(f"{op} x{n}" for op, n in f["host_ops"].items()) or "-"
            cycles = "+".join(map(str, f["island_cycles"])) if len(f["island_cycles"]) > 1 else str(f["cycles"])
            print(f"{case + '-' + exporter:<26} {host:<38} {len(f['island_cycles']):>3} "
                  f"{100 * f['chip_mac_fraction']:>8.1f}% {cycles:>14} {f['boundary_bytes']:>10} "
                  f"{f['worst_error']:>9.5f} {f['output_range']:>8.3f} {seconds:>13.2f} {ort_seconds:>7.3f}")

    for exporter in EXPORTERS:
        loop, seconds = timed(closed_loop, exporter)
        stats = loop.results[-1].stats
        print(f"gru-state-{exporter}: 50 frames closed loop (h_out fed back as h_in by the host): "
              f"{100 * stats['chip_mac_fraction']:.1f} % of MACs on the chip, {stats['cycles']} cycles and "
              f"{stats['boundary_bytes']} boundary bytes per frame, worst error {loop.worst_error:.5f} "
              f"(y and state), {seconds:.2f} s")


if __name__ == "__main__":
    main()

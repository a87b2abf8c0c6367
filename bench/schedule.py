"""Scheduling benchmark: MAC utilisation, cycles and latency of the benchmark models at 8 to 128
MACs, next to the bound max(useful MACs / macs, vector elements / vec_lanes).

    .venv/bin/python bench/schedule.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_models import MODELS  # noqa: E402

from compiler.pipeline import compile_model  # noqa: E402
from isa.target import Target  # noqa: E402
from runtime_sim import Simulator  # noqa: E402

WIDTHS = (8, 16, 32, 64, 128)


def main() -> None:
    print(f"{'model':<22} {'MACs':>4} {'cycles':>8} {'latency_us':>10} {'MAC util':>8} {'bound':>8} {'of bound':>8} "
          f"{'code B':>7}")
    for name, build in MODELS.items():
        model = build()
        for macs in WIDTHS:
            program = compile_model(model, Target(macs=macs)).program
            stats = Simulator(program).stats
            bound = stats["bound_cycles"]
            print(f"{name:<22} {macs:>4} {stats['cycles']:>8} {stats['latency_us']:>10.2f} "
                  f"{stats['mac_utilization']:>8.1%} {bound:>8} {bound / stats['cycles']:>8.1%} "
                  f"{len(program.code) * 16:>7}")


if __name__ == "__main__":
    main()

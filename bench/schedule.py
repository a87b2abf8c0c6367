"""Scheduling benchmark: cycles and MAC utilisation of recurrent models at 8 to 256 MACs, next to
the bound max(useful MACs / macs, vector elements / vec_lanes) and the recurrence bound
(docs/scheduling.md); `share` is the bound that binds, max(bound, rec-bound), over the cycles;
`pad` the share of the MAC unit's lane-cycles that do no useful MAC (padding lanes, split tails).

    .venv/bin/python bench/schedule.py [NAME_FILTER]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_models import MODELS, recurrent_classifier  # noqa: E402

from compiler.pipeline import compile_model  # noqa: E402
from isa.target import Target  # noqa: E402
from runtime_sim import Simulator  # noqa: E402

WIDTHS = (8, 16, 32, 64, 128, 256)
ODD_SIZES = {f"{cell} {hidden}": (lambda cell=cell, hidden=hidden: recurrent_classifier(cell, hidden))
             for hidden in (100, 118, 154, 256) for cell in ("LSTM", "GRU")}


def row(name: str, macs: int, stats: dict) -> str:
    """One line: the figures of one model at one width."""
    bound, cycles = stats["bound_cycles"], stats["cycles"]
    recurrence = stats.get("recurrence_bound_cycles", 0)
    pad = 1 - stats["mac_ops"] / (macs * stats["unit_busy"]["MAC"])
    return (f"{name:<22} {macs:>4} {cycles:>8} {stats['mac_utilization']:>8.1%} {bound:>8} {recurrence:>9} "
            f"{max(bound, recurrence) / cycles:>6.1%} {pad:>5.1%}")


def main(only: str = "") -> None:
    print(f"{'model':<22} {'MACs':>4} {'cycles':>8} {'MAC util':>8} {'bound':>8} {'rec-bound':>9} {'share':>6} "
          f"{'pad':>5}", flush=True)
    for name, build in {**MODELS, **ODD_SIZES}.items():
        if only not in name:
            continue
        model = build()
        for macs in WIDTHS:
            print(row(name, macs, Simulator(compile_model(model, Target(macs=macs)).program).stats), flush=True)


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]))

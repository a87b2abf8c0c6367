"""STATS.json's energy figures: the events the cycle model counted (runtime_sim/timing.py),
priced by the target (isa/energy.py), and average power at an inference rate.

The rate is back-to-back inference unless the user gives one (`rnnaccel-sim --rate HZ`); between
inferences the chip only leaks, because its memories keep the weights.
"""

from __future__ import annotations

import math

from isa.energy import back_to_back_hz, power_mw
from isa.errors import RnnaccelError


def at_rate(stats: dict, rate_hz: float | None) -> dict:
    """`stats` with `inference_rate_hz` and `power_mw` at `rate_hz` (None: back to back); a
    rate the chip cannot sustain is refused."""
    fastest = back_to_back_hz(stats["latency_us"])  # 0 for a program that takes no time
    rate = fastest if rate_hz is None else rate_hz
    if rate_hz is not None and not (math.isfinite(rate) and 0 < rate <= fastest * (1 + 1e-12)):
        raise RnnaccelError(f"--rate {rate_hz:g} Hz is not a rate this program runs at: one inference takes "
                            f"{stats['latency_us']:.2f} us, so at most {fastest:.6g} inferences per second")
    leakage = stats["energy_breakdown_uj"]["leakage"]
    return {**stats, "inference_rate_hz": rate, "power_mw": power_mw(stats["energy_uj"], leakage,
                                                                     stats["latency_us"], rate)}


def energy_summary(stats: dict) -> str:
    """rnnaccel-sim's energy line: per inference, efficiency, power, and the largest parts."""
    parts = sorted(stats["energy_breakdown_uj"].items(), key=lambda item: -item[1])
    share = ", ".join(f"{part} {uj / stats['energy_uj']:.0%}" for part, uj in parts[:3]) if stats["energy_uj"] else ""
    return (f"energy:          {stats['energy_uj']:.3f} uJ per inference (estimate; {share}), "
            f"{stats['tops_per_w']:.3f} TOPS/W, {stats['power_mw']:.3f} mW at {stats['inference_rate_hz']:.6g} "
            f"inferences/s\n")

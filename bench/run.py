"""Benchmarks: the figures SPEC section 5 holds us to, on the trained keyword spotters.

    make bench        (or: .venv/bin/python bench/run.py)

For examples/kws/kws_lstm64.onnx and kws_gru64.onnx at the default target (32 MACs, 8-bit
weights, no compression, calibrated on calib.npz): compile time, cycles, latency and MAC
utilisation, chip and float (ONNX Runtime) top-1 and their agreement on the 1200-utterance test
split, and the time to simulate 2000 utterances bit-accurately (the test split repeated).
Utilisation across MAC widths is bench/schedule.py's; compression is bench/compression.py's.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from compiler.pipeline import compile_model
from runtime_sim import Simulator
from runtime_sim.batch import run_batch
from runtime_sim.evaluate import evaluate, top1
from runtime_sim.float_ref import float_scores

KWS = Path(__file__).resolve().parent.parent / "examples" / "kws"
MODELS = ("kws_lstm64", "kws_gru64")
UTTERANCES = 2000


def best_time(fn, repeat: int = 3) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def bench(name: str, x: np.ndarray, y: np.ndarray, calib: dict) -> None:
    model = str(KWS / f"{name}.onnx")
    seconds, compiled = best_time(lambda: compile_model(model, calibration=calib))
    sim = Simulator(compiled.program)
    ev = evaluate(sim, {"mfcc": x}, y, top1(float_scores(model, compiled.program, {"mfcc": x})))
    st = ev.stats
    many = np.resize(x, (UTTERANCES,) + x.shape[1:])
    _, totals = run_batch(sim, {"mfcc": many})
    print(f"{name} (default target: {st['macs']} MACs, 8-bit weights, batch 1)")
    print(f"  compile time            {seconds:.3f} s (best of 3)")
    print(f"  cycles                  {st['cycles']} ({st['latency_us']:.2f} us at {st['clock_mhz']} MHz), "
          f"MAC utilisation {st['mac_utilization']:.1%} (bound {st['bound_cycles']} cycles)")
    print(f"  test split ({len(y)})       chip top-1 {ev.chip_accuracy:.2%}, float top-1 {ev.float_accuracy:.2%}, "
          f"agreement {ev.agreement:.2%} ({int(np.sum(ev.chip != ev.reference))} differ)")
    print(f"  {UTTERANCES} utterances         {totals['wall_seconds']:.2f} s bit-accurate "
          f"({totals['simulated_macs_per_second'] / 1e6:.0f} M simulated MACs/s; "
          f"{totals['chip_seconds'] * 1e3:.1f} ms on the chip)")


def main() -> None:
    with np.load(KWS / "test.npz") as d:
        x, y = d["x"], d["y"]
    calib = dict(np.load(KWS / "calib.npz"))
    for name in MODELS:
        bench(name, x, y, calib)


if __name__ == "__main__":
    main()

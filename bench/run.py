"""Benchmarks: print the figures SPEC section 5 holds us to, for the keyword-spotting example.

    make bench        (or: .venv/bin/python bench/run.py)

Figures: compile time, cycles, latency and MAC utilisation at 8..128 MACs, weight storage and
compression ratio, top-1 agreement and worst error against ONNX Runtime on the example's test
set, and the time to simulate 2000 utterances bit-accurately. Nothing here is a test.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from compiler.pipeline import compile_model
from isa.target import Target
from runtime_sim import Simulator

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
UTTERANCES = 2000


def best_time(fn, repeat: int = 3) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main() -> None:
    model = onnx.load(str(EXAMPLES / "kws_lstm.onnx"))
    calib = dict(np.load(EXAMPLES / "kws_calib.npz"))
    test = np.load(EXAMPLES / "kws_test.npz")["mfcc"]
    seconds, compiled = best_time(lambda: compile_model(model, Target(), calib))
    total = compiled.report["total"]
    print("KWS LSTM (49x10 -> LSTM 64 -> Linear 12), 8-bit weights, batch 1")
    print(f"  compile time            {seconds:.3f} s")
    print(f"  code                    {total['instructions']} instructions, {total['code_bytes']} bytes")
    print(f"  weights                 {total['stored_bytes']} B stored vs {total['fp32_bytes']} B fp32 "
          f"({total['compression_ratio']:.2f}x)")
    print("\n  MACs  cycles  latency_us  MAC_utilisation")
    for macs in (8, 16, 32, 64, 128):
        stats = Simulator(compile_model(model, Target(macs=macs), calib).program).stats
        print(f"  {macs:4d}  {stats['cycles']:6d}  {stats['latency_us']:10.2f}  {stats['mac_utilization']:15.1%}")
    sim = Simulator(compiled.program)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = np.stack([session.run(None, {"mfcc": x})[0] for x in test])
    got = sim.run({"mfcc": test}, batch=True).outputs["logits"]
    print(f"\n  top-1 agreement with ONNX Runtime  {np.mean(got.argmax(-1) == want.argmax(-1)):.1%} "
          f"over {len(test)} test inputs; worst |error| {np.max(np.abs(got - want)):.5f} "
          f"(logit range {np.max(np.abs(want)):.3f})")
    many = np.concatenate([test] * (UTTERANCES // len(test) + 1))[:UTTERANCES]
    seconds, _ = best_time(lambda: sim.run({"mfcc": many}, batch=True), repeat=1)
    macs_per_second = sim.stats["mac_ops"] * UTTERANCES / seconds
    print(f"  bit-accurate simulation of {UTTERANCES} utterances  {seconds:.2f} s "
          f"({macs_per_second / 1e9:.2f} G simulated MACs/s)")


if __name__ == "__main__":
    main()

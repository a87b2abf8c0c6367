"""Streaming benchmark: the trained keyword spotters compiled --streaming, one frame per run.

Prints, per model, the cycles and latency of one frame against the whole-sequence program's,
and streams the whole test split frame by frame (all utterances as parallel streams): the time
it takes and whether the logits after the last frame equal the whole-sequence program's.

    .venv/bin/python bench/streaming.py [MODEL ...]     (default: the three KWS models)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from compiler.pipeline import compile_model
from runtime_sim import Simulator

KWS = Path(__file__).resolve().parent.parent / "examples" / "kws"
MODELS = ["kws_lstm64", "kws_gru64", "kws_lstm128x2"]


def main(names: list[str]) -> None:
    test, calib = np.load(KWS / "test.npz"), dict(np.load(KWS / "calib.npz"))
    x, y = test["x"], test["y"]
    print(f"{'model':<15} {'frame cycles':>12} {'frame us':>9} {'MAC util':>9} {'state':>6} {'whole cycles':>13} "
          f"{'stream s':>9} {'top-1':>7} {'= whole':>8}")
    for name in names:
        whole = Simulator(compile_model(KWS / f"{name}.onnx", calibration=calib).program)
        expected = whole.run({"mfcc": x}, batch=True).raw_outputs["logits"]
        sim = Simulator(compile_model(KWS / f"{name}.onnx", calibration=calib, streaming=True).program)
        stream = sim.stream(samples=len(x))
        start = time.perf_counter()
        for t in range(x.shape[2]):
            result = stream.step({"mfcc": x[:, :, t:t + 1]})
        seconds = time.perf_counter() - start
        stats, state = sim.stats, sum(s.size for s in sim.program.state)
        top1 = np.mean(result.outputs["logits"].reshape(len(x), -1).argmax(-1) == y)
        same = "yes" if np.array_equal(result.raw_outputs["logits"], expected) else "NO"
        print(f"{name:<15} {stats['cycles']:>12} {stats['latency_us']:>9.2f} {stats['mac_utilization']:>9.1%} "
              f"{state:>6} {whole.stats['cycles']:>13} {seconds:>9.2f} {top1:>7.2%} {same:>8}")
    print(f"({len(x)} test utterances streamed as parallel streams, {x.shape[2]} frames each; "
          "state in activation-memory elements)")


if __name__ == "__main__":
    main(sys.argv[1:] or MODELS)

"""Compile each trained keyword-spotting model for the chip and measure it on the test split.

For every examples/kws/kws_*.onnx: compile with the calibration set (calib.npz), run the whole
test split batched on the bit-accurate simulator, run the float model with ONNX Runtime, and
report float top-1, chip top-1 and top-1 agreement (chip argmax == float argmax). A compiler
failure is reported with its message; it does not stop the other models.

Run from the repository root with the project's environment:

    .venv/bin/python examples/kws/evaluate_chip.py            # writes examples/kws/chip_results.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from compiler.pipeline import compile_model  # noqa: E402
from runtime_sim import Simulator  # noqa: E402


def float_logits(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(["logits"], {"mfcc": x[i]})[0] for i in range(len(x))])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--test", type=Path, default=HERE / "test.npz")
    ap.add_argument("--calib", type=Path, default=HERE / "calib.npz")
    ap.add_argument("--results", type=Path, default=HERE / "chip_results.json")
    args = ap.parse_args(argv)
    models = args.models or sorted(HERE.glob("kws_*.onnx"))
    d = np.load(args.test)
    x, y = d["x"], d["y"]
    calib = dict(np.load(args.calib))
    results = {}
    for path in models:
        name = path.stem
        ref = float_logits(path, x)
        r = {"float_acc": round(float((ref.argmax(1) == y).mean()), 4)}
        try:
            t0 = time.time()
            compiled = compile_model(str(path), calibration=calib)
            r["compile_seconds"] = round(time.time() - t0, 2)
            t0 = time.time()
            res = Simulator(compiled.program).run({"mfcc": x}, batch=True)
            r["simulate_seconds"] = round(time.time() - t0, 2)
            chip = np.asarray(res.outputs["logits"]).reshape(len(x), -1)
            r["chip_acc"] = round(float((chip.argmax(1) == y).mean()), 4)
            r["agreement"] = round(float((chip.argmax(1) == ref.argmax(1)).mean()), 4)
            r["max_abs_logit_err"] = round(float(np.abs(chip - ref).max()), 4)
            r["mean_abs_logit_err"] = round(float(np.abs(chip - ref).mean()), 4)
            r["logit_range"] = round(float(np.abs(ref).max()), 3)
            stats = res.stats
            r["stats"] = {k: stats[k] for k in ("cycles", "mac_utilization", "latency_us") if k in stats}
        except Exception as exc:  # noqa: BLE001 - reported, not fixed: the compiler belongs to others
            r["error"] = f"{type(exc).__name__}: {exc}"
        results[name] = r
        print(name, json.dumps(r), flush=True)
    args.results.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

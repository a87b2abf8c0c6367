"""Compression benchmark: the trained keyword-spotting models at none/4/3/2 bits per weight,
codebooks per tile and per matrix, with and without pruning, and `--compress auto` within its
default budget (top-1 agreement with the float model on 99 % of the calibration samples); then
the models fine-tuned with shared (and pruned) weights by examples/kws/finetune.py (compiler.finetune). Accuracy on
the test split and its drop from the float model's (points), the top-1 agreement with the float
model on the test split (what the budget of `auto` bounds on the calibration samples), the
compression ratio, weight-memory traffic and cycles per inference.

    .venv/bin/python bench/compression.py [--summary] [--calibration FILE] [MODEL ...]
                                                    (default: every kws_*.onnx float model)

--summary: only the widths the issue's table compares (4, 3, 2 bits per tile and `auto`), no
fine-tuned models. --calibration: another calibration set, e.g. examples/kws/calib200.npz.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from compiler.passes.budget import Budget
from compiler.passes.compress import Compression
from compiler.pipeline import compile_model
from runtime_sim import Simulator

KWS = Path(__file__).resolve().parent.parent / "examples" / "kws"
SETTINGS = [("none", None), ("4-bit tile", Compression(4)), ("4-bit matrix", Compression(4, "matrix")),
            ("3-bit tile", Compression(3)), ("3-bit matrix", Compression(3, "matrix")),
            ("2-bit tile", Compression(2)), ("2-bit matrix", Compression(2, "matrix")),
            ("4-bit tile, not activation-aware", Compression(4, activation_aware=False)),
            ("2-bit tile, pruned 60%", Compression(2, prune=0.6)),
            ("auto, default budget", Budget())]
# fine-tuned variants of each float model: (file, label, compression); the codebook per matrix
# and the pruned fraction are the ones the fine-tuning trained for
FINE_TUNED = {"kws_lstm64": [("kws_lstm64_c2", "2-bit matrix", Compression(2, "matrix"))],
              "kws_gru64": [("kws_gru64_c2", "2-bit matrix", Compression(2, "matrix")),
                            ("kws_gru64_c2s70", "2-bit matrix, pruned 70%", Compression(2, "matrix", prune=0.7))],
              "kws_gru154": [("kws_gru154_c2s60", "2-bit matrix, pruned 60%", Compression(2, "matrix", prune=0.6))],
              "kws_lstm118": [("kws_lstm118_c2s60", "2-bit matrix, pruned 60%", Compression(2, "matrix", prune=0.6))]}
SUMMARY = ("4-bit tile", "3-bit tile", "2-bit tile", "auto, default budget")
HEADER = (f"  {'weights':<34} {'ratio':>7} {'stored B':>9} {'top-1':>7} {'drop pt':>7} {'agree':>7} {'read B/inf':>11} "
          f"{'cycles':>7}")


def float_logits(model: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.stack([session.run(None, {"mfcc": sample})[0] for sample in x]).reshape(len(x), -1)


def float_top1(model: Path, x: np.ndarray) -> np.ndarray:
    return float_logits(model, x).argmax(-1)


def float_accuracy(model: Path, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(float_top1(model, x) == y))


def chip_row(label: str, model: Path, compression: Compression | Budget | None, calib: dict, x: np.ndarray,
             y: np.ndarray, reference: float, floats: np.ndarray) -> str:
    """One setting's figures; `agree` is the share of test utterances whose top-1 class is the
    model's own float top-1, `floats` (what --compress auto's budget bounds on its calibration
    samples)."""
    compiled = compile_model(model, calibration=calib, compression=compression)
    sim = Simulator(compiled.program)
    top1 = sim.run({"mfcc": x}, batch=True).outputs["logits"].reshape(len(x), -1).argmax(-1)
    accuracy, agreement = float(np.mean(top1 == y)), float(np.mean(top1 == floats))
    total = compiled.report["total"]
    return (f"  {label:<34} {total['compression_ratio']:>6.2f}x {total['stored_bytes']:>9} {accuracy:>7.2%} "
            f"{100 * (accuracy - reference):>+7.2f} {agreement:>7.2%} {sim.stats['weight_bytes_read']:>11} "
            f"{sim.stats['cycles']:>7}"
            f"{_widths(compiled.report)}")


def _widths(report: dict) -> str:
    """--compress auto: the width each matrix got."""
    chosen = report.get("compression", {}).get("matrices", [])
    return "  " + ", ".join(f"{m['matrix'].rsplit('/', 2)[-2]}/{m['matrix'].rsplit('/', 1)[-1]} "
                            f"{m['bits'] or 'plain'}" for m in chosen) if chosen else ""


def calibration_option(args: list[str]) -> tuple[dict, list[str]]:
    """`--calibration FILE` (an .npz with `mfcc`; default examples/kws/calib.npz, 64 samples), and
    the other arguments."""
    if "--calibration" not in args:
        return dict(np.load(KWS / "calib.npz")), args
    at = args.index("--calibration")
    return dict(np.load(args[at + 1])), args[:at] + args[at + 2:]


def main(names: list[str], calib: dict, summary: bool = False) -> None:
    test = np.load(KWS / "test.npz")
    x, y = test["x"], test["y"]
    for name in names:
        model = KWS / f"{name}.onnx"
        floats = float_top1(model, x)
        reference = float(np.mean(floats == y))
        print(f"{name}: float top-1 {reference:.2%} on {len(x)} test utterances")
        print(HEADER)
        for label, compression in SETTINGS:
            if not summary or label in SUMMARY:
                print(chip_row(label, model, compression, calib, x, y, reference, floats), flush=True)
        for tuned, label, compression in [] if summary else FINE_TUNED.get(name, []):
            path = KWS / f"{tuned}.onnx"
            tuned_floats = float_top1(path, x)
            print(f"{tuned} (fine-tuned from {name}): its own float top-1 {np.mean(tuned_floats == y):.2%}; "
                  f"drop from {name}'s")
            print(HEADER)
            print(chip_row(label, path, compression, calib, x, y, reference, tuned_floats), flush=True)


FLOAT_MODELS = sorted(p.stem for p in KWS.glob("kws_*.onnx") if "_c" not in p.stem)

if __name__ == "__main__":
    calibration, args = calibration_option(sys.argv[1:])
    names = [a for a in args if a != "--summary"]
    main(names or FLOAT_MODELS, calibration, "--summary" in args)

"""Post-training compression at fixed widths: for each trained keyword spotter, the top-1 drop
against the float model (ONNX Runtime) and the compression ratio at 4, 3 and 2 bits per weight,
codebook per tile, and at 2 bits without the refit through time, calibrated on
examples/kws/calib.npz (or --calibration FILE), on the 1200-utterance test split. The tables of
docs/benchmarks.md ("Post-training fitting at 2 bits").

    .venv/bin/python bench/fitting.py [--calibration FILE] [MODEL ...]
                                      (default: every examples/kws/kws_*.onnx that is not fine-tuned)
    .venv/bin/python bench/fitting.py [--calibration FILE] --grid MODEL [NAME=BITS ...]

--grid: every choice of widths per matrix (4, 3, 2 or plain; `--widths` of rnnaccel-compile),
those given as NAME=BITS held fixed: compression ratio, top-1 drop and agreement with the float
model on the test split, and agreement on the calibration samples (what --compress auto's
budget reads). It shows whether any choice meets a goal that --compress auto did not reach.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compression import KWS, calibration_option, float_logits, float_top1  # noqa: E402

from compiler.passes.compress import Compression  # noqa: E402
from compiler.passes.widths import WIDTHS, Widths, matrix_names, parse_widths  # noqa: E402
from compiler.pipeline import compile_model  # noqa: E402
from runtime_sim import Simulator  # noqa: E402

# the fixed widths of the table; the last column leaves out the refit through time of a 2-bit layer
SETTINGS = (("4-bit", Compression(4)), ("3-bit", Compression(3)), ("2-bit", Compression(2)),
            ("2-bit, step-wise fit only", Compression(2, refit=False)))


def chip_logits(model: Path, compression: Compression | None, calib: dict, x: np.ndarray,
                y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(top-1, compression ratio, logits) of the compiled model on the simulator."""
    compiled = compile_model(model, calibration=calib, compression=compression)
    logits = Simulator(compiled.program).run({"mfcc": x}, batch=True).outputs["logits"].reshape(len(x), -1)
    return float(np.mean(logits.argmax(-1) == y)), compiled.report["total"]["compression_ratio"], logits


def main(names: list[str], calib: dict) -> None:
    """Per setting: ratio, top-1 drop, the relative RMS error of the logits against the float
    model's ("logit error", smoother than top-1) and the top-1 agreement with it."""
    test = np.load(KWS / "test.npz")
    x, y = test["x"], test["y"]
    print(f"| model | float top-1 | {' | '.join(label for label, _ in SETTINGS)} |")
    print(f"|---|---|{'---|' * len(SETTINGS)}")
    for name in names:
        model = KWS / f"{name}.onnx"
        floats = float_logits(model, x)
        reference = float(np.mean(floats.argmax(-1) == y))
        cells = []
        for _, compression in SETTINGS:
            accuracy, ratio, logits = chip_logits(model, compression, calib, x, y)
            error = float(np.sqrt(np.sum((logits - floats) ** 2) / np.sum(floats ** 2)))
            agree = float(np.mean(logits.argmax(-1) == floats.argmax(-1)))
            cells.append(f"{ratio:.2f}x, {100 * (accuracy - reference):+.2f} pt (error {error:.3f}, agree {agree:.1%})")
        print(f"| {name} | {reference:.2%} | {' | '.join(cells)} |", flush=True)


def grid(name: str, fixed: dict[str, int | None], calib: dict) -> None:
    """Every choice of widths for the matrices not in `fixed`."""
    model = KWS / f"{name}.onnx"
    test = np.load(KWS / "test.npz")
    plain = compile_model(model, calibration=calib)
    free = [n for n in matrix_names(plain.graph) if n not in fixed]
    floats = {"test": float_top1(model, test["x"]), "calib": float_top1(model, calib["mfcc"])}
    reference = float(np.mean(floats["test"] == test["y"]))
    print(f"{name}: float top-1 {reference:.2%}; widths of {', '.join(free)}; fixed {fixed}")
    for widths in itertools.product(WIDTHS, repeat=len(free)):
        chosen = {**dict(zip(free, widths)), **fixed}
        compiled = compile_model(model, calibration=calib, compression=Widths(chosen))
        sim = Simulator(compiled.program)
        top1 = {split: sim.run({"mfcc": x}, batch=True).outputs["logits"].reshape(len(x), -1).argmax(-1)
                for split, x in (("test", test["x"]), ("calib", calib["mfcc"]))}
        agree = {split: float(np.mean(top1[split] == floats[split])) for split in top1}
        drop = 100 * (float(np.mean(top1["test"] == test["y"])) - reference)
        label = ", ".join(str(w or "plain") for w in widths)
        print(f"  {label:<18} {compiled.report['total']['compression_ratio']:6.2f}x "
              f"{drop:+6.2f} pt  test agreement {agree['test']:.2%}  calibration agreement {agree['calib']:.2%}",
              flush=True)


def trained_models() -> list[str]:
    return sorted(p.stem for p in KWS.glob("kws_*.onnx") if "_c2" not in p.stem)


if __name__ == "__main__":
    calibration, args = calibration_option(sys.argv[1:])
    if args[:1] == ["--grid"]:
        grid(args[1], dict(parse_widths(",".join(args[2:]))) if args[2:] else {}, calibration)
    else:
        main(args or trained_models(), calibration)

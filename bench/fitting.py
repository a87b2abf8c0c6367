"""Post-training compression at fixed widths: for each trained keyword spotter, the top-1 drop
against the float model (ONNX Runtime) and the compression ratio at 4, 3 and 2 bits per weight,
codebook per tile, calibrated on examples/kws/calib.npz, on the 1200-utterance test split. The
table of docs/benchmarks.md ("Weight compression on the trained keyword spotters").

    .venv/bin/python bench/fitting.py [MODEL ...]     (default: every examples/kws/kws_*.onnx
                                                        that is not fine-tuned)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compression import KWS, float_accuracy  # noqa: E402

from compiler.passes.compress import Compression  # noqa: E402
from compiler.pipeline import compile_model  # noqa: E402
from runtime_sim import Simulator  # noqa: E402

BITS = (4, 3, 2)


def chip_figures(model: Path, compression: Compression | None, calib: dict, x: np.ndarray,
                 y: np.ndarray) -> tuple[float, float]:
    """(top-1, compression ratio) of the compiled model on the simulator."""
    compiled = compile_model(model, calibration=calib, compression=compression)
    logits = Simulator(compiled.program).run({"mfcc": x}, batch=True).outputs["logits"]
    return float(np.mean(logits.reshape(len(x), -1).argmax(-1) == y)), compiled.report["total"]["compression_ratio"]


def main(names: list[str]) -> None:
    test, calib = np.load(KWS / "test.npz"), dict(np.load(KWS / "calib.npz"))
    x, y = test["x"], test["y"]
    print(f"| model | float top-1 | {' | '.join(f'{b}-bit' for b in BITS)} |")
    print(f"|---|---|{'---|' * len(BITS)}")
    for name in names:
        model = KWS / f"{name}.onnx"
        reference = float_accuracy(model, x, y)
        cells = []
        for bits in BITS:
            accuracy, ratio = chip_figures(model, Compression(bits), calib, x, y)
            cells.append(f"{ratio:.2f}x, {100 * (accuracy - reference):+.2f} pt")
        print(f"| {name} | {reference:.2%} | {' | '.join(cells)} |", flush=True)


def trained_models() -> list[str]:
    return sorted(p.stem for p in KWS.glob("kws_*.onnx") if "_c2" not in p.stem)


if __name__ == "__main__":
    main(sys.argv[1:] or trained_models())

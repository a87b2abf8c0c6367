"""Pre-quantised models: one classifier (tests/qdq_models.py) compiled twice, side by side.

- calibrated: the float model, its scales from calibration, against ONNX Runtime on the float model;
- QDQ: the same model quantised by onnxruntime.quantization.quantize_static (QDQ, per-channel int8
  weights, int8 activations), its grids taken from the Q/DQ pairs, against ONNX Runtime on the
  QDQ model.

For each: the worst error over 64 random sequences, ONNX Runtime's largest output, and the cycles
of one inference.

    .venv/bin/python bench/qdq.py
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from qdq_models import side_by_side  # noqa: E402


def main() -> None:
    logging.getLogger().setLevel(logging.ERROR)  # quantize_static's advice to pre-process
    print(f"{'model':<12} {'max error vs ORT':>17} {'largest output':>15} {'cycles':>7}")
    for name, figures in side_by_side().items():
        print(f"{name:<12} {figures['error']:>17.5f} {figures['largest']:>15.4f} {figures['cycles']:>7}")


if __name__ == "__main__":
    main()

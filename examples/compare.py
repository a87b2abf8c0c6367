"""Compare simulator outputs with ONNX Runtime on the same inputs.

    python examples/compare.py MODEL.onnx IN.npz OUT.npz
"""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort


def main(model: str, inputs: str, outputs: str) -> None:
    feeds = dict(np.load(inputs))
    chip = dict(np.load(outputs))
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    for name, want in zip(names, session.run(names, feeds)):
        got = chip[name]
        error = np.max(np.abs(got - want))
        print(f"{name}: max |chip - onnxruntime| = {error:.6f} (float range {np.max(np.abs(want)):.4f}); "
              f"top-1 {'agrees' if np.argmax(got) == np.argmax(want) else 'differs'}")


if __name__ == "__main__":
    main(*sys.argv[1:4])

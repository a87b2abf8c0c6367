"""Numerics benchmark: recurrent models whose values go beyond the chip's natural formats.

For every case of tests/numerics_cases.py (an LSTM cell state in the hundreds, initial states
beyond +-1 given as inputs, a logit beyond +-8 that also feeds a Sigmoid, Relu states), compiled
on its own calibration and run as its host runs it (closed loop where it has state to feed back):
the formats calibration gave its states, then for every output the worst error against ONNX
Runtime relative to max(1, max |float|) -- the float tolerance's measure, 0.03 at 8 bits -- the
relative RMS error and the largest float value, and whether every run was bit-exact against the
golden reference.

    .venv/bin/python bench/numerics.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from numerics_cases import CASES, measure  # noqa: E402


def main() -> None:
    print(f"{'case':22} {'runs':>4} {'states':28} {'output':7} {'max err':>8} {'rel RMS':>8} {'max |x|':>9} exact")
    for name, case in CASES.items():
        measured = measure(name)
        (states,) = [row["states"] for row in measured.compiled.report["layers"] if "states" in row]
        formats = " ".join(f"{key}:{s['format']}({s['calibrated_max']:.3g})" for key, s in states.items())
        for row, output in enumerate(measured.chip[0]):
            largest = max(float(abs(w[output]).max()) for w in measured.want)
            label, shown = (name, formats) if row == 0 else ("", "")
            print(f"{label:22} {max(case.frames, 1):4} {shown:28} {output:7} {measured.error(output):8.4f} "
                  f"{measured.relative_rms(output):8.4f} {largest:9.3g} {measured.exact}")


if __name__ == "__main__":
    main()

"""Energy benchmark: the trained keyword spotters' energy per inference, TOPS/W and where the
energy goes, at 8/16/32/64/128 MACs and at each compression (none, 4, 3, 2 bits per weight,
a codebook per tile), on the default target's memories and per-event energies (docs/energy.md:
estimates for a 40 nm process); then the 32-MAC design at smaller weight memories, the largest
lever. Energy is static (the events never depend on data), so no utterance is simulated.

    .venv/bin/python bench/energy.py [MODEL ...]     (default: kws_lstm64 kws_gru64 kws_lstm128x2)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from compiler.passes.compress import Compression
from compiler.pipeline import compile_model
from isa.energy import PARTS
from isa.errors import RnnaccelError
from isa.target import Target
from runtime_sim import Simulator

KWS = Path(__file__).resolve().parent.parent / "examples" / "kws"
MODELS = ("kws_lstm64", "kws_gru64", "kws_lstm128x2")
WIDTHS = (8, 16, 32, 64, 128)
COMPRESSIONS = (None, 4, 3, 2)
MEMORY_SIZES = (32 << 10, 64 << 10, 128 << 10, 512 << 10)  # weight memory, bytes
SHORT = {"mac": "mac", "weight_memory": "wmem", "decompression": "dec", "activation_memory": "amem",
         "accumulator_memory": "acc", "vector_unit": "vec", "dma": "dma", "leakage": "leak"}
HEADER = (f"  {'macs':>4} {'weights':>7} {'cycles':>7} {'uJ/inf':>7} {'TOPS/W':>6} {'mW':>6}  "
          + " ".join(f"{SHORT[p]:>5}" for p in PARTS) + "   (% of the energy)")


def row(model: Path, target: Target, bits: int | None, calib: dict) -> str:
    """One line: a compiled model's energy figures on `target`, or why it did not compile."""
    label = f"{bits}-bit" if bits else "plain"
    lead = f"  {target.macs:>4} {label:>7}"
    try:
        compiled = compile_model(model, target, calib, compression=Compression(bits) if bits else None,
                                 chip_only=True)
    except RnnaccelError:
        return f"{lead} does not fit"
    s = Simulator(compiled.program, trace=False).stats
    shares = " ".join(f"{100 * s['energy_breakdown_uj'][p] / s['energy_uj']:>5.1f}" for p in PARTS)
    return (f"{lead} {s['cycles']:>7} {s['energy_uj']:>7.3f} {s['tops_per_w']:>6.3f} {s['power_mw']:>6.1f}  "
            f"{shares}")


def main(names: list[str]) -> None:
    calib = dict(np.load(KWS / "calib.npz"))
    for name in names:
        model = KWS / f"{name}.onnx"
        print(f"{name}: per inference, default target memories (weights {Target().weight_mem_bytes >> 10} KiB, "
              f"activations {Target().act_mem_bytes >> 10} KiB); power back to back")
        print(HEADER)
        for macs in WIDTHS:
            for bits in COMPRESSIONS:
                print(row(model, Target(macs=macs), bits, calib), flush=True)
        print(f"{name} at 32 MACs, by weight-memory size (KiB)")
        print("  " + HEADER.strip().replace("macs", "KiB "))
        for size in MEMORY_SIZES:
            for bits in COMPRESSIONS:
                line = row(model, Target(weight_mem_bytes=size), bits, calib)
                print(f"  {size >> 10:>4}" + line[6:], flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS))

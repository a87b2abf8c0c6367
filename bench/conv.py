"""Convolution benchmark: standard Conv1d and Conv2d layers (a depthwise one, and two
ConvTranspose, each one stride-1 conv per output phase) at 32 MACs.

Each layer reads its input channels-last and gives its output so (a Transpose on either side, as
a front end feeding a recurrent layer has: they fuse with the Conv's own layout gathers), and, for
the first two, also alone in ONNX's [N, C, ...] layout, where the two transposes are element-by-
element copies on the vector unit. For each layer: the useful MACs the program does (the ISA
table's count; the runs of a window in zero padding are skipped), the share of them that still
multiply padding (the report's padding_mac_ops: a compressed window read whole), the cycles next
to the bound max(useful MACs / macs, vector elements / vec_lanes), MAC utilisation (useful MACs /
(cycles x macs)), the weight bytes stored and the instructions (a layer's positions fold into
LOOPs).

Then the whole exported front ends of tests/data/frontends (the depthwise-separable CNN keyword
spotter and the Conv1d + LayerNorm + LSTM) and tests/data/convt (a Conv1d -> GRU ->
ConvTranspose1d speech enhancer, a Conv2d/ConvTranspose2d encoder-decoder), compiled with
--chip-only on their own samples: the same figures for the model, the share of its MACs the
convolutions do (the chip's share were they left to the host), and each one's useful MACs, span
in cycles and MAC utilisation over that span from the simulator's per-layer statistics.

    .venv/bin/python bench/conv.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from compiler.pipeline import compile_model  # noqa: E402
from isa.target import Target  # noqa: E402
from runtime_sim import Simulator  # noqa: E402

from models import conv_model  # noqa: E402

MACS = 32
FRONTENDS = Path(__file__).resolve().parent.parent / "tests" / "data" / "frontends"
CONVT = FRONTENDS.parent / "convt"  # the exported ConvTranspose models (tests/data/make_convt.py)
# name -> (input shape [N, C, spatial...], output channels, kernel, attributes)
LAYERS = {
    "Conv1d 64->64 k3 L100": ((1, 64, 100), 64, (3,), {"pads": [1, 1]}),
    "Conv1d 40->64 k5 s2 L100": ((1, 40, 100), 64, (5,), {"strides": [2], "pads": [2, 2]}),
    "Conv2d 16->32 3x3 20x20": ((1, 16, 20, 20), 32, (3, 3), {"pads": [1, 1, 1, 1]}),
    "Conv2d 1->32 3x3 40x10": ((1, 1, 40, 10), 32, (3, 3), {"pads": [1, 1, 1, 1]}),
    "depthwise 32 3x3 10x10": ((1, 32, 10, 10), 32, (3, 3), {"pads": [1, 1, 1, 1], "group": 32}),
    "ConvTranspose1d 64->32 k4 s2 L50": ((1, 64, 50), 32, (4,), {"strides": [2], "pads": [1, 1],
                                                                  "op": "ConvTranspose"}),
    "ConvTranspose2d 16->8 3x3 s2 10x10": ((1, 16, 10, 10), 8, (3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1],
                                                                         "output_padding": [1, 1],
                                                                         "op": "ConvTranspose"}),
}
CASES = [*((layer, True) for layer in LAYERS.items()), *((layer, False) for layer in list(LAYERS.items())[:2])]


def padding_share(report: dict) -> float:
    """The share of the conv rows' MACs that multiply padding (the report's padding_mac_ops)."""
    rows = [row for row in report["layers"] if row["op"] in ("conv", "depthwise")]
    return sum(row.get("padding_mac_ops", 0) for row in rows) / max(1, sum(row["mac_ops"] for row in rows))


def front_ends() -> None:
    """One line per exported front end, then one per Conv layer of it."""
    print(f"\n{'model (--chip-only)':<22} {'MACs':>8} {'conv MACs':>9} {'cycles':>8} {'bound':>8} {'MAC util':>8} "
          f"{'of bound':>8} {'weight B':>8}")
    for path in sorted([*FRONTENDS.glob("*.onnx"), *CONVT.glob("*.onnx")]):
        calibration = {"x": np.load(path.with_suffix(".npz"))["x"]}
        compiled = compile_model(path, Target(macs=MACS), calibration, chip_only=True)
        stats = Simulator(compiled.program).stats
        convs = [row["name"] for row in compiled.report["layers"] if row["op"] in ("conv", "depthwise")]
        layers = [layer for layer in stats["layers"] if layer["name"] in convs]
        conv_share = sum(layer["mac_ops"] for layer in layers) / stats["mac_ops"]
        print(f"{path.stem:<22} {stats['mac_ops']:>8} {conv_share:>9.1%} {stats['cycles']:>8} "
              f"{stats['bound_cycles']:>8} {stats['mac_utilization']:>8.1%} "
              f"{stats['bound_cycles'] / stats['cycles']:>8.1%} {compiled.report['total']['stored_bytes']:>8}")
        for layer in layers:
            print(f"  {layer['name']:<30} {layer['mac_ops']:>8} MACs {layer['cycles']:>8} cycles "
                  f"{layer['mac_utilization']:>6.1%} MAC util")


def main() -> None:
    print(f"{'layer':<36} {'MACs':>8} {'pad':>6} {'cycles':>8} {'bound':>8} {'MAC util':>8} {'of bound':>8} "
          f"{'weight B':>8} {'instrs':>6}")
    for (layer, (shape, out, kernel, attrs)), channels_last in CASES:
        model = conv_model(shape, out, kernel, channels_last=channels_last, **attrs)
        name = layer if channels_last else f"{layer} [N,C,...]"
        compiled = compile_model(model, Target(macs=MACS))
        stats = Simulator(compiled.program).stats
        total = compiled.report["total"]
        print(f"{name:<36} {stats['mac_ops']:>8} {padding_share(compiled.report):>6.1%} {stats['cycles']:>8} "
              f"{stats['bound_cycles']:>8} {stats['mac_utilization']:>8.1%} "
              f"{stats['bound_cycles'] / stats['cycles']:>8.1%} {total['stored_bytes']:>8} "
              f"{len(compiled.program.code):>6}")
    front_ends()


if __name__ == "__main__":
    main()

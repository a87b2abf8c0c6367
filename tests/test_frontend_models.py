"""Exported PyTorch front ends on the chip alone, each from both exporters, compiled with
--chip-only, bit-exact against the golden reference and close to ONNX Runtime and to PyTorch:
the CRNN with BatchNorm2d (tests/data/make_conv.py), the depthwise-separable CNN keyword spotter
and the Conv1d + LayerNorm + LSTM (tests/data/make_frontends.py), a Conv1d -> GRU ->
ConvTranspose1d speech enhancer and a Conv2d/ConvTranspose2d encoder-decoder with BatchNorm2d and
PReLU (tests/data/make_convt.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from toolchain import TOLERANCE, assert_close

DATA = Path(__file__).resolve().parent / "data"
MODELS = ["conv/crnn-bn", "frontends/ds-cnn", "frontends/conv1d-ln", "convt/enhancer-1d", "convt/unet-2d"]
CONVOLUTIONS = ("Conv", "ConvTranspose")


@pytest.mark.parametrize("exporter", ["script", "dynamo"])
@pytest.mark.parametrize("name", MODELS)
def test_exported_front_end_runs_on_the_chip_alone(name, exporter):
    """One chip program (what --chip-only accepts: no host part, no islands); every Conv of the
    file (ConvTranspose too) is a report row doing MACs (so none went to the host or vanished)."""
    path = DATA / f"{name}-{exporter}.onnx"
    data = np.load(path.with_suffix(".npz"))
    model = onnx.load(str(path))
    checked = assert_close(model, {"x": data["x"][0]}, calibration={"x": data["x"]})
    assert not checked.compiled.partition.needs_host and not checked.compiled.islands
    bound = TOLERANCE[8] * max(1.0, float(np.abs(data["y"]).max()))
    assert float(np.max(np.abs(checked.outputs["y"] - data["y"][0]))) <= bound
    convs = {n.name for n in model.graph.node if n.op_type in CONVOLUTIONS}
    rows = {row["name"]: row for row in checked.compiled.report["layers"] if row["op"] in ("conv", "depthwise")}
    assert convs and set(rows) == convs and all(row["mac_ops"] for row in rows.values())

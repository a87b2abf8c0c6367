"""The compiled listing of a tiny LSTM and head, as text: a change to the frontend, quantisation,
tiling, schedule, allocation or listing format shows up as a reviewable diff."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from compiler.cli import main
from compiler.passes.compress import Compression
from compiler.pipeline import compile_model
from isa.listing import disassemble
from isa.target import Target

from models import lstm_model, recurrent_model
from snapshot import assert_snapshot


def tiny_model() -> onnx.ModelProto:
    """LSTM (2 steps, 3 inputs, hidden 4) -> last hidden state -> Gemm to 2 outputs -> Relu."""
    model = lstm_model(2, 1, 3, 4, outputs=("Y_h",))
    graph = model.graph
    graph.initializer.append(numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(2, 4) / 8, "Wh"))
    graph.initializer.append(numpy_helper.from_array(np.array([4], np.int64), "flat"))
    graph.node.extend([helper.make_node("Reshape", ["Y_h", "flat"], ["h"], name="flatten"),
                       helper.make_node("Unsqueeze", ["h", "zero"], ["h2"], name="row"),
                       helper.make_node("Gemm", ["h2", "Wh"], ["z"], transB=1, name="head"),
                       helper.make_node("Relu", ["z"], ["y"], name="relu")])
    graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), "zero"))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2]))
    onnx.checker.check_model(model)
    return model


def test_tiny_lstm_listing_snapshot():
    calibration = {"X": np.random.default_rng(0).standard_normal((4, 2, 1, 3)).astype(np.float32)}
    program = compile_model(tiny_model(), Target(macs=8), calibration).program
    assert_snapshot("tiny_lstm.s", disassemble(program))


def test_compiling_twice_gives_identical_programs():
    from isa.container import to_bytes

    first, second = (to_bytes(compile_model(tiny_model()).program) for _ in range(2))
    assert first == second


def test_compiling_a_recurrent_compressed_model_twice_gives_identical_programs():
    """Codebook fitting (k-means) and loop folding must not depend on hash order or the clock."""
    from isa.container import to_bytes

    model = recurrent_model("GRU", 12, 1, 6, 16, direction="bidirectional")
    calibration = {"X": np.random.default_rng(1).standard_normal((8, 12, 1, 6)).astype(np.float32)}
    first, second = (to_bytes(compile_model(model, Target(macs=16), calibration, compression=Compression(3)).program)
                     for _ in range(2))
    assert first == second


def test_the_cli_writes_identical_files_twice(tmp_path):
    """rnnaccel-compile run twice: byte-identical program, listing and report."""
    onnx.save(tiny_model(), str(tmp_path / "m.onnx"))
    for run in ("a", "b"):
        with pytest.raises(SystemExit) as exc:
            main([str(tmp_path / "m.onnx"), "-o", str(tmp_path / f"{run}.rnna"), "--listing",
                  str(tmp_path / f"{run}.s"), "--report", str(tmp_path / f"{run}.json"), "--compress", "4", "-q"])
        assert exc.value.code == 0
    for suffix in ("rnna", "s", "json"):
        assert (tmp_path / f"a.{suffix}").read_bytes() == (tmp_path / f"b.{suffix}").read_bytes(), suffix

"""Weights several nodes read (one initialiser, or equal ones) are stored once in weight memory:
the program is bit-exact and close to ONNX Runtime, and the report counts the matrix once."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.cli import main as compile_main
from compiler.passes.compress import Compression
from compiler.pipeline import compile_model

from toolchain import TOLERANCE, float_outputs, random_inputs, run_checked

RNG = np.random.default_rng(7)
W, B = RNG.standard_normal((8, 8)).astype(np.float32), RNG.standard_normal((8, 6)).astype(np.float32)
BIASES = {"C1": RNG.standard_normal(6).astype(np.float32), "C2": RNG.standard_normal(6).astype(np.float32)}


def _model(nodes: list, output: tuple[int, ...], inits: dict[str, np.ndarray]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(output))],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _shared(names: tuple[str, str, str] = ("W", "W", "W")) -> onnx.ModelProto:
    """One matrix read by three MatMul nodes (a Linear applied three times), then one matrix read by
    two Gemm nodes of different biases; `names` may give the MatMuls equal copies instead."""
    nodes = [helper.make_node("MatMul", ["x", names[0]], ["h1"], name="mm1"), helper.make_node("Tanh", ["h1"], ["a1"]),
             helper.make_node("MatMul", ["a1", names[1]], ["h2"], name="mm2"), helper.make_node("Relu", ["h2"], ["a2"]),
             helper.make_node("MatMul", ["a2", names[2]], ["h3"], name="mm3"),
             helper.make_node("Gemm", ["h3", "B", "C1"], ["g1"], name="g1"),
             helper.make_node("Gemm", ["h3", "B", "C2"], ["g2"], name="g2"),
             helper.make_node("Concat", ["g1", "g2"], ["y"], axis=1)]
    return _model(nodes, (2, 12), {**dict.fromkeys(names, W), "B": B, **BIASES})


def _single() -> onnx.ModelProto:
    """Each matrix read by one node."""
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm1"),
             helper.make_node("Gemm", ["h", "B", "C1"], ["y"], name="g1")]
    return _model(nodes, (2, 6), {"W": W, "B": B, "C1": BIASES["C1"]})


def _weight_bytes(compiled) -> int:
    return sum(len(region.data) for region in compiled.program.regions if region.name == "weights")


@pytest.mark.parametrize("compression", [None, Compression(4)], ids=["plain", "codebook-4"])
@pytest.mark.parametrize("names", [("W", "W", "W"), ("W", "W_copy", "W_copy2")], ids=["one", "equal-copies"])
def test_a_matrix_read_by_several_nodes_is_stored_once(names, compression):
    model, inputs = _shared(names), random_inputs(_shared(names), seed=1)
    checked = run_checked(model, inputs, compression=compression)
    single = compile_model(_single(), calibration={"x": inputs["x"][None]}, compression=compression)
    assert _weight_bytes(checked.compiled) == _weight_bytes(single)
    if compression is None:  # a 4-bit codebook has no documented tolerance: bit-exact is its check
        want = float_outputs(model, inputs)["y"]
        assert np.max(np.abs(checked.outputs["y"] - want)) <= TOLERANCE[8] * max(1.0, float(np.max(np.abs(want))))


def test_the_report_counts_a_shared_matrix_once():
    report = compile_model(_shared(), calibration=random_inputs(_shared(), seed=2, samples=4)).report
    rows = {layer["name"]: layer for layer in report["layers"]}
    assert [rows[n].get("shares_weights_with") for n in ("mm1", "mm2", "mm3", "g1", "g2")] == \
        [None, ["mm1"], ["mm1"], None, ["g1"]]
    assert report["total"]["weight_count"] == W.size + B.size
    assert rows["mm2"]["stored_bytes"] < rows["mm1"]["stored_bytes"]


def test_the_compile_summary_names_the_node_that_stores_a_shared_matrix(tmp_path, capsys):
    onnx.save(_shared(), tmp_path / "m.onnx")
    with pytest.raises(SystemExit) as exit_info:
        compile_main([str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.rnna")])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines if line.endswith("(weights stored by mm1)")] == ["mm2", "mm3"]
    assert [line.split()[0] for line in lines if line.endswith("(weights stored by g1)")] == ["g2"]

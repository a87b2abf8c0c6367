"""Hostile attribute values, types, opsets and sizes: each is refused with one line naming the
problem (status 2, no file left), or compiles as ONNX Runtime runs it.

Cases go through rnnaccel-compile (test_compiler_errors.compile_fails); `--check` must report
the same node instead of crashing.
"""

from __future__ import annotations

import json
import sys
import tracemalloc

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import compiler.pipeline
from compiler.backend.report import build_report
from compiler.cli import main
from compiler.frontend.onnx_import import import_model
from compiler.passes.calibrate import calibrate, default_calibration
from compiler.pipeline import compile_model
from isa.errors import RnnaccelError
from isa.target import Target

from cli_checks import compile_fails, save
from hostile_inputs import chain_model
from models import fc_model, lstm_model, recurrent_model
from toolchain import assert_close, random_inputs


def with_attribute(model: onnx.ModelProto, name: str, value, node: int = 0, kind=None) -> onnx.ModelProto:
    """The model with attribute `name` of node `node` set to `value` (replacing any it had)."""
    attributes = model.graph.node[node].attribute
    for attribute in [a for a in attributes if a.name == name]:
        attributes.remove(attribute)
    attributes.append(helper.make_attribute(name, value, attr_type=kind))
    return model


def with_initialiser(model: onnx.ModelProto, name: str, dtype) -> onnx.ModelProto:
    """The model with initialiser `name` converted to `dtype`."""
    tensor = next(t for t in model.graph.initializer if t.name == name)
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(dtype), name))
    return model


def check_output(tmp_path, capsys, model) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(save(tmp_path, model)), "--check"])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


LSTM = "node 'lstm' (LSTM): "
GEMM = "node 'fc' (Gemm): "
CASES = {
    "direction not UTF-8": (lambda: with_attribute(lstm_model(3, 1, 2, 4), "direction", b"\xff\xfe"),
                            LSTM + "attribute 'direction' is not valid UTF-8 text (b'\\xff\\xfe')"),
    "activations not UTF-8": (lambda: with_attribute(lstm_model(3, 1, 2, 4), "activations",
                                                     [b"Sigmoid", b"\xc3(", b"Tanh"]),
                              LSTM + "attribute 'activations' is not valid UTF-8 text (b'\\xc3(')"),
    "clip NaN": (lambda: with_attribute(lstm_model(3, 1, 2, 4), "clip", float("nan")),
                 LSTM + "attribute 'clip' = nan is not valid: it must be a finite number above 0"),
    "clip Inf": (lambda: with_attribute(recurrent_model("GRU", 3, 1, 2, 4), "clip", float("inf")),
                 "node 'gru' (GRU): attribute 'clip' = inf is not valid"),
    "clip negative": (lambda: with_attribute(recurrent_model("RNN", 3, 1, 2, 4), "clip", -1.0),
                      "node 'rnn' (RNN): attribute 'clip' = -1.0 is not valid: it must be a finite number above 0"),
    "clip zero": (lambda: with_attribute(lstm_model(3, 1, 2, 4), "clip", 0.0), LSTM + "attribute 'clip' = 0.0"),
    "activation_alpha NaN": (lambda: with_attribute(recurrent_model(
        "RNN", 3, 1, 2, 4, activations=["HardSigmoid"]), "activation_alpha", [float("nan")]),
        "attribute 'activation_alpha' = nan is not valid: it must be a finite number"),
    "Gemm alpha NaN": (lambda: with_attribute(fc_model(1, 4, 3), "alpha", float("nan")),
                       GEMM + "attribute 'alpha' = nan is not valid: it must be a finite number"),
    "Gemm beta -Inf": (lambda: with_attribute(fc_model(1, 4, 3), "beta", float("-inf")),
                       GEMM + "attribute 'beta' = -inf is not valid"),
    "HardSigmoid alpha Inf": (lambda: with_attribute(fc_model(1, 4, 3, activation="HardSigmoid"), "alpha",
                                                     float("inf"), node=1),
                              "node 'act' (HardSigmoid): attribute 'alpha' = inf is not valid"),
    "hidden_size 0": (lambda: with_attribute(lstm_model(3, 1, 2, 4), "hidden_size", 0),
                      LSTM + "attribute 'hidden_size' = 0 is not valid: it must be a positive integer"),
    "hidden_size negative": (lambda: with_attribute(recurrent_model("GRU", 3, 1, 2, 4), "hidden_size", -4),
                             "node 'gru' (GRU): attribute 'hidden_size' = -4 is not valid"),
    "W float64": (lambda: with_initialiser(lstm_model(3, 1, 2, 4), "W", np.float64),
                  LSTM + "W 'W' is float64; the layer's tensors must be float32, like X"),
    "R int64": (lambda: with_initialiser(recurrent_model("GRU", 3, 1, 2, 4), "R", np.int64),
                "node 'gru' (GRU): R 'R' is int64; the layer's tensors must be float32, like X"),
    "B float16": (lambda: with_initialiser(recurrent_model("RNN", 3, 1, 2, 4), "B", np.float16),
                  "node 'rnn' (RNN): B 'B' is float16"),
    "sequence_lens int64": (lambda: with_initialiser(recurrent_model("RNN", 3, 1, 2, 4, seq_lens=[2]), "lens",
                                                     np.int64),
                            "node 'rnn' (RNN): sequence_lens 'lens' is int64; ONNX defines it as int32"),
}


@pytest.mark.parametrize("case", CASES)
def test_hostile_attribute_is_one_line(tmp_path, capsys, case):
    build, message = CASES[case]
    err = compile_fails(tmp_path, capsys, save(tmp_path, build()))
    assert message in err, err


@pytest.mark.parametrize("case", ["direction not UTF-8", "activations not UTF-8", "clip NaN", "hidden_size 0"])
def test_check_reports_the_node(tmp_path, capsys, case):
    build, message = CASES[case]
    status, out, err = check_output(tmp_path, capsys, build())
    assert status == 2 and out.count("\n") == 1 and message in out, out
    assert err == "rnnaccel-compile: 1 of 1 nodes cannot be compiled\n"


def cast_model(to: int, on_constant: bool) -> onnx.ModelProto:
    """x + Cast(c or x, to): the Cast folds on a constant and is an alias on data."""
    x, y = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4]), \
        helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Cast", ["c" if on_constant else "x"], ["k"], to=to, name="cast"),
             helper.make_node("Add", ["x", "k"], ["y"], name="add")]
    constant = numpy_helper.from_array(np.ones((1, 4), np.float32), "c")
    graph = helper.make_graph(nodes, "g", [x], [y], [constant] if on_constant else [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("to", [999, onnx.TensorProto.STRING, onnx.TensorProto.BFLOAT16])
@pytest.mark.parametrize("on_constant", [True, False])
def test_cast_to_an_unknown_or_unsupported_type(tmp_path, capsys, to, on_constant):
    err = compile_fails(tmp_path, capsys, save(tmp_path, cast_model(to, on_constant)))
    assert f"node 'cast' (Cast): attribute 'to' = {to} is not valid: it must be a supported tensor type: " \
           "1 (float32), 11 (float64)" in err


@pytest.mark.parametrize("opset", [99, 23, 6, 1])
def test_an_opset_outside_7_to_22_is_refused(tmp_path, capsys, opset):
    model = fc_model(1, 4, 3)
    model.opset_import[0].version = opset
    err = compile_fails(tmp_path, capsys, save(tmp_path, model))
    assert f"opset {opset} of the default ONNX domain is not supported (supported: 7 to 22)" in err


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("lens", [[0], [0, 0], [0, 3]])
def test_empty_sequences_compile_like_onnx_runtime(tmp_path, capsys, op, lens):
    """ONNX Runtime accepts sequence_lens 0 and gives zeros, even for the final states of a layer with
    an initial state; so does the chip (and no loop over no steps)."""
    model = recurrent_model(op, 5, len(lens), 3, 4, direction="bidirectional", seq_lens=lens, initial=True)
    inputs = {name: np.clip(value, -0.9, 0.9) for name, value in random_inputs(model, seed=1).items()}
    assert_close(model, inputs)
    status, out, _ = check_output(tmp_path, capsys, model)
    assert status == 0 and out == "all 1 nodes supported\n"


def two_constants(op: str, first: tuple[int, ...], second: tuple[int, ...]) -> onnx.ModelProto:
    """y = Relu(x), beside a node `op` of two constants of these shapes (it folds, or is refused)."""
    x, y = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4]), \
        helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    constants = [numpy_helper.from_array(np.ones(shape, np.float32), name) for name, shape in
                 (("a", first), ("b", second))]
    nodes = [helper.make_node(op, ["a", "b"], ["folded"], name="big"), helper.make_node("Relu", ["x"], ["y"])]
    graph = helper.make_graph(nodes, "g", [x], [y], constants)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("op, first, second, count", [
    ("Equal", (1 << 16, 1), (1, 1 << 15), 1 << 31),
    ("Add", (1 << 16, 1), (1, 1 << 15), 1 << 31),
    ("Div", (1, 1 << 12, 1), (1 << 13, 1, 1), 1 << 25),
    ("MatMul", (1 << 13, 2), (2, 1 << 13), 1 << 26),
])
def test_a_fold_that_would_grow_huge_is_refused_before_it_is_computed(tmp_path, capsys, op, first, second, count):
    """Refused, and nothing on the way computes it either (the cell recogniser once summed the two
    constants as a bias: 16 GiB); numpy's allocations are traced."""
    err = compile_fails(tmp_path, capsys, save(tmp_path, two_constants(op, first, second)))
    assert f"node 'big' ({op}): the " in err and f"has {count} elements" in err and "more than the limit" in err
    tracemalloc.start()
    try:
        with pytest.raises(RnnaccelError, match="more than the limit"):
            compiler.pipeline.compile_model(two_constants(op, first, second))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def test_expand_is_checked_both_ways(tmp_path, capsys):
    model = two_constants("Expand", (1 << 16, 1), (2,))
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.array([1, 1 << 15], np.int64), "b"))
    err = compile_fails(tmp_path, capsys, save(tmp_path, model))
    assert "node 'big' (Expand): Expand's result has 2147483648 elements [65536, 32768]" in err


def lines_run(fn) -> int:
    """How many lines of Python `fn` executes (a loop's lines count once per iteration): a measure of
    work that does not depend on the machine, unlike a timing."""
    count = 0

    def local(frame, event, arg):
        nonlocal count
        count += 1
        return local

    sys.settrace(lambda frame, event, arg: local)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


@pytest.mark.parametrize("ops", [("Identity", "Identity", "Relu"), ("Add", "Relu"), ("Transpose",)])
def test_compile_work_grows_linearly_with_a_chain_of_nodes(ops):
    """A chain of 50 000 Identity nodes took minutes when passes scanned every node per node (the gather
    fusion, allocation, the report): doubling the chain must at most double the work again."""
    calibration = {"x": np.zeros((1, 1, 4), np.float32)}
    compile_model(chain_model(60, ops), calibration=calibration)  # once-per-process work (tables, imports) done
    work = [lines_run(lambda n=n: compile_model(chain_model(n, ops), calibration=calibration))
            for n in (120, 240, 480)]
    assert work[2] - work[1] <= 2.5 * (work[1] - work[0]), work


def test_report_work_does_not_grow_with_the_steps(monkeypatch):
    """The report counted every executed instruction, a loop's body once per timestep: 10x the steps
    cost 10x its work (and half of a long sequence's compile time). It counts a loop body once per
    instruction of code now, so 500 steps must cost it no more than 50 do."""
    work = []

    def counted_report(*args):
        work.append(lines_run(lambda: build_report(*args)))
        return build_report(*args)

    monkeypatch.setattr("compiler.pipeline.build_report", counted_report)
    reports = [compile_model(lstm_model(steps, 1, 4, 16, outputs=("Y_h",))).report for steps in (50, 500)]
    assert reports[1]["total"]["mac_ops"] > 9 * reports[0]["total"]["mac_ops"]  # the loop's work is counted
    assert work[1] <= 1.05 * work[0], work


@pytest.mark.parametrize("model", [
    lambda steps: lstm_model(steps, 1, 4, 16, outputs=("Y_h",)),  # h alternates between two buffers
    lambda steps: recurrent_model("GRU", steps, 1, 4, 16, direction="bidirectional", outputs=("Y",)),
])
def test_lowering_work_does_not_grow_with_the_steps(monkeypatch, model):
    """Lowering emitted every step's instructions and reroll compared every wave, only to fold them
    into one loop: 10x the steps cost 10x their work. A layer whose middle waves are alike is
    lowered at its first and last waves now, so 500 steps must cost lowering and reroll no more
    than 50 do, while the program still runs every step."""
    work = {}

    def counted(name, stage):
        def run(*args):
            work.setdefault(name, []).append(lines_run(lambda: stage(*args)))
            return stage(*args)
        monkeypatch.setattr(f"compiler.pipeline.{name}", run)

    for name in ("lower", "reroll"):
        counted(name, getattr(compiler.pipeline, name))
    reports = [compile_model(model(steps)).report for steps in (50, 500)]
    assert reports[1]["total"]["mac_ops"] > 9 * reports[0]["total"]["mac_ops"]
    for name, (short, long) in work.items():
        assert long <= 1.05 * short, (name, short, long)


@pytest.mark.parametrize("model", [
    lambda steps: lstm_model(steps, 1, 4, 16, outputs=("Y_h",)),
    lambda steps: recurrent_model("GRU", steps, 1, 4, 16, outputs=("Y",)),
])
def test_calibration_work_per_step_is_the_cells_alone(model):
    """Calibration runs the layer's float cells over every step, one after another: the one part of
    compiling a long sequence whose work must grow with it. A step computes in buffers made once and
    writes its states into a ring whose extremes are reduced once per 32 steps; it noted them at
    every step, with the step moments too (110 lines of Python a step for this LSTM, 93 for the
    GRU). At most 80 a step now, and the step moments only when asked (activation-aware
    compression reads them)."""
    graphs = {steps: import_model(model(steps)) for steps in (50, 500)}
    data = {steps: default_calibration(graph.input_shapes) for steps, graph in graphs.items()}

    def per_step(moments: bool) -> float:
        work = [lines_run(lambda s=s: calibrate(graphs[s], data[s], moments=moments)) for s in (50, 500)]
        return (work[1] - work[0]) / 450
    lean, full = per_step(False), per_step(True)
    assert lean <= 80 and full > lean, (lean, full)


def _target_file(tmp_path, **params) -> str:
    path = tmp_path / "target.json"
    path.write_text(json.dumps(params))
    return str(path)


@pytest.mark.parametrize("model, params, message", [
    (lambda: lstm_model(500, 1, 4, 64, outputs=("Y_h",)), {"acc_entries": 300},
     "node 'lstm' (LSTM): does not fit the target: its accumulators (W x and R h, 256 rows each) need at least "
     "512 entries of accumulator memory "
     "but the target has 300 (acc_entries=300)"),
    (lambda: recurrent_model("GRU", 500, 1, 8, 16), {"act_mem_bytes": 20000},
     "node 'gru': its sequences (X [500, 1, 8] and Y [500, 1, 1, 16]) need at least 12000 elements of activation "
     "memory but the target has 10000 (act_mem_bytes=20000)"),
])
def test_a_layer_that_cannot_fit_is_refused_before_calibration(tmp_path, capsys, monkeypatch, model, params,
                                                                  message):
    def no_calibration(*args, **kwargs):
        raise AssertionError("calibration started: the memory check came too late")

    monkeypatch.setattr("compiler.pipeline.calibrate", no_calibration)
    err = compile_fails(tmp_path, capsys, save(tmp_path, model()), "--target", _target_file(tmp_path, **params))
    assert message in err, err


@pytest.mark.parametrize("model, streaming", [
    (lambda: lstm_model(2, 1, 3, 8, outputs=("Y_h",)), False),  # W x and R h may share their place
    (lambda: lstm_model(6, 2, 3, 8, outputs=("Y",)), False),
    (lambda: recurrent_model("GRU", 6, 2, 3, 8, direction="bidirectional", seq_lens=[6, 2]), False),
    (lambda: recurrent_model("RNN", 6, 1, 3, 8, outputs=("Y_h",)), True),
])
def test_the_early_memory_check_never_refuses_a_model_that_fits(model, streaming):
    """Compiled for a target with exactly the memory it used, a model still compiles."""
    used = compile_model(model(), streaming=streaming).program.memory
    exact = Target(acc_entries=used.acc, act_mem_bytes=2 * used.amem)
    assert compile_model(model(), exact, streaming=streaming).program.memory == used


def test_a_finite_alpha_that_overflows_the_weights_is_refused(tmp_path, capsys):
    """Found by `make fuzz` (attributes): alpha = 3.4e38 times a weight of 4 is Inf in float32."""
    model = with_attribute(fc_model(1, 4, 3), "alpha", 3.4e38)
    weights = numpy_helper.to_array(model.graph.initializer[0]).copy()
    weights[0, 0] = 4.0
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(weights, "Wt"))
    err = compile_fails(tmp_path, capsys, save(tmp_path, model))
    assert "node 'fc' (Gemm): Gemm weight times 3.4e+38 overflows float32" in err


def test_a_fold_that_overflows_is_refused_where_it_is_used(tmp_path, capsys):
    """Two constants of 1e38 multiply to Inf without numpy's warning (a second line on stderr); the
    Add that uses the product names it."""
    model = two_constants("Mul", (1, 4), (1, 4))
    for tensor in model.graph.initializer:
        tensor.CopyFrom(numpy_helper.from_array(np.full((1, 4), 1e38, np.float32), tensor.name))
    model.graph.node[1].CopyFrom(helper.make_node("Add", ["x", "folded"], ["y"], name="add"))
    err = compile_fails(tmp_path, capsys, save(tmp_path, model))
    assert "node 'add' (Add): Add constant 'folded' contains NaN or Inf" in err


def test_a_layer_whose_float_values_overflow_is_refused_not_crashed():
    """Relu gates with peepholes feed the cell state back unbounded: over 25 steps the float run
    reaches inf, which used to crash choosing a format (OverflowError); now it is a user error."""
    model = recurrent_model("LSTM", 30, 1, 4, 23, activations=["Relu", "Tanh", "Tanh"], peepholes=True,
                            seq_lens=[25], seed=57)
    with pytest.raises(RnnaccelError, match="recurrent states reach inf or NaN on the calibration samples"):
        compile_model(model)

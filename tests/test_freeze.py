"""--const and constant If: a voice-activity detector's sample-rate switch, decided at compile time.

The models mimic what such detectors ship: an int64 `sr` input, `Equal(sr, 16000)` feeding an
`If` whose branches each hold a different recurrent layer over the float input. Frozen with
`--const sr=...`, the taken branch must compile, simulate bit-exactly against the golden
reference, and agree with ONNX Runtime run on the original model with that sample rate.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.cli import main
from compiler.frontend.freeze import freeze, freeze_inputs
from compiler.pipeline import compile_model
from isa.container import load
from isa.errors import RnnaccelError
from runtime_sim import Simulator

from cli_checks import compile_fails, save
from toolchain import TOLERANCE, float_outputs, run_checked

STEPS, BATCH, FEATURES, HIDDEN = 5, 1, 6, 8
REASON = "If on a condition computed from data (freeze the inputs it depends on with --const)"


def _weights(kind: str, seed: int, prefix: str) -> dict[str, np.ndarray]:
    gates = {"GRU": 3, "LSTM": 4}[kind]
    rng = np.random.default_rng(seed)
    return {f"{prefix}W": (rng.standard_normal((1, gates * HIDDEN, FEATURES)) * 0.4).astype(np.float32),
            f"{prefix}R": (rng.standard_normal((1, gates * HIDDEN, HIDDEN)) * 0.3).astype(np.float32),
            f"{prefix}B": (rng.standard_normal((1, 2 * gates * HIDDEN)) * 0.1).astype(np.float32)}


def _branch(kind: str, seed: int, name: str, local: bool) -> tuple[onnx.GraphProto, dict]:
    """A branch with one recurrent layer over the outer `x`; its weights are the branch's own
    initialisers (`local`) or outer ones it reads by name. Returns the graph and the outer weights."""
    weights = _weights(kind, seed, name + "_")
    node = helper.make_node(kind, ["x", *weights], ["", "h"], hidden_size=HIDDEN, name="rnn")
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()] if local else []
    out = helper.make_tensor_value_info("h", TensorProto.FLOAT, None)
    return helper.make_graph([node], name, [], [out], inits), ({} if local else weights)


def _if(cond: str, then: onnx.GraphProto, other: onnx.GraphProto, out: str, name: str) -> onnx.NodeProto:
    return helper.make_node("If", [cond], [out], then_branch=then, else_branch=other, name=name)


def _compare(op: str, cond: str, rate: int, name: str) -> list[onnx.NodeProto]:
    return [helper.make_node("Constant", [], [f"{name}_k"], value=numpy_helper.from_array(np.array(rate, np.int64))),
            helper.make_node(op, ["sr", f"{name}_k"], [cond], name=f"{name}_cmp")]


def _model(nodes: list, weights: dict, sr_shape=(), extra=()) -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [STEPS, BATCH, FEATURES]),
              helper.make_tensor_value_info("sr", TensorProto.INT64, list(sr_shape)), *extra]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, BATCH, HIDDEN])
    graph = helper.make_graph(nodes, "vad", inputs, [out], [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def vad_model() -> onnx.ModelProto:
    """Equal(sr, 16000) -> If: a GRU (outer weights) at 16 kHz, an LSTM (its own weights) otherwise."""
    then, outer = _branch("GRU", 1, "wide", local=False)
    other, _ = _branch("LSTM", 2, "narrow", local=True)
    return _model([*_compare("Equal", "is16k", 16000, "rate"), _if("is16k", then, other, "y", "switch")], outer)


def nested_model() -> onnx.ModelProto:
    """Greater(sr, 4000) -> If(then: Equal(sr, 16000) -> If(GRU, GRU); else: LSTM)."""
    wide, outer = _branch("GRU", 3, "wide", local=False)
    mid, _ = _branch("GRU", 4, "mid", local=True)
    low, _ = _branch("LSTM", 5, "low", local=True)
    inner = helper.make_graph([*_compare("Equal", "is16k", 16000, "inner"), _if("is16k", wide, mid, "h2", "inner")],
                              "then", [], [helper.make_tensor_value_info("h2", TensorProto.FLOAT, None)])
    return _model([*_compare("Greater", "above", 4000, "outer"), _if("above", inner, low, "y", "outer")], outer)


def _check_rate(model: onnx.ModelProto, rate: int, sr_shape=()) -> None:
    """The frozen model compiles; simulated, it is bit-exact with the golden reference and within the
    documented tolerance of ONNX Runtime on the original model with sr = rate."""
    x = np.random.default_rng(rate).standard_normal((STEPS, BATCH, FEATURES)).astype(np.float32)
    frozen = freeze(model, {"sr": [rate]})
    assert [n.op_type for n in frozen.graph.node if n.op_type == "If"] == []
    assert [i.name for i in frozen.graph.input] == ["x"]
    checked = run_checked(frozen, {"x": x})
    want = float_outputs(model, {"x": x, "sr": np.full(sr_shape, rate, np.int64)})["y"]
    error = float(np.max(np.abs(checked.outputs["y"] - want)))
    assert error <= TOLERANCE[8] * max(1.0, float(np.max(np.abs(want)))), error
    return checked


@pytest.mark.parametrize("rate, layer", [(16000, "GRU"), (8000, "LSTM")])
def test_vad_switch_takes_the_frozen_branch(rate, layer):
    checked = _check_rate(vad_model(), rate)
    assert [n.op for n in checked.compiled.graph.nodes if n.op in ("gru", "lstm")] == [layer.lower()]


@pytest.mark.parametrize("rate, layer", [(16000, "gru"), (12000, "gru"), (2000, "lstm")])
def test_nested_ifs_are_all_decided(rate, layer):
    checked = _check_rate(nested_model(), rate)
    assert [n.op for n in checked.compiled.graph.nodes if n.op in ("gru", "lstm")] == [layer]


def test_the_branches_differ():
    """The test above can fail: the two rates give different outputs for the same x."""
    x = np.ones((STEPS, BATCH, FEATURES), np.float32)
    runs = [float_outputs(vad_model(), {"x": x, "sr": np.array(r, np.int64)})["y"] for r in (16000, 8000)]
    assert not np.allclose(*runs)


def test_a_tensor_input_and_a_float_input():
    """A [1]-shaped int64 input takes one value; a float input may be frozen too."""
    model = _model([*_compare("Equal", "is16k", 16000, "rate"),
                    _if("is16k", *[_branch("GRU", s, f"b{s}", local=True)[0] for s in (6, 7)], "y", "switch")], {},
                   sr_shape=(1,))
    _check_rate(model, 8000, sr_shape=(1,))
    frozen = freeze_inputs(model, {"x": ["0.5"] * (STEPS * BATCH * FEATURES)})
    x = next(t for t in frozen.graph.initializer if t.name == "x")
    assert numpy_helper.to_array(x).shape == (STEPS, BATCH, FEATURES) and x.data_type == TensorProto.FLOAT


def test_a_symbolic_dim_is_fixed_by_the_count():
    value = helper.make_tensor_value_info("t", TensorProto.INT32, ["n", 2])
    model = helper.make_model(helper.make_graph([], "g", [value], [value]))
    frozen = freeze_inputs(model, {"t": [1, 2, 3, 4, 5, 6]})
    assert numpy_helper.to_array(frozen.graph.initializer[0]).tolist() == [[1, 2], [3, 4], [5, 6]]
    two = helper.make_model(helper.make_graph([], "g", [helper.make_tensor_value_info("t", 6, ["n", "m"])], [value]))
    with pytest.raises(RnnaccelError, match="several symbolic dims"):
        freeze_inputs(two, {"t": [1, 2]})


def _data_if_model() -> onnx.ModelProto:
    """An If whose condition is a graph input computed at run time (no --const can reach it)."""
    then, outer = _branch("GRU", 1, "wide", local=False)
    other, _ = _branch("LSTM", 2, "narrow", local=True)
    return _model([_if("x1", then, other, "y", "switch")], outer,
                  extra=[helper.make_tensor_value_info("x1", TensorProto.FLOAT, [1])])


def test_an_if_on_data_is_refused_with_its_reason(tmp_path, capsys):
    with pytest.raises(RnnaccelError, match=r"node 'switch' \(If\): " + REASON.replace("(", r"\(").replace(")", r"\)")):
        compile_model(_data_if_model(), consts={"sr": [16000]})
    path = save(tmp_path, _data_if_model())
    assert REASON in compile_fails(tmp_path, capsys, path, "--const", "sr=16000")
    with pytest.raises(SystemExit) as exc:
        main([str(path), "--check", "--const", "sr=16000"])
    assert exc.value.code == 2
    assert f"node 'switch' (If): {REASON}; got 'x1'" in capsys.readouterr().out


def test_cli_compiles_with_const_and_the_program_drops_the_input(tmp_path, capsys):
    path = save(tmp_path, vad_model())
    out = tmp_path / "vad.rnna"
    with pytest.raises(SystemExit) as exc:
        main([str(path), "-o", str(out), "-q", "--const", "sr=8000"])
    assert exc.value.code == 0
    program = load(str(out))
    x = np.random.default_rng(0).standard_normal((STEPS, BATCH, FEATURES)).astype(np.float32)
    got = Simulator(program).run({"x": x}).outputs["y"]
    want = float_outputs(vad_model(), {"x": x, "sr": np.array(8000, np.int64)})["y"]
    assert float(np.max(np.abs(got - want))) <= TOLERANCE[8] * max(1.0, float(np.max(np.abs(want))))
    assert [t.name for t in program.inputs] == ["x"]
    with pytest.raises(SystemExit) as exc:
        main([str(path), "--check", "--const", "sr=16000"])
    assert exc.value.code == 0 and "nodes supported" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--const", "rate=16000"], "--const names unknown input(s) rate; inputs are x, sr"),
    (["--const", "sr=16000.5"], "--const sr: '16000.5' is not a value of the input's type int64"),
    (["--const", "sr=sixteen"], "--const sr: 'sixteen' is not a value of the input's type int64"),
    (["--const", "sr=16000,8000"], "--const sr: 2 value(s) given; the input's shape [] takes 1"),
    (["--const", "sr=16000", "--const", "sr=8000"], "--const sr is given twice"),
    (["--const", "sr"], "--const sr: expected NAME=VALUE[,VALUE...]"),
    ([], "input 'sr' must be a float32 tensor; if it is a setting, freeze it with --const sr=VALUE"),
])
def test_const_errors(tmp_path, capsys, args, message):
    path = save(tmp_path, vad_model())
    assert message in compile_fails(tmp_path, capsys, path, *args)
    with pytest.raises(SystemExit) as exc:
        main([str(path), "--check", *args])
    assert exc.value.code == 2 and message in capsys.readouterr().err

"""Cell recognition (compiler/frontend/cells.py): recurrent cells shipped as plain ONNX arithmetic
become one-step LSTM, GRU and RNN nodes that compute the same, near misses stay as they were.

The PyTorch forms are committed under tests/data/cells (made by make_cells.py): nn.LSTMCell,
nn.GRUCell and nn.RNNCell (tanh and relu), one step with the state as inputs and outputs and a
Python loop from zero state, both exporters. The TensorFlow forms are built by cell_models.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from compiler.cli import main as compile_main
from compiler.frontend.cells import recognise_cells
from compiler.frontend.graph_view import GraphView, at, attributes
from compiler.frontend.rechain import reroll_layers
from compiler.pipeline import compile_model
from isa.errors import RnnaccelError
from runtime_sim import simulator_for

from cell_models import BATCH, HIDDEN, tf_lstm
from toolchain import TOLERANCE, assert_close, float_outputs, random_inputs

CELLS = Path(__file__).resolve().parent / "data" / "cells"
RECHAIN = CELLS.parent / "rechain"
EXPORTED = CELLS.parent / "exported"
RECURRENT = ("LSTM", "GRU", "RNN")
# nn.RNN stacks as dynamo writes them (a projection of the sequence, then arithmetic per step):
# the re-rolled layers' directions, lowest layer first, and the steps per layer
STACKS = {"exported/rnn-stack2-bi-state-seq-dynamo": (("forward", "reverse") * 2, 7),
          "exported/rnn-stack3-bi-last-dynamo": (("forward", "reverse") * 3, 7),
          "cells/rnn-seq2-bi-state-dynamo": (("forward", "reverse") * 2, 5),
          "cells/rnn-seq3-bi-relu-dynamo": (("forward", "reverse") * 3, 5),
          "cells/rnn-seq2-state-dynamo": (("forward",) * 2, 5)}
TORCH_FORMS = sorted(p for p in CELLS.glob("*.onnx") if f"cells/{p.stem}" not in STACKS)  # one layer each


def _inputs(path: Path) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float32) for k, v in np.load(path.with_suffix(".npz")).items()}


def _steps(path: Path, inputs: dict[str, np.ndarray]) -> int:
    """One node for a step; one per time step of the (batch-first) input for a loop."""
    return inputs["x"].shape[1] if "-step-" not in path.stem else 1


def _recurrent(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type in RECURRENT]


def _assert_same_function(original: onnx.ModelProto, rewritten: onnx.ModelProto, inputs: dict) -> None:
    want, got = float_outputs(original, inputs), float_outputs(rewritten, inputs)
    for name, value in want.items():
        assert np.abs(got[name] - value).max() <= 1e-5 * max(1.0, float(np.abs(value).max())), name


@pytest.mark.parametrize("path", TORCH_FORMS, ids=lambda p: p.stem)
def test_torch_cells_become_one_step_nodes_that_compute_the_same(path):
    model, inputs = onnx.load(str(path)), _inputs(path)
    rewritten, notes = recognise_cells(model)
    kind = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[path.stem.removeprefix("kws-").split("-")[0]]
    assert [n.op_type for n in _recurrent(rewritten)] == [kind] * _steps(path, inputs)
    assert len(notes) == 1 and f" {kind} " in notes[0]
    _assert_same_function(model, rewritten, inputs)


@pytest.mark.parametrize("path", [p for p in TORCH_FORMS if not p.stem.startswith("kws")], ids=lambda p: p.stem)
def test_torch_cells_compile_and_run_bit_exactly(path):
    assert_close(onnx.load(str(path)), _inputs(path))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("tag", ["script", "dynamo"])
def test_a_keyword_spotting_cell_loop_costs_what_the_layer_costs(cell, tag):
    """nn.LSTMCell / nn.GRUCell over 49 frames: recognised step by step, then re-rolled into one
    layer (frontend/rechain.py): the weights of the nn.LSTM / nn.GRU model of the same shape
    (tests/data/rechain), once, and its MAC utilisation, bit-exact."""
    path = CELLS / f"kws-{cell}-loop-{tag}.onnx"
    layer = RECHAIN / f"kws-{cell}-sequence-{tag}.onnx"
    looped = assert_close(onnx.load(str(path)), _inputs(path))
    whole = assert_close(onnx.load(str(layer)), dict(np.load(layer.with_suffix(".npz"))))
    assert [row["op"] for row in looped.compiled.report["layers"]] == [cell, "fc"]
    regions = [{r.name: len(r.data) for r in c.compiled.program.regions} for c in (looped, whole)]
    assert regions[0] == regions[1]
    assert looped.compiled.report["total"]["stored_bytes"] == whole.compiled.report["total"]["stored_bytes"]
    assert looped.stats["mac_utilization"] >= whole.stats["mac_utilization"] - 0.01


def test_relu_cells_keep_their_activation():
    rewritten, _ = recognise_cells(onnx.load(str(CELLS / "rnn-relu-step-script.onnx")))
    (node,) = _recurrent(rewritten)
    assert [a.strings for a in node.attribute if a.name == "activations"] == [[b"Relu"]]


def test_pytorch_grus_reset_after_the_recurrent_product():
    rewritten, _ = recognise_cells(onnx.load(str(CELLS / "gru-step-dynamo.onnx")))
    (node,) = _recurrent(rewritten)
    assert onnx.helper.get_attribute_value(next(a for a in node.attribute if a.name == "linear_before_reset")) == 1


@pytest.mark.parametrize("stem", ["lstm-step-script", "lstm-step-dynamo"])
def test_state_inputs_and_outputs_become_the_states_of_the_step(stem):
    rewritten, _ = recognise_cells(onnx.load(str(CELLS / f"{stem}.onnx")))
    made = {out: n for n in rewritten.graph.node for out in n.output}
    (lstm,) = _recurrent(rewritten)
    assert [made[lstm.input[k]].input[0] for k in (0, 5, 6)] == ["x", "h", "c"]
    squeezed = {n.output[0]: n.input[0] for n in rewritten.graph.node if n.op_type == "Squeeze"}
    assert (squeezed["h_out"], squeezed["c_out"]) == (lstm.output[1], lstm.output[2])
    assert lstm.input[4] == "" and lstm.output[0] == ""


@pytest.mark.parametrize("stem", ["lstm-loop-script", "lstm-loop-dynamo", "gru-loop-dynamo", "rnn-tanh-loop-script"])
def test_a_loop_from_zero_state_shares_one_set_of_weights_and_starts_without_a_state(stem):
    rewritten, _ = recognise_cells(onnx.load(str(CELLS / f"{stem}.onnx")))
    nodes = _recurrent(rewritten)
    assert len({tuple(n.input[1:4]) for n in nodes}) == 1
    assert len(nodes[0].input) <= 5 and all(n.input[5] for n in nodes[1:])
    names = {t.name for t in rewritten.graph.initializer}
    assert all(name.startswith(f"cell/{w}/") and name in names for name, w in zip(nodes[0].input[1:4], "WRB"))


def test_the_compiler_logs_what_it_recognised():
    path = CELLS / "gru-step-script.onnx"
    lines = []
    compile_model(onnx.load(str(path)), calibration={k: v[None] for k, v in _inputs(path).items()},
                  log=lines.append)
    assert any(line.startswith("recognised 1 GRU cell (hidden 8) in Gemm/") for line in lines)


TF_FORMS = [("keras", None, False), ("tf1", None, False), ("keras", "flat", False), ("tf1", "stacked", False),
            ("tf1", None, True)]


@pytest.mark.parametrize(("order", "packing", "sliced"), TF_FORMS)
def test_tensorflow_cells_become_an_lstm_step_between_their_layout_nodes(order, packing, sliced):
    model = tf_lstm(order, packing, sliced=sliced)
    inputs = random_inputs(model, seed=1)
    rewritten, notes = recognise_cells(model)
    assert len(_recurrent(rewritten)) == 1 and "in Concat/MatMul/Add/" in notes[0]
    assert not {"MatMul", "Split", "Sigmoid"} & {n.op_type for n in rewritten.graph.node}
    assert [n.op_type for n in rewritten.graph.node].count("Slice") == (2 if packing else 0)
    _assert_same_function(model, rewritten, inputs)
    assert_close(model, inputs)


def test_a_cell_before_opset_13_squeezes_with_an_attribute():
    model = tf_lstm(opset=11)
    rewritten, _ = recognise_cells(model)
    reshapes = [n for n in rewritten.graph.node if n.op_type in ("Squeeze", "Unsqueeze")]
    assert reshapes and all(len(n.input) == 1 and n.attribute[0].ints == [0] for n in reshapes)
    _assert_same_function(model, rewritten, random_inputs(model, seed=2))


def _exposing(model: onnx.ModelProto, tensor: str) -> onnx.ModelProto:
    """The model with one of the cell's intermediate tensors also a graph output."""
    model.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, [BATCH, HIDDEN]))
    return model


NEAR_MISSES = {
    "hardsigmoid output gate": lambda: tf_lstm(near_miss="hardsigmoid"),
    "extra term in the cell state": lambda: tf_lstm(near_miss="extra"),
    "layer norm on the gates": lambda: tf_lstm(near_miss="layernorm"),
    "a gate read outside the cell": lambda: _exposing(tf_lstm(), "i"),
    # Relu(Gemm(x)) and Tanh(Gemm(x)) compute an RNN step from zero state, but nothing recurs
    "a Linear + ReLU layer (mlp-script)": lambda: onnx.load(str(EXPORTED / "mlp-script.onnx")),
    "a Linear + ReLU layer (mlp-dynamo)": lambda: onnx.load(str(EXPORTED / "mlp-dynamo.onnx")),
}


@pytest.mark.parametrize("make", NEAR_MISSES.values(), ids=NEAR_MISSES.keys())
def test_near_misses_still_compile_node_by_node_and_correctly(make):
    """What is not a cell compiles as it is (node by node), close to ONNX Runtime."""
    model = make()
    inputs = random_inputs(model, seed=5)
    program = compile_model(model, calibration=random_inputs(model, seed=6, samples=16)).program
    got = simulator_for(program).run(inputs).outputs
    for name, want in float_outputs(model, inputs).items():
        assert np.max(np.abs(got[name] - want)) <= TOLERANCE[8] * max(1.0, float(np.max(np.abs(want)))), name


@pytest.mark.parametrize("make", NEAR_MISSES.values(), ids=NEAR_MISSES.keys())
def test_near_misses_stay_exactly_as_they_were(make):
    model = make()
    rewritten, notes = recognise_cells(model)
    assert [n.SerializeToString() for n in rewritten.graph.node] == [n.SerializeToString() for n in model.graph.node]
    assert notes == []
    _assert_same_function(model, rewritten, random_inputs(model, seed=4))


def test_a_sequence_projected_at_once_is_projected_per_step():
    """The dynamo export of nn.RNN projects all steps in one MatMul and slices it per step: each
    step gets its own projection, and the sequence's MatMul goes once no slice reads it."""
    rewritten, _ = recognise_cells(onnx.load(str(CELLS / "rnn-seq-dynamo.onnx")))
    assert "MatMul" not in {n.op_type for n in rewritten.graph.node}
    made = {out: n.op_type for n in rewritten.graph.node for out in n.output}
    assert all(made[n.input[0]] == "Unsqueeze" for n in _recurrent(rewritten))


def test_a_sequence_projection_stays_when_one_step_is_no_cell():
    model = onnx.load(str(CELLS / "rnn-seq-dynamo.onnx"))
    next(n for n in reversed(model.graph.node) if n.op_type == "Tanh").op_type = "Sigmoid"
    rewritten, notes = recognise_cells(model)
    assert notes == [] and rewritten.graph.node == model.graph.node


def test_only_the_direction_with_a_step_that_is_no_cell_stays_in_a_stack():
    """The last step of the upper reverse direction made a Sigmoid: that direction keeps its
    projection and its arithmetic, node for node; the other three directions become RNN steps."""
    model = onnx.load(str(CELLS / "rnn-seq2-bi-state-dynamo.onnx"))
    changed = next(n for n in reversed(model.graph.node) if n.op_type == "Tanh")
    changed.op_type = "Sigmoid"
    lower, upper = [n for n in model.graph.node if n.op_type == "Slice" and len(n.input) == 5]  # the flips
    rewritten, notes = recognise_cells(model)
    kept = {n.SerializeToString() for n in rewritten.graph.node}
    assert len(_recurrent(rewritten)) == 3 * 5 and len(notes) == 1
    assert {changed.SerializeToString(), upper.SerializeToString()} <= kept
    assert lower.SerializeToString() not in kept
    _assert_same_function(model, rewritten, _inputs(CELLS / "rnn-seq2-bi-state-dynamo.onnx"))


@pytest.mark.parametrize("stem", sorted(STACKS))
def test_stacked_and_bidirectional_rnns_become_a_layer_per_direction(stem):
    """Every step of every direction of every layer is recognised; each direction re-rolls into a
    layer (a reverse one where the steps read the sequence last to first) that starts from the
    graph's h0 when the model has one, and the model computes what the export does, bit-exactly."""
    path = CELLS.parent / f"{stem}.onnx"
    model, inputs = onnx.load(str(path)), _inputs(path)
    directions, steps = STACKS[stem]
    recognised, _ = recognise_cells(model)
    assert len(_recurrent(recognised)) == len(directions) * steps
    rerolled, notes = reroll_layers(recognised)
    layers = _recurrent(rerolled)
    assert tuple(attributes(n).get("direction", b"forward").decode() for n in layers) == directions
    view = GraphView(rerolled)
    assert all(("h0" in inputs) == any("h0" in view.nodes[i].input for i in view.ancestors(at(n.input, 5)))
               for n in layers)
    _assert_same_function(model, rerolled, inputs)
    assert_close(model, inputs)


def test_a_state_read_before_its_step_ends_is_read_after_the_new_node():
    model = tf_lstm()
    position = next(i for i, n in enumerate(model.graph.node) if n.output[0] == "c_new") + 1
    model.graph.node.insert(position, onnx.helper.make_node("Identity", ["c_new"], ["c_copy"]))
    model.graph.output.append(onnx.helper.make_tensor_value_info("c_copy", onnx.TensorProto.FLOAT, (BATCH, HIDDEN)))
    rewritten, _ = recognise_cells(model)
    onnx.checker.check_model(rewritten)  # every node after what it reads
    assert len(_recurrent(rewritten)) == 1
    _assert_same_function(model, rewritten, random_inputs(model, seed=5))


def test_a_loop_with_a_symbolic_batch_is_recognised_once_shape_fixes_it():
    """--shape is written into the model before the rewrites, which need static shapes."""
    path = CELLS / "lstm-loop-script.onnx"
    model, inputs = onnx.load(str(path)), _inputs(path)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    log: list[str] = []
    compiled = compile_model(model, calibration={k: v[None] for k, v in inputs.items()},
                             shapes={"x": inputs["x"].shape}, log=log.append)
    assert any(line.startswith("recognised") for line in log) and any(line.startswith("re-rolled") for line in log)
    assert [row["op"] for row in compiled.report["layers"]] == ["lstm", "fc"]
    with pytest.raises(RnnaccelError, match=r"--shape x=2,4,6 does not match the model's shape \[\?,5,6\]"):
        compile_model(model, shapes={"x": (2, 4, 6)})


def test_check_judges_the_model_as_the_compiler_reads_it(capsys):
    """--check runs the same rewrites: the LSTMCell loop's 49 copies of the weights, which alone
    would not fit the target, are one layer's."""
    with pytest.raises(SystemExit) as exit_info:
        compile_main([str(CELLS / "kws-lstm-loop-dynamo.onnx"), "--check"])
    captured = capsys.readouterr()
    assert exit_info.value.code == 0 and "all 4 nodes supported" in captured.out
    assert "recognised 49 LSTM cells" in captured.err and "re-rolled 49 one-step LSTM nodes" in captured.err

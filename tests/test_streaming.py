"""Streaming programs (rnnaccel-compile --streaming): frame by frame they must compute, bit for
bit, what the whole-sequence program computes, and they refuse what a stream cannot do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from compiler.cli import main as compile_main
from compiler.passes.budget import Budget
from compiler.passes.compress import Compression
from compiler.pipeline import compile_model
from isa.assembler import assemble
from isa.container import from_bytes, to_bytes
from isa.errors import RnnaccelError
from isa.listing import disassemble
from isa.target import Target
from isa.tensors import StateDesc
from runtime_sim import Simulator

from models import _info, _model, recurrent_model
from toolchain import TOLERANCE, float_outputs, random_inputs, run_checked

KWS = Path(__file__).resolve().parents[1] / "examples" / "kws"


def _frames(x: np.ndarray, axis: int):
    """The one-frame slices of x along `axis` (counted without the sample axis)."""
    for t in range(x.shape[axis + 1]):
        yield np.take(x, [t], axis=axis + 1)


def _stream(program, x: np.ndarray, axis: int, name: str = "X") -> list[dict[str, np.ndarray]]:
    stream = Simulator(program).stream(samples=len(x))
    return [stream.step({name: frame}).raw_outputs for frame in _frames(x, axis)]


CASES = {
    "lstm": {"op": "LSTM"},
    "lstm-peepholes-clip": {"op": "LSTM", "peepholes": True, "clip": 2.0},
    "lstm-input-forget-layout1": {"op": "LSTM", "input_forget": 1, "layout": 1},
    "gru": {"op": "GRU"},
    "gru-linear-before-reset": {"op": "GRU", "linear_before_reset": 1},
    "rnn-relu": {"op": "RNN", "activations": ["Relu"]},
}


@pytest.mark.parametrize("case", CASES)
def test_every_frame_matches_the_whole_sequence(case):
    """Y at frame t, and the states after it, equal the whole-sequence program's step t."""
    spec = dict(CASES[case])
    op, layout = spec.pop("op"), spec.get("layout", 0)
    steps, batch, hidden = 7, 2, 24
    model = recurrent_model(op, steps, batch, 5, hidden, seed=3, **spec)
    calib = random_inputs(model, seed=4, samples=6)
    x = random_inputs(model, seed=5, samples=3)["X"]
    whole = Simulator(compile_model(model, calibration=calib).program).run({"X": x}, batch=True).raw_outputs
    frames = _stream(compile_model(model, calibration=calib, streaming=True).program, x, axis=layout)
    time_axis = 1 + layout
    for t, out in enumerate(frames):
        np.testing.assert_array_equal(out["Y"], np.take(whole["Y"], [t], axis=time_axis), err_msg=f"Y at {t}")
    np.testing.assert_array_equal(frames[-1]["Y_h"], whole["Y_h"])
    if op == "LSTM":
        np.testing.assert_array_equal(frames[-1]["Y_c"], whole["Y_c"])


@pytest.mark.parametrize("name", ["kws_lstm64", "kws_gru64", "kws_lstm128x2"])
def test_keyword_spotters_agree_after_49_frames(name):
    """The trained models: the logits after the 49th frame are the whole-sequence logits."""
    calib = dict(np.load(KWS / "calib.npz"))
    x = np.load(KWS / "test.npz")["x"][::150]
    model = KWS / f"{name}.onnx"
    whole = Simulator(compile_model(model, calibration=calib).program).run({"mfcc": x}, batch=True)
    program = compile_model(model, calibration=calib, streaming=True).program
    assert program.inputs[0].shape == (1, 1, 10)
    frames = _stream(program, x, axis=1, name="mfcc")
    assert len(frames) == 49
    np.testing.assert_array_equal(frames[-1]["logits"], whole.raw_outputs["logits"])


def test_first_frame_is_bit_exact_and_round_trips():
    """A fresh stream is the golden reference from zero state; .state survives objdump -> as."""
    model = recurrent_model("LSTM", 5, 1, 4, 16, seed=1, peepholes=True)
    calib = random_inputs(model, 2, samples=2)
    frame = {"X": calib["X"][0, :1]}
    program = run_checked(model, frame, calibration=calib, streaming=True).compiled.program
    assert program.inputs[0].shape == (1, 1, 4)
    assert [s.name for s in program.state] == ["state:lstm/d0/h", "state:lstm/d0/c"]
    assert from_bytes(to_bytes(program)).state == program.state


def test_state_lives_apart_from_scratch():
    """No other activation buffer may share the state's addresses: it must outlive every run."""
    model = recurrent_model("GRU", 6, 1, 8, 32, seed=2, outputs=["Y_h"])
    program = compile_model(model, calibration=random_inputs(model, 1, samples=2), streaming=True).program
    (state,) = program.state
    env = program.target.env()
    written = [i.mnemonic for i in program.code for mem, addr, n in i.footprint(env)[1]
               if mem == "amem" and addr < state.address + state.size and state.address < addr + n]
    assert written == ["VMOV"], "only the end-of-run copy writes h"


def test_reset_starts_a_new_stream():
    model = recurrent_model("LSTM", 4, 1, 3, 8, seed=6, outputs=["Y_h"])
    program = compile_model(model, calibration=random_inputs(model, 1, samples=2), streaming=True).program
    stream = Simulator(program).stream()
    frames = [np.random.default_rng(t).standard_normal((1, 1, 3)).astype(np.float32) for t in range(4)]
    first = [stream.step({"X": f}).raw_outputs["Y_h"] for f in frames]
    assert not np.array_equal(first[0], first[1])
    stream.reset()
    again = [stream.step({"X": f}).raw_outputs["Y_h"] for f in frames]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_stream_errors():
    model = recurrent_model("RNN", 3, 1, 2, 8, seed=6)
    whole = Simulator(compile_model(model, calibration=random_inputs(model, 1, samples=2)).program)
    with pytest.raises(RnnaccelError, match="compile it with --streaming"):
        whole.stream()
    program = compile_model(model, calibration=random_inputs(model, 1, samples=2), streaming=True).program
    with pytest.raises(RnnaccelError, match="the stream has 2 samples but the inputs have 3"):
        Simulator(program).stream(samples=2).step({"X": np.zeros((3, 1, 1, 2), np.float32)})
    with pytest.raises(RnnaccelError, match=r"has shape \(3, 1, 2\)"):
        Simulator(program).stream().step({"X": np.zeros((3, 1, 2), np.float32)})


def _two_lengths() -> onnx.ModelProto:
    a, b = (recurrent_model("RNN", steps, 1, 3, 4, seed=steps) for steps in (3, 5))
    nodes, inits = [], {}
    for prefix, m in (("a", a), ("b", b)):
        node = m.graph.node[0]
        for init in m.graph.initializer:
            inits[f"{prefix}{init.name}"] = onnx.numpy_helper.to_array(init)
        nodes.append(helper.make_node("RNN", [f"{prefix}{n}" if n else "" for n in node.input], [f"{prefix}Y"],
                                      hidden_size=4, name=f"{prefix}rnn"))
    return _model(nodes, [_info("aX", (3, 1, 3)), _info("bX", (5, 1, 3))],
                  [_info("aY", (3, 1, 1, 4)), _info("bY", (5, 1, 1, 4))], inits)


def _reshaped_time() -> onnx.ModelProto:
    """The time axis comes from a Reshape of a flat input: no input axis is time."""
    rnn = recurrent_model("RNN", 5, 1, 4, 8, seed=1)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in rnn.graph.initializer}
    inits["shape"] = np.array([5, 1, 4], np.int64)
    nodes = [helper.make_node("Reshape", ["flat", "shape"], ["X"], name="reshape"), rnn.graph.node[0]]
    return _model(nodes, [_info("flat", (20,))], list(rnn.graph.output), inits)


def _time_in_two_shape_entries() -> onnx.ModelProto:
    """X [5, 1, 10] goes through the constant shape [5, 1, 2, 5]: two entries of the 5 steps."""
    rnn = recurrent_model("RNN", 5, 1, 10, 8, seed=1)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in rnn.graph.initializer}
    inits |= {"split": np.array([5, 1, 2, 5], np.int64), "back": np.array([5, 1, 10], np.int64)}
    nodes = [helper.make_node("Reshape", ["X0", "split"], ["S"], name="unflatten"),
             helper.make_node("Reshape", ["S", "back"], ["X"]), rnn.graph.node[0]]
    return _model(nodes, [_info("X0", (5, 1, 10))], list(rnn.graph.output), inits)


def _mean_over_time() -> onnx.ModelProto:
    """A ReduceMean over the LSTM's time axis: one frame per run would average one step."""
    lstm = recurrent_model("LSTM", 4, 1, 3, 8, seed=4, outputs=["Y"])
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in lstm.graph.initializer}
    nodes = [lstm.graph.node[0], helper.make_node("ReduceMean", ["Y"], ["mean"], axes=[0], keepdims=0, name="mean")]
    return _model(nodes, list(lstm.graph.input), [_info("mean", (1, 1, 8))], inits)


REFUSED = {
    "no recurrent layer": (lambda: _model([helper.make_node("Relu", ["x"], ["y"])], [_info("x", (2, 3))],
                                          [_info("y", (2, 3))], {}), "needs a recurrent layer"),
    "bidirectional": (lambda: recurrent_model("GRU", 4, 1, 3, 8, direction="bidirectional"),
                      "runs forward/reverse; a reverse direction needs"),
    "reverse": (lambda: recurrent_model("LSTM", 4, 1, 3, 8, direction="reverse"), "runs reverse"),
    "unbound initial state": (lambda: recurrent_model("LSTM", 4, 1, 3, 8, initial=True, outputs=["Y"]),
                              "takes its initial state from 'h0', which no state pair carries"),
    "sequence lengths": (lambda: recurrent_model("GRU", 4, 2, 3, 8, seq_lens=[4, 2]), "has sequence_lens"),
    "ambiguous time axis": (lambda: recurrent_model("RNN", 3, 3, 3, 8), "several axes of 3"),
    "different lengths": (_two_lengths, r"different numbers of steps \(\[3, 5\]\)"),
    "time from a reshape": (_reshaped_time, "still runs 5 steps"),
    "mean over time": (_mean_over_time, "node 'mean' \\(reduce\\) reduces across time steps"),
    "time twice in a constant shape": (_time_in_two_shape_entries, r"the constant shape 'split' \[5, 1, 2, 5\] of "
                                       r"node 'unflatten' \(Reshape\) has several entries of 5"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refused(case):
    make, message = REFUSED[case]
    model = make()
    with pytest.raises(RnnaccelError, match=message):
        compile_model(model, calibration=random_inputs(model, 1, samples=2), streaming=True)


@pytest.mark.parametrize("case", ["time twice in a constant shape", "mean over time"])
def test_refused_before_compress_auto_searches(case):
    make, message = REFUSED[case]
    model, lines = make(), []
    with pytest.raises(RnnaccelError, match=message):
        compile_model(model, calibration=random_inputs(model, 1, samples=2), streaming=True,
                      compression=Budget(None, 0.5), log=lines.append)
    assert not any("choosing the compression" in line for line in lines)


def test_cli_streaming(tmp_path, capsys):
    model = recurrent_model("LSTM", 6, 1, 4, 16, seed=3, outputs=["Y_h"])
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz", **random_inputs(model, 2, samples=3))
    with pytest.raises(SystemExit) as exit_info:
        compile_main([str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.rnna"), "--streaming",
                      "--calibration", str(tmp_path / "calib.npz"), "--listing", str(tmp_path / "m.s")])
    assert exit_info.value.code == 0
    assert "streaming: one frame per run; 32 elements of state" in capsys.readouterr().out
    assert '.state name="state:lstm/d0/h" address=' in (tmp_path / "m.s").read_text()
    onnx.save(recurrent_model("GRU", 4, 1, 3, 8, direction="reverse"), tmp_path / "rev.onnx")
    with pytest.raises(SystemExit) as exit_info:
        compile_main([str(tmp_path / "rev.onnx"), "-o", str(tmp_path / "rev.rnna"), "--streaming"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "runs reverse" in err and len(err.strip().splitlines()) == 1 + err.count("calibrating")
    assert not (tmp_path / "rev.rnna").exists()


def test_corrupted_state_is_refused():
    model = recurrent_model("RNN", 3, 1, 2, 8, seed=6, outputs=["Y_h"])
    program = compile_model(model, calibration=random_inputs(model, 1, samples=2), streaming=True).program
    size = program.target.act_elems
    bad = program.__class__(**{**vars(program), "state": (StateDesc("h", size - 4, 8),)})
    with pytest.raises(RnnaccelError, match=r"state 'h' at amem range"):
        Simulator(from_bytes(to_bytes(bad))).stream()
    listing = disassemble(program).replace("size=8", "size=0")
    with pytest.raises(RnnaccelError, match="size positive"):
        assemble(listing)
    empty = program.__class__(**{**vars(program), "state": (StateDesc("h", 0, 0),)})
    with pytest.raises(RnnaccelError, match="corrupted program: META is malformed"):
        from_bytes(to_bytes(empty))


def test_compressed_and_wide_streaming_programs_match_too():
    """The stream reuses the whole-sequence quantisation, codebooks included, on any target."""
    model = recurrent_model("GRU", 6, 1, 5, 24, seed=9, linear_before_reset=1, outputs=["Y_h"])
    calib = random_inputs(model, seed=1, samples=4)
    x = random_inputs(model, seed=2, samples=3)["X"]
    settings = {"target": Target(macs=128, weight_bits=16), "compression": Compression(3)}
    whole = Simulator(compile_model(model, calibration=calib, **settings).program).run({"X": x}, batch=True)
    frames = _stream(compile_model(model, calibration=calib, streaming=True, **settings).program, x, axis=0)
    np.testing.assert_array_equal(frames[-1]["Y_h"], whole.raw_outputs["Y_h"])


EXPORTED = Path(__file__).resolve().parent / "data" / "exported"
# rnn-*-dynamo: nn.RNN exported by dynamo as a MatMul and a Tanh per step, recognised as RNN steps
# (frontend/cells.py) and re-rolled into layers (frontend/rechain.py); a reverse direction unrolled
# becomes a reverse layer
STREAMED_EXPORTS = ("lstm-last-script", "lstm-last-dynamo", "gru-last-script", "gru-last-dynamo", "rnn-last-script",
                    "rnn-last-dynamo", "lstm-kws-dynamo")
REFUSED_EXPORTS = {**{f"{cell}-{config}-{exporter}": "runs forward/reverse" for cell in ("lstm", "gru", "rnn")
                      for config in ("stack2-bi-state-seq", "stack3-bi-last") for exporter in ("script", "dynamo")},
                   **{f"rnn-{config}-dynamo": "runs reverse" for config in ("stack2-bi-state-seq", "stack3-bi-last")},
                   **dict.fromkeys(("mlp-script", "mlp-dynamo"), "needs a recurrent layer")}


def _exported(stem: str) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    data = {k: v.astype(np.float32) for k, v in np.load(EXPORTED / f"{stem}.npz").items()}
    return onnx.load(str(EXPORTED / f"{stem}.onnx")), data


def test_every_export_is_streamed_or_refused():
    assert {p.stem for p in EXPORTED.glob("*.onnx")} == set(STREAMED_EXPORTS) | set(REFUSED_EXPORTS)


@pytest.mark.parametrize("stem", STREAMED_EXPORTS)
def test_an_exported_model_streams_to_the_whole_sequence_result(stem):
    """Frame by frame, the outputs after the last frame are the whole-sequence program's, bit for bit,
    and close to ONNX Runtime's: the dynamo exports' constant shapes of T steps become one frame's
    (compiler/frontend/frames.py)."""
    model, inputs = _exported(stem)
    calib = {k: v[None] for k, v in inputs.items()}
    whole = Simulator(compile_model(model, calibration=calib).program).run(inputs).raw_outputs
    program = compile_model(model, calibration=calib, streaming=True).program
    (name, x), desc = next(iter(inputs.items())), program.inputs[0]
    axis = next(a for a, (full, one) in enumerate(zip(x.shape, desc.shape)) if full != one)
    assert desc.shape[axis] == 1
    stream = Simulator(program).stream(samples=1)
    for frame in _frames(x[None], axis):
        last = stream.step({name: frame})
    for output, want in float_outputs(model, inputs).items():
        np.testing.assert_array_equal(last.raw_outputs[output], whole[output][None], err_msg=output)
        assert np.max(np.abs(last.outputs[output][0] - want)) <= TOLERANCE[8] * max(1.0, float(np.max(np.abs(want))))


@pytest.mark.parametrize("stem", sorted(REFUSED_EXPORTS))
def test_an_exported_model_that_cannot_stream_is_refused(stem):
    model, inputs = _exported(stem)
    with pytest.raises(RnnaccelError, match=REFUSED_EXPORTS[stem]):
        compile_model(model, calibration={k: v[None] for k, v in inputs.items()}, streaming=True)

"""Streaming models that carry their own state, `(frame, state) -> (y, state')`: the pairs are
bound on chip (passes/streaming.py, frontend/state.py). Each model streams 100 frames through
`Simulator.stream()` bit-exact against the same quantisation run with the state fed back by the
host, and against the golden reference's closed loop, and within tolerance of ONNX Runtime run
closed loop; save and restore of the state, partitioned programs, and every refusal."""

from __future__ import annotations

import dataclasses
import struct
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from compiler.cli import main as compile_main
from compiler.pipeline import compile_model
from compiler.reference import reference_stream
from isa import programfile
from isa.assembler import assemble
from isa.errors import RnnaccelError
from isa.listing import disassemble
from runtime_sim import Simulator, simulator_for
from tests.cell_models import tf_lstm
from tests.cli_checks import compile_fails, save
from tests.models import recurrent_model
from tests.packed_models import packed_lstm
from tests.state_models import vad_model
from tests.toolchain import TOLERANCE, float_outputs

DATA = Path(__file__).parent / "data"
STATE = DATA / "state"
# per-frame exports with their state as inputs and outputs -> the pairs streaming finds: nn.LSTM /
# nn.GRU called on one frame, and nn.LSTMCell / GRUCell / RNNCell steps (recognised as layers)
EXPECTED = {"state/lstm-hc": {"h": "h_out", "c": "c_out"}, "state/lstm-packed": {"state": "state_out"},
            "state/gru-h": {"h": "h_out"}, "cells/lstm-step": {"h": "h_out", "c": "c_out"},
            "cells/gru-step": {"h": "h_out"}, "cells/rnn-tanh-step": {"h": "h_out"}}
EXPORTS = [f"{stem}-{tag}" for stem in EXPECTED for tag in ("script", "dynamo")]
FRAMES = 100


def _frames(model: onnx.ModelProto, count: int, seed: int, streams: int | None = None) -> dict[str, np.ndarray]:
    """Random frames for every input but the state ones, [count, *shape] (or [streams, count, ...])."""
    rng = np.random.default_rng(seed)
    lead = (count,) if streams is None else (streams, count)
    return {v.name: rng.standard_normal(lead + _shape(v)).astype(np.float32) for v in model.graph.input
            if not v.name.startswith(("h", "c", "state", "cache"))}


def _shape(value: onnx.ValueInfoProto) -> tuple[int, ...]:
    return tuple(d.dim_value for d in value.type.tensor_type.shape.dim)


def _float_loop(model: onnx.ModelProto, frames: dict[str, np.ndarray], pairs: dict[str, str]) -> list[dict]:
    """ONNX Runtime run closed loop on its own state, from zeros."""
    shapes = {v.name: _shape(v) for v in model.graph.input}
    state = {name: np.zeros(shapes[name], np.float32) for name in pairs}
    outs = []
    for t in range(len(next(iter(frames.values())))):
        outs.append(float_outputs(model, {**{k: v[t] for k, v in frames.items()}, **state}))
        state = {name: outs[-1][output] for name, output in pairs.items()}
    return outs


def _host_loop(program, frames: dict[str, np.ndarray], pairs: dict[str, str]) -> list:
    """A program that takes its state as inputs, run with the host feeding its outputs back."""
    sim = simulator_for(program)
    state = {name: np.zeros(next(p.shape for p in sim.inputs if p.name == name), np.float32) for name in pairs}
    results = []
    for t in range(len(next(iter(frames.values())))):
        results.append(sim.run({**{k: v[t] for k, v in frames.items()}, **state}))
        state = {name: results[-1].outputs[output] for name, output in pairs.items()}
    return results


def _streamed(model: onnx.ModelProto, seed: int = 0, **options):
    calibration = _frames(model, 40, seed=seed + 1, streams=4)
    log: list[str] = []
    compiled = compile_model(model, calibration=calibration, streaming=True, log=log.append, **options)
    return compiled, calibration, log


def _pairs(program) -> dict[str, str]:
    return {s.name: s.output for s in program.state if s.output}


@pytest.mark.parametrize("name", EXPORTS)
def test_exported_state_models_stream_bit_exact_against_the_host_loop(name):
    model = onnx.load(DATA / f"{name}.onnx")
    compiled, calibration, log = _streamed(model)
    pairs = _pairs(compiled.program)
    assert pairs == EXPECTED[name.rsplit("-", 1)[0]] and any("kept on chip between runs" in line for line in log)
    assert [d.name for d in compiled.program.inputs] == ["x"] and [d.name for d in compiled.program.outputs] == ["y"]
    frames = _frames(model, FRAMES, seed=2)
    stream = Simulator(compiled.program).stream()
    streamed = [stream.step({k: v[t] for k, v in frames.items()}) for t in range(FRAMES)]
    host = compile_model(model, calibration=calibration, states=pairs).program
    for t, (chip, fed) in enumerate(zip(streamed, _host_loop(host, frames, pairs))):
        np.testing.assert_array_equal(chip.raw_outputs["y"], fed.raw_outputs["y"], err_msg=f"frame {t}")
    golden = reference_stream(compiled.graph, [{k: v[t][None] for k, v in frames.items()} for t in range(FRAMES)])
    assert all(np.array_equal(s.raw_outputs["y"], g["y"][0]) for s, g in zip(streamed, golden))
    floats = _float_loop(model, frames, pairs)
    worst = max(float(np.max(np.abs(s.outputs["y"] - f["y"]))) for s, f in zip(streamed, floats))
    assert worst <= TOLERANCE[8] * max(1.0, *(float(np.max(np.abs(f["y"]))) for f in floats)), worst


def test_packed_state_keeps_a_scale_per_slice_on_chip():
    """h and c side by side in [1, 1, hidden, 2]: the state keeps each slice's scale, and the
    stream equals the golden reference's closed loop and ONNX Runtime's within tolerance."""
    model = packed_lstm()
    compiled, _, _ = _streamed(model)
    (state,) = compiled.program.state
    assert state.name == "state" and state.output == "state_out" and len(state.slices) == 2
    assert compiled.report["state"] == [{"name": "state", "output": "state_out", "shape": [1, 1, 8, 2],
                                         "elements": 16, "bytes": 32}]
    frames = _frames(model, FRAMES, seed=3)
    stream = Simulator(compiled.program).stream()
    streamed = [stream.step({"X": frames["X"][t]}) for t in range(FRAMES)]
    golden = reference_stream(compiled.graph, [{"X": frames["X"][t][None]} for t in range(FRAMES)])
    assert all(np.array_equal(s.raw_outputs["y"], g["y"][0]) for s, g in zip(streamed, golden))
    floats = _float_loop(model, frames, {"state": "state_out"})
    assert max(float(np.max(np.abs(s.outputs["y"] - f["y"]))) for s, f in zip(streamed, floats)) <= TOLERANCE[8]
    c = stream.state()["state"][..., 1]
    assert np.max(np.abs(c - floats[-1]["state_out"][..., 1])) <= 0.05 * max(1.0, float(np.max(np.abs(c))))


@pytest.mark.parametrize("packing", ["flat", "stacked"])
@pytest.mark.parametrize("order", ["keras", "tf1"])
def test_a_tensorflow_cell_with_packed_state_streams(packing, order):
    """One step of MatMul(Concat([x, h])) + Split, h and c packed in one tensor: recognised as an
    LSTM step (frontend/cells.py), its state pair found and kept on chip; the state output, kept on
    request, is bit-exact against the host loop and close to ONNX Runtime's closed loop."""
    model = tf_lstm(order=order, packing=packing)
    compiled, calibration, log = _streamed(model, state_outputs=True)
    assert _pairs(compiled.program) == {"state": "state_new"} and any("recognised 1 LSTM" in line for line in log)
    frames = _frames(model, FRAMES, seed=10)
    stream = Simulator(compiled.program).stream()
    streamed = [stream.step({"x": frames["x"][t]}) for t in range(FRAMES)]
    host = compile_model(model, calibration=calibration, states={"state": "state_new"}).program
    for t, (chip, fed) in enumerate(zip(streamed, _host_loop(host, frames, {"state": "state_new"}))):
        np.testing.assert_array_equal(chip.raw_outputs["state_new"], fed.raw_outputs["state_new"], err_msg=f"frame {t}")
    floats = _float_loop(model, frames, {"state": "state_new"})
    worst = max(float(np.max(np.abs(s.outputs["state_new"] - f["state_new"]))) for s, f in zip(streamed, floats))
    assert worst <= TOLERANCE[8] * max(1.0, *(float(np.max(np.abs(f["state_new"]))) for f in floats)), worst


def _window_model(features: int = 4, kernel: int = 3, outputs: int = 5) -> onnx.ModelProto:
    """A convolution over time written as a MatMul over a window of frames, its history buffer
    carried as state: window = [cache, x], y = window W, cache' = window without its oldest frame."""
    rng = np.random.default_rng(11)
    inits = {"W": (rng.standard_normal((kernel * features, outputs)) * 0.4).astype(np.float32),
             "start": np.array([features], np.int64), "end": np.array([kernel * features], np.int64),
             "axis": np.array([1], np.int64)}
    nodes = [helper.make_node("Concat", ["cache", "x"], ["window"], axis=1),
             helper.make_node("MatMul", ["window", "W"], ["y"]),
             helper.make_node("Slice", ["window", "start", "end", "axis"], ["cache_out"])]
    history = (1, (kernel - 1) * features)
    graph = helper.make_graph(nodes, "window", [_value("x", (1, features)), _value("cache", history)],
                              [_value("y", (1, outputs)), _value("cache_out", history)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _value(name: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(shape))


def test_a_history_buffer_read_only_on_chip_stays_on_chip():
    """State that is no recurrent layer's: a window of past frames, named with --state, bound on
    chip and stored (a copy) at the end of each run."""
    model = _window_model()
    compiled, _, _ = _streamed(model, states={"cache": "cache_out"})
    assert _pairs(compiled.program) == {"cache": "cache_out"}
    frames = _frames(model, 30, seed=12)
    stream = Simulator(compiled.program).stream()
    streamed = [stream.step({"x": frames["x"][t]}) for t in range(30)]
    golden = reference_stream(compiled.graph, [{"x": frames["x"][t][None]} for t in range(30)])
    assert all(np.array_equal(s.raw_outputs["y"], g["y"][0]) for s, g in zip(streamed, golden))
    floats = _float_loop(model, frames, {"cache": "cache_out"})
    assert max(float(np.max(np.abs(s.outputs["y"] - f["y"]))) for s, f in zip(streamed, floats)) <= TOLERANCE[8]


def test_many_streams_step_together_as_separate_streams_would():
    model = onnx.load(STATE / "lstm-hc-script.onnx")
    compiled, _, _ = _streamed(model)
    frames = _frames(model, 12, seed=4, streams=3)["x"]
    sim = Simulator(compiled.program)
    together = sim.stream(samples=3)
    batched = [together.step({"x": frames[:, t]}) for t in range(12)]
    for s in range(3):
        alone = sim.stream()
        for t in range(12):
            got = alone.step({"x": frames[s, t]}).raw_outputs["y"]
            np.testing.assert_array_equal(got, batched[t].raw_outputs["y"][s])


def test_state_is_saved_restored_and_reset_as_floats():
    model = onnx.load(STATE / "gru-h-dynamo.onnx")
    compiled, _, _ = _streamed(model)
    frames = _frames(model, 6, seed=5)["x"]
    stream = Simulator(compiled.program).stream()
    for t in range(5):
        stream.step({"x": frames[t]})
    saved = stream.state()
    assert saved["h"].shape == (1, 1, 16) and np.any(saved["h"])
    first = stream.step({"x": frames[5]}).raw_outputs["y"]
    stream.reset()
    assert not np.any(stream.state()["h"])
    stream.set_state(saved)
    np.testing.assert_array_equal(stream.step({"x": frames[5]}).raw_outputs["y"], first)
    with pytest.raises(RnnaccelError, match="unknown state"):
        stream.set_state({"hidden": saved["h"]})
    with pytest.raises(RnnaccelError, match=r"input 'h' has shape \(16,\)"):
        stream.set_state({"h": np.zeros(16)})
    many = Simulator(compiled.program).stream(samples=2)
    with pytest.raises(RnnaccelError, match="the stream has 2 samples but state 'h' has 3"):
        many.set_state({"h": np.zeros((3, 1, 1, 16))})


def test_state_outputs_stay_available_on_request():
    model = onnx.load(STATE / "lstm-hc-script.onnx")
    compiled, _, _ = _streamed(model, state_outputs=True)
    assert [d.name for d in compiled.program.outputs] == ["y", "h_out", "c_out"]
    stream = Simulator(compiled.program).stream()
    result = stream.step({"x": _frames(model, 1, seed=6)["x"][0]})
    for name, output in (("h", "h_out"), ("c", "c_out")):
        np.testing.assert_allclose(result.outputs[output], stream.state()[name], atol=2 * compiled.graph.scales[name])


def test_a_longer_sequence_with_explicit_state_streams_one_frame_at_a_time():
    """An LSTM over 4 steps from h0, c0 to Y_h, Y_c: streamed, it takes one frame per run."""
    model = recurrent_model("LSTM", 4, 1, 3, 8, initial=True, outputs=["Y", "Y_h", "Y_c"], seed=2)
    compiled, _, _ = _streamed(model)
    assert _pairs(compiled.program) == {"h0": "Y_h", "c0": "Y_c"}
    assert compiled.program.inputs[0].shape == (1, 1, 3)
    xs = np.random.default_rng(7).standard_normal((4, 1, 1, 3)).astype(np.float32)
    stream = Simulator(compiled.program).stream()
    got = np.concatenate([stream.step({"X": x}).outputs["Y"] for x in xs])
    want = float_outputs(model, {"X": xs.reshape(4, 1, 3), "h0": np.zeros((1, 1, 8), np.float32),
                                 "c0": np.zeros((1, 1, 8), np.float32)})["Y"]
    assert float(np.max(np.abs(got - want))) <= TOLERANCE[8]


def test_partitioned_stream_keeps_chip_state_on_chip_and_host_state_on_the_host():
    """A VAD-like frame model: a convolution's history buffer (Conv stays on the host), and an
    LSTM whose packed state the chip keeps. Bit-exact against the host loop, close to ORT."""
    model = vad_model()
    calibration = _frames(model, 30, seed=8, streams=4)
    log: list[str] = []
    compiled = compile_model(model, calibration=calibration, streaming=True, states={"cache": "cache_out"},
                             log=log.append)
    program = compiled.program
    assert program.host.state == (("cache", "cache_out"),) and program.host.inputs == ("x",)
    assert [s.name for island in program.islands for s in island.state] == ["state"]
    assert "state pairs carried by the host: cache=cache_out" in log
    blob = programfile.to_bytes(program)
    assert programfile.to_bytes(programfile.from_bytes(blob)) == blob
    assert programfile.to_bytes(assemble(disassemble(program))) == blob
    frames = _frames(model, 60, seed=9)
    stream = simulator_for(programfile.from_bytes(blob)).stream()
    streamed = [stream.step({"x": frames["x"][t]}) for t in range(60)]
    pairs = {"cache": "cache_out", "state": "state_out"}
    host = compile_model(model, calibration=calibration, states=pairs).program
    for t, (chip, fed) in enumerate(zip(streamed, _host_loop(host, frames, pairs))):
        np.testing.assert_array_equal(chip.islands[0].result.raw_outputs["p"], fed.islands[0].result.raw_outputs["p"],
                                      err_msg=f"frame {t}")
    floats = _float_loop(model, frames, pairs)
    assert max(float(np.max(np.abs(s.outputs["p"] - f["p"]))) for s, f in zip(streamed, floats)) <= TOLERANCE[8]
    saved = stream.state()
    assert set(saved) == {"cache", "state"}
    stream.reset()
    assert not any(np.any(v) for v in stream.state().values())
    stream.set_state(saved)
    assert all(np.array_equal(stream.state()[k], v) for k, v in saved.items())
    with pytest.raises(RnnaccelError, match=r"input 'cache' has shape \(5, 2\), expected \(1, 5, 2\)"):
        stream.set_state({"cache": saved["cache"][0]})
    with pytest.raises(RnnaccelError, match="unknown state"):
        stream.set_state({"h": saved["state"]})


def test_corrupted_state_descriptions_are_refused():
    """A state's shape, scale and slices are checked as an input's are, and a partitioned
    program's host state pairs as 'input=output'."""
    program = compile_model(vad_model(), streaming=True, states={"cache": "cache_out"}).program
    island = program.islands[0]
    (state,) = island.state
    for change, message in (({"shape": (3, 3)}, "does not hold 16 elements"), ({"scale": 0.0}, "is outside"),
                            ({"slices": ((1, 1e-3),), "slice_axis": 0}, "do not cover")):
        with pytest.raises(RnnaccelError, match=message):
            dataclasses.replace(state, **change)
    host = dataclasses.replace(program.host, state=(("cache", "nowhere"),))
    with pytest.raises(RnnaccelError, match="program output 'nowhere' is produced by no host node"):
        programfile.to_bytes(dataclasses.replace(program, host=host))
    blob = programfile.to_bytes(program).replace(b'"cache=cache_out"', b'"cache:cache_out"')
    with pytest.raises(RnnaccelError, match="corrupted program: state pairs .* are not all 'input=output'"):
        programfile.from_bytes(blob[:-4] + struct.pack("<I", zlib.crc32(blob[:-4])))


def test_cli_binds_named_state_and_says_so(tmp_path, capsys):
    path = save(tmp_path, vad_model())
    out = tmp_path / "vad.rnna"
    with pytest.raises(SystemExit) as exit_info:
        compile_main([str(path), "-o", str(out), "--streaming", "--state", "cache=cache_out"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 0
    assert "state pairs carried by the host: cache=cache_out" in err
    assert "state pairs kept on chip between runs: state=state_out" in err
    assert programfile.load(str(out)).host.state == (("cache", "cache_out"),)


BAD_STATES = {
    "not an input": ({"nope": "state_out"}, "'nope' is not a graph input"),
    "not an output": ({"state": "nope"}, "'nope' is not a graph output"),
    "shapes differ": ({"cache": "state_out"}, r"the input has shape \[1, 5, 2\] and the output \[2, 1, 8\]"),
    "output twice": ({"cache": "state_out", "state": "state_out"}, "output 'state_out' is paired with more"),
}


@pytest.mark.parametrize("case", BAD_STATES)
def test_bad_state_pairs_are_refused(case):
    pairs, message = BAD_STATES[case]
    with pytest.raises(RnnaccelError, match=message):
        compile_model(vad_model(), streaming=True, states=pairs)


BAD_CALIBRATION = {
    "frame rank": ({"x": np.zeros((2, 3, 4, 1, 5, 1))}, r"with state pairs it is \[streams, frames, 1, 5, 1\]"),
    "streams disagree": ({"x": np.zeros((2, 3, 1, 5, 1)), "x2": np.zeros((3, 3, 1, 5, 1))},
                         "calibration streams disagree"),
    "state shape": ({"x": np.zeros((2, 1, 5, 1)), "state": np.zeros((3, 2, 1, 8))},
                    "calibration data for state 'state' has shape"),
    "missing frames": ({"state": np.zeros((2, 1, 8))}, "calibration data lacks input"),
    "not finite": ({"x": np.full((2, 3, 1, 5, 1), np.nan)}, "must be finite real numbers"),
}


@pytest.mark.parametrize("case", BAD_CALIBRATION)
def test_bad_closed_loop_calibration_is_refused(case):
    data, message = BAD_CALIBRATION[case]
    model = vad_model(second_input=case == "streams disagree")
    with pytest.raises(RnnaccelError, match=message):
        compile_model(model, calibration=data, streaming=True, states={"cache": "cache_out"})


CLI_ERRORS = {
    "no equals": (["--state", "cache"], "--state cache: expected IN=OUT"),
    "twice": (["--state", "cache=cache_out", "--state", "cache=state_out"], "--state cache is given twice"),
    "outputs without streaming": (["--state-outputs"], "--state-outputs goes with --streaming"),
}


@pytest.mark.parametrize("case", CLI_ERRORS)
def test_cli_refuses_bad_state_options(case, tmp_path, capsys):
    args, message = CLI_ERRORS[case]
    assert message in compile_fails(tmp_path, capsys, save(tmp_path, vad_model()), *args)


def test_a_conv_on_its_history_buffer_keeps_both_states_on_chip():
    """The VAD model with its window convolved (Conv on the chip): the cache and the LSTM's state
    are both kept on chip, and the stream stays close to ONNX Runtime's frame loop."""
    model = vad_model(host_window=False)
    pairs = {"cache": "cache_out", "state": "state_out"}
    compiled = compile_model(model, calibration=_frames(model, 30, seed=8, streams=4), streaming=True,
                             states={"cache": "cache_out"})
    programs = compiled.program.islands if compiled.islands else (compiled.program,)
    assert {s.name for program in programs for s in program.state} == set(pairs)
    frames = _frames(model, 40, seed=9)
    stream = simulator_for(compiled.program).stream()
    streamed = [stream.step({"x": frames["x"][t]}) for t in range(40)]
    floats = _float_loop(model, frames, pairs)
    assert max(float(np.max(np.abs(s.outputs["p"] - f["p"]))) for s, f in zip(streamed, floats)) <= TOLERANCE[8]

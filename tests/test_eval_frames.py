"""rnnaccel-eval on per-frame labels: frame accuracy, agreement and event detection, for
whole-sequence and streaming programs, checked against the simulator and ONNX Runtime run here."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from compiler.pipeline import compile_model
from isa import container, programfile
from isa.errors import RnnaccelError
from isa.partitioned import PartitionedProgram
from runtime_sim import PartitionedSimulator, Simulator
from runtime_sim.detection import Detection, detect, runs
from runtime_sim.frames import to_frames

from models import _info, recurrent_model
from state_models import FEATURES, vad_model
from test_eval_cli import exit_status
from toolchain import random_inputs

T, F, H, N = 12, 4, 8, 6


def frame_model(classes: int, steps: int = T) -> onnx.ModelProto:
    """A GRU over X [1, steps, F] (transposed to ONNX's time-major layout, as PyTorch exports
    batch_first) and a per-frame head: Sigmoid scores [1, steps, 1] or Softmax [1, steps, C]."""
    model = recurrent_model("GRU", steps, 1, F, H, outputs=["Y"], seed=classes)
    rng = np.random.default_rng(classes)
    inits = {"shape": np.array([1, -1, H], np.int64), "Wo": rng.standard_normal((H, classes)).astype(np.float32),
             "bo": (rng.standard_normal(classes) * 0.3).astype(np.float32)}
    head = helper.make_node("Sigmoid", ["logits"], ["scores"]) if classes == 1 else \
        helper.make_node("Softmax", ["logits"], ["scores"], axis=-1)
    model.graph.node[0].input[0] = "Xt"
    model.graph.node.insert(0, helper.make_node("Transpose", ["X"], ["Xt"], perm=[1, 0, 2]))
    model.graph.node.extend([helper.make_node("Reshape", ["Y", "shape"], ["Yr"]),
                             helper.make_node("MatMul", ["Yr", "Wo"], ["mm"]),
                             helper.make_node("Add", ["mm", "bo"], ["logits"]), head])
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in inits.items())
    del model.graph.input[:], model.graph.output[:]
    model.graph.input.append(_info("X", (1, steps, F)))
    model.graph.output.append(_info("scores", (1, steps, classes)))
    onnx.checker.check_model(model)
    return model


def _predict(scores: np.ndarray) -> np.ndarray:
    """[N, 1, T, C] scores to [N, T] classes: above 0.5 for one score, else the first maximum."""
    scores = scores[:, 0]
    return (scores[..., 0] > 0.5).astype(np.int64) if scores.shape[-1] == 1 else scores.argmax(-1)


@pytest.fixture(scope="module", params=[1, 3], ids=["sigmoid", "softmax3"])
def frames(request, tmp_path_factory):
    """The model saved, its whole-sequence and streaming programs, and data labelled from the float
    model's own predictions with a third of the frames changed, so no figure is trivially 100 %."""
    classes, tmp = request.param, tmp_path_factory.mktemp("frames")
    model = frame_model(classes)
    onnx.save(model, tmp / "model.onnx")
    calib = random_inputs(model, seed=1, samples=16)
    for name, streaming in (("whole", False), ("stream", True)):
        container.save(compile_model(model, calibration=calib, streaming=streaming).program, str(tmp / f"{name}.rnna"))
    x = random_inputs(model, seed=2, samples=N)["X"]
    session = ort.InferenceSession(str(tmp / "model.onnx"), providers=["CPUExecutionProvider"])
    ref = _predict(np.stack([session.run(None, {"X": xi})[0] for xi in x]))
    rng = np.random.default_rng(3)
    y = np.where(rng.random(ref.shape) < 1 / 3, rng.integers(0, max(classes, 2), ref.shape), ref)
    np.savez(tmp / "data.npz", X=x, y=y)
    return tmp, classes, x, y, ref


def _count(out: str, name: str) -> int:
    match = re.search(rf"^{name}:\s+[\d.]+ % \((\d+)/{N * T}\)", out, re.M)
    assert match, f"no '{name}' line in:\n{out}"
    return int(match[1])


def _detection_line(d: Detection) -> str:
    latency = "-" if not d.latencies else \
        f"mean {np.mean(d.latencies):.2f}, median {np.median(d.latencies):.1f} frames"
    return f"{d.events - d.missed} detected, {d.missed} missed, {d.false_alarms} false alarms; latency {latency}"


def _run(argv: list[str], capsys) -> str:
    assert exit_status(argv) == 0
    return capsys.readouterr().out


def test_whole_sequence_figures_match_the_simulator_and_onnx_runtime(frames, capsys):
    tmp, classes, x, y, ref = frames
    out = _run([str(tmp / "whole.rnna"), "--data", str(tmp / "data.npz"), "--reference", str(tmp / "model.onnx")],
               capsys)
    chip = _predict(Simulator(container.load(str(tmp / "whole.rnna"))).run({"X": x}, batch=True).outputs["scores"])
    assert _count(out, "chip frames") == int(np.sum(chip == y))
    assert _count(out, "float frames") == int(np.sum(ref == y))
    assert _count(out, "frame agreement") == int(np.sum(ref == chip))
    assert f"sequences:        {N} of {T} frames" in out
    assert "chip detection:   " + _detection_line(detect(y, chip)) + "\n" in out
    assert f"events:           {detect(y, chip).events} " in out
    assert "float detection:  " + _detection_line(detect(y, ref)) + "\n" in out
    table = out.split("chip prediction):\n")[1].splitlines()
    assert len(table) == 1 + max(classes, 2)


def test_streaming_steps_the_frames_and_agrees_with_the_whole_sequence(frames, capsys, tmp_path):
    """The stream's frame t is bit for bit the whole-sequence program's step t, so every chip
    figure is the same; data with an extra axis of T after the samples axis gives the same again."""
    tmp, _, x, y, _ = frames
    data = str(tmp / "data.npz")
    whole = _run([str(tmp / "whole.rnna"), "--data", data, "--reference", str(tmp / "model.onnx")], capsys)
    stream = _run([str(tmp / "stream.rnna"), "--data", data, "--reference", str(tmp / "model.onnx")], capsys)
    np.savez(tmp_path / "extra.npz", X=np.moveaxis(x, 2, 1)[:, :, :, None], y=y)
    extra = _run([str(tmp / "stream.rnna"), "--data", str(tmp_path / "extra.npz"), "--per-frame", "--reference",
                  str(tmp / "model.onnx")], capsys)
    figures = ("chip frames", "float frames", "frame agreement")
    assert [_count(stream, f) for f in figures] == [_count(whole, f) for f in figures] == \
        [_count(extra, f) for f in figures]
    detection = [line for line in whole.splitlines() if "detection" in line or line.startswith("events")]
    assert detection and all(line in stream and line in extra for line in detection)
    assert f"{N * T} frames in" in stream and "us per frame" in stream and "us per sequence" in whole


def test_partitioned_programs_stream_with_the_whole_sequence_declared(capsys, tmp_path):
    """A host operator before the GRU: the host declares whole sequences, the stream steps frames."""
    model = frame_model(1)
    model.graph.node[0].input[0] = "Xa"
    model.graph.node.insert(0, helper.make_node("Softsign", ["X"], ["Xa"]))
    onnx.save(model, tmp_path / "model.onnx")
    calib, x = random_inputs(model, seed=1, samples=16), random_inputs(model, seed=2, samples=N)["X"]
    y = (np.random.default_rng(4).random((N, T)) < 0.5).astype(np.int64)
    np.savez(tmp_path / "data.npz", X=x, y=y)
    outs = {}
    for name, streaming in (("whole", False), ("stream", True)):
        program = compile_model(model, calibration=calib, streaming=streaming).program
        assert isinstance(program, PartitionedProgram)
        programfile.save(program, str(tmp_path / f"{name}.rnna"))
        outs[name] = _run([str(tmp_path / f"{name}.rnna"), "--data", str(tmp_path / "data.npz"), "--reference",
                           str(tmp_path / "model.onnx")], capsys)
    chip = _predict(PartitionedSimulator(programfile.load(str(tmp_path / "whole.rnna"))).run(
        {"X": x}, batch=True).outputs["scores"])
    assert _count(outs["whole"], "chip frames") == _count(outs["stream"], "chip frames") == int(np.sum(chip == y))
    assert "chip detection:   " + _detection_line(detect(y, chip)) + "\n" in outs["stream"]


def test_threshold_moves_the_one_score_decision(frames, capsys):
    tmp, classes, x, y, _ = frames
    if classes != 1:
        pytest.skip("a threshold applies to one score per frame")
    scores = Simulator(container.load(str(tmp / "whole.rnna"))).run({"X": x}, batch=True).outputs["scores"]
    cut = float(np.median(scores))
    out = _run([str(tmp / "whole.rnna"), "--data", str(tmp / "data.npz"), "--threshold", str(cut)], capsys)
    assert _count(out, "chip frames") == int(np.sum((scores[:, 0, :, 0] > cut) == y))
    assert f"positive above {cut:g}" in out


@pytest.mark.parametrize("labels, truth, expected", [
    # one event at 2..5, found at its third frame; a predicted run at 7..8 overlaps nothing
    ([0, 0, 1, 1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1, 0, 1, 1], Detection(1, (2,), 1)),
    # two events, the first found at onset, the second missed; the long run covering it is no false alarm
    ([1, 1, 0, 0, 1, 1, 0], [1, 0, 0, 0, 0, 0, 0], Detection(2, (0,), 0)),
    # classes: an event of 2 met only by predictions of 1 is missed, and that run of 1 is a false alarm
    ([0, 2, 2, 2, 0, 1, 1], [0, 1, 1, 0, 0, 0, 1], Detection(2, (1,), 1)),
    # no events, no predictions
    ([0, 0, 0], [0, 0, 0], Detection(0, (), 0)),
])
def test_detection_on_hand_made_sequences(labels, truth, expected):
    assert detect(np.array([labels]), np.array([truth])) == expected


def test_runs_do_not_cross_sequences_and_latency_summaries():
    labels = np.array([[0, 1, 1], [1, 1, 0]])
    assert [len(runs(row)) for row in labels] == [1, 1]
    d = detect(labels, np.array([[0, 0, 1], [0, 1, 1]]))
    assert d == Detection(2, (1, 1), 0) and d.mean_latency == 1.0 and d.median_latency == 1.0 and d.missed == 0
    assert Detection(3, (), 2).mean_latency is None and Detection(3, (), 2).missed == 3


@pytest.mark.parametrize("shape, message", [
    ((1, 4, 4), "more than one axis of the labels' 4 frames"),
    ((1, 3, 2), "no axis of the labels' 4 frames"),
    ((2, 4, 3), "expected [..., 4, C] or [..., 4] with only axes of 1 before the frames"),
    ((4, 3, 1), "expected [..., 4, C] or [..., 4]"),
])
def test_frame_axis_must_be_one_and_unambiguous(shape, message):
    with pytest.raises(RnnaccelError, match=re.escape(message)):
        to_frames(np.zeros((2, *shape)), 4, "output 'y'")


def test_frame_axis_layouts():
    scores = np.arange(2 * 4 * 3).reshape(2, 1, 4, 3)
    np.testing.assert_array_equal(to_frames(scores, 4, "y"), scores[:, 0])
    assert to_frames(np.zeros((2, 1, 4)), 4, "y").shape == (2, 4, 1)


def _refused(argv: list[str], capsys, message: str) -> None:
    assert exit_status(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnaccel-eval: error: ") and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("program, arrays, extra, message", [
    ("whole", lambda x, y: {"X": x, "y": y[:, 0]}, ["--per-frame"], "labels 'y' must be [N, T] integers"),
    ("whole", lambda x, y: {"X": x, "y": y.astype(np.float32)}, [], "labels 'y' must be [N, T] integers"),
    ("whole", lambda x, y: {"X": x, "y": y[:4]}, [], "labels 'y' have 4 rows but the data has 6 samples"),
    ("whole", lambda x, y: {"X": x[:0], "y": y[:0]}, [], "the data has no samples"),
    ("whole", lambda x, y: {"X": x, "y": y[:, :5]}, [], "output 'scores' has shape (1, 12, "),
    ("whole", lambda x, y: {"X": x, "y": y + 3}, [], "but the program's output has"),
    ("stream", lambda x, y: {"X": x, "y": y[:, :5]}, [],
     "input 'X' has shape (1, 12, 4) per sample, but the streaming program takes one frame (1, 1, 4): expected "
     "the 5 frames"),
    ("stream", lambda x, y: {"X": x[:, :, :, :2], "y": y}, [], "input 'X' has shape (1, 12, 2) per sample"),
    ("whole", lambda x, y: {"X": x, "y": y[:, 0]}, ["--threshold", "0"],
     "--threshold applies to frame-level evaluation (labels [N, T] or --per-frame)"),
])
def test_refusals_are_one_line(frames, capsys, tmp_path, program, arrays, extra, message):
    tmp, _, x, y, _ = frames
    np.savez(tmp_path / "bad.npz", **arrays(x, y))
    _refused([str(tmp / f"{program}.rnna"), "--data", str(tmp_path / "bad.npz"), *extra], capsys, message)


def test_threshold_is_refused_for_class_scores(frames, capsys):
    tmp, classes, _, _, _ = frames
    if classes == 1:
        pytest.skip("one score per frame takes a threshold")
    _refused([str(tmp / "whole.rnna"), "--data", str(tmp / "data.npz"), "--threshold", "0"], capsys,
             "--threshold applies to one score per frame; output 'scores' scores 3 classes")


def test_a_per_frame_reference_for_a_stream_is_refused(frames, capsys):
    tmp, classes, _, _, _ = frames
    onnx.save(frame_model(classes, steps=1), tmp / "frame.onnx")
    _refused([str(tmp / "stream.rnna"), "--data", str(tmp / "data.npz"), "--reference", str(tmp / "frame.onnx")],
             capsys, "takes one frame, as the streaming program does, and the program binds no state pair")


def test_a_per_frame_model_that_carries_its_state_is_its_own_reference(capsys, tmp_path):
    """A VAD-like frame model (a Conv's cache on the host, an LSTM's packed state on chip): the
    float reference runs it frame by frame, its state pairs fed back as the stream feeds them."""
    model = vad_model()
    onnx.save(model, tmp_path / "vad.onnx")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((N, T, 1, FEATURES, 1)).astype(np.float32)
    program = compile_model(model, calibration={"x": x[:2]}, streaming=True, states={"cache": "cache_out"}).program
    programfile.save(program, str(tmp_path / "vad.rnna"))
    stream = PartitionedSimulator(program).stream(samples=N)
    chip = np.stack([stream.step({"x": x[:, t]}).outputs["p"][:, 0, 0] for t in range(T)], axis=1) > 0.5
    session, floats = ort.InferenceSession(model.SerializeToString()), np.zeros((N, T))
    for i in range(N):
        cache, state = np.zeros((1, FEATURES, 2), np.float32), np.zeros((2, 1, 8), np.float32)
        for t in range(T):
            p, cache, state = session.run(None, {"x": x[i, t], "cache": cache, "state": state})
            floats[i, t] = p.item()
    ref = floats > 0.5
    y = np.where(rng.random((N, T)) < 0.3, 1 - ref, ref).astype(np.int64)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    out = _run([str(tmp_path / "vad.rnna"), "--data", str(tmp_path / "data.npz"), "--reference",
                str(tmp_path / "vad.onnx")], capsys)
    assert _count(out, "chip frames") == int(np.sum(chip == y))
    assert _count(out, "float frames") == int(np.sum(ref == y))
    assert _count(out, "frame agreement") == int(np.sum(ref == chip))

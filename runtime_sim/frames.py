"""Frame-level evaluation: real-time models (voice-activity and wake-word detectors) score every
frame, and their data sets label every frame, [samples, T].

A whole-sequence program runs once per sample and its first output holds T frames' scores,
[..., T, C] (C classes: the first maximum) or [..., T] / [..., T, 1] (one score: positive above the
threshold); the axis of T is the one output axis of the labels' length. A streaming program
(rnnaccel-compile --streaming) steps all samples together over the T frames, each frame cut from the
whole sequence in the data: at the axis where the program's input has 1 and the data T, or along an
extra axis of T right after the samples axis; each step's first output is one frame's scores.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from isa.errors import RnnaccelError
from runtime_sim.batch import batch_totals, run_batch
from runtime_sim.detection import Detection, detect
from runtime_sim.evaluate import Evaluation, check_label_range, class_count
from runtime_sim.float_ref import FloatModel
from runtime_sim.partitioned import PartitionedSimulator
from runtime_sim.simulator import Simulator, check_inputs

Sim = Simulator | PartitionedSimulator
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class FrameEvaluation:
    """Per-frame classes (flattened over samples, as an Evaluation) and the event detection of
    the chip and, with a reference, of the float model."""

    frames: Evaluation
    sequences: int
    length: int
    one_score: bool
    threshold: float
    streaming: bool
    chip_events: Detection
    float_events: Detection | None


@dataclass(frozen=True)
class TimeAxis:
    """Where a streaming input's frames lie in the data: `axis` of a sample (counted without the
    samples axis); `extra` when that axis is the data's own, absent from the program's input."""

    axis: int
    extra: bool

    def frame(self, x: np.ndarray, t: int) -> np.ndarray:
        """Frame t of every sample, shaped as the program's input with a leading samples axis."""
        return np.take(x, t if self.extra else [t], axis=self.axis + 1)


def frame_labels(labels: np.ndarray, key: str) -> np.ndarray:
    """Integer labels [samples, T], one per frame of each sample."""
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise RnnaccelError(f"labels '{key}' must be [N, T] integers (one per frame of each sample) for "
                            f"frame-level evaluation, got {labels.dtype} {labels.shape}")
    return labels.astype(np.int64)


def sample_count(inputs: dict[str, np.ndarray], labels: np.ndarray, key: str) -> int:
    """The number of samples, which the inputs and the labels must agree on and which must not be 0."""
    samples = len(next(iter(inputs.values())))
    if len(labels) != samples:
        raise RnnaccelError(f"labels '{key}' have {len(labels)} rows but the data has {samples} samples")
    if samples == 0:
        raise RnnaccelError("the data has no samples: its arrays' leading axis is 0")
    return samples


def is_streaming(sim: Sim) -> bool:
    """Does the program keep state between runs (a chip program, or any island of a partitioned one)?"""
    programs = [i.program for i in sim.islands] if isinstance(sim, PartitionedSimulator) else [sim.program]
    return any(p.streaming for p in programs)


def to_frames(scores: np.ndarray, frames: int, what: str) -> np.ndarray:
    """Scores [samples, ..., T, C] or [samples, ..., T] as [samples, T, C]: the one axis of size T."""
    shape = scores.shape[1:]
    axes = [i for i, n in enumerate(shape) if n == frames]
    if len(axes) != 1:
        found = "no axis" if not axes else "more than one axis"
        raise RnnaccelError(f"{what} has shape {shape} per sample: {found} of the labels' {frames} frames")
    axis = axes[0]
    if axis < len(shape) - 2 or math.prod(shape[:axis]) != 1:
        raise RnnaccelError(f"{what} has shape {shape} per sample: expected [..., {frames}, C] or [..., {frames}] "
                            f"with only axes of 1 before the frames")
    return scores.reshape(len(scores), frames, shape[-1] if axis == len(shape) - 2 else 1)


def predict(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Each frame's class from [samples, T, C]: one score above the threshold is 1, else the first maximum."""
    return (scores[..., 0] > threshold).astype(np.int64) if scores.shape[-1] == 1 else scores.argmax(-1)


def time_axis(frame_shape: tuple[int, ...], data_shape: tuple[int, ...], frames: int, name: str) -> TimeAxis:
    """Where the data's T frames are for a streaming input whose one frame has `frame_shape`.

    A partitioned program's host declares the whole sequence, so there the data's one axis of T is
    the one stepped over."""
    if data_shape == (frames, *frame_shape):
        return TimeAxis(0, True)
    if data_shape == frame_shape and data_shape.count(frames) == 1:
        return TimeAxis(data_shape.index(frames), False)
    differ = [i for i, (f, d) in enumerate(zip(frame_shape, data_shape)) if f != d]
    if len(data_shape) == len(frame_shape) and len(differ) == 1 and (frame_shape[differ[0]], data_shape[differ[0]]) \
            == (1, frames):
        return TimeAxis(differ[0], False)
    raise RnnaccelError(f"input '{name}' has shape {data_shape} per sample, but the streaming program takes one frame "
                        f"{frame_shape}: expected the {frames} frames in place of an axis of 1, or as an extra axis "
                        f"right after the samples axis")


def time_axes(sim: Sim, inputs: dict[str, np.ndarray], frames: int) -> dict[str, TimeAxis]:
    """Where each input's frames lie in the data, for a streaming program."""
    return {d.name: time_axis(tuple(d.shape), inputs[d.name].shape[1:], frames, d.name) for d in sim.inputs}


def stream_scores(sim: Sim, inputs: dict[str, np.ndarray], axes: dict[str, TimeAxis], frames: int,
                  classes: int) -> tuple[np.ndarray, dict, dict]:
    """Step every sample's stream over its frames: scores [samples, T, C], one frame's stats, totals."""
    samples, name = len(next(iter(inputs.values()))), sim.outputs[0].name
    stream, start = sim.stream(samples=samples), time.perf_counter()
    results = [stream.step({k: axes[k].frame(v, t) for k, v in inputs.items()}) for t in range(frames)]
    wall = time.perf_counter() - start
    scores = np.stack([r.outputs[name].reshape(samples, classes) for r in results], axis=1)
    return scores, results[-1].stats, batch_totals(results[-1].stats, samples * frames, wall)


def chip_scores(sim: Sim, inputs: dict[str, np.ndarray], axes: dict[str, TimeAxis] | None, frames: int,
                classes: int, progress: Callable[[int, int], None] | None) -> tuple[np.ndarray, dict, dict]:
    """Scores [samples, T, C] of the chip (streamed when `axes` are given), one frame's (streaming)
    or one sample's stats, and the totals."""
    if axes is not None:
        return stream_scores(sim, inputs, axes, frames, classes)
    result, totals = run_batch(sim, inputs, progress)
    return to_frames(result.outputs[sim.outputs[0].name], frames, f"output '{sim.outputs[0].name}'"), \
        result.stats, totals


def score_classes(sim: Sim, frames: int, streaming: bool) -> int:
    """C of the chip's scores [samples, T, C], from the first output's declared shape, before running:
    one frame's vector for a streaming chip program, else T frames' (a partitioned program's host
    declares the whole sequence even when it streams)."""
    out = sim.outputs[0]
    if out.shape is None or (streaming and math.prod(out.shape[:-1]) == 1):
        return class_count(sim.outputs)
    return to_frames(np.zeros((0, *out.shape)), frames, f"output '{out.name}'").shape[-1]


def float_frame_scores(model: str, inputs: dict[str, np.ndarray], axes: dict[str, TimeAxis] | None,
                       frames: int, sim_pairs: dict[str, str]) -> np.ndarray:
    """The float model's scores [samples, T, C].

    For a streaming program (`axes` given) the model is the whole-sequence one it was compiled
    from, or a per-frame model (inputs shaped as the frames stepped) that carries its state as
    inputs and outputs: that one runs frame by frame, the program's state pairs fed back."""
    float_model = FloatModel(model)
    shapes = float_model.input_shapes
    if axes is not None and all(shapes.get(k) == axes[k].frame(v[:1], 0).shape[1:] for k, v in inputs.items()):
        return _per_frame_scores(float_model, sim_pairs, inputs, axes, frames)
    feeds = {k: _as_model_input(v, shapes.get(k, ())) for k, v in inputs.items()}
    return to_frames(float_model.run(feeds), frames, f"--reference {model}'s output")


def _per_frame_scores(model: FloatModel, pairs: dict[str, str], inputs: dict[str, np.ndarray],
                      axes: dict[str, TimeAxis], frames: int) -> np.ndarray:
    if not pairs or set(model.input_shapes) != set(inputs) | set(pairs):
        raise RnnaccelError(f"--reference {model.path} takes one frame, as the streaming program does, and the "
                            "program binds no state pair that feeds its inputs: give the whole-sequence model it "
                            "was compiled from")
    scores = model.run_stream([{k: axes[k].frame(v, t) for k, v in inputs.items()} for t in range(frames)], pairs)
    return scores.reshape(len(scores), frames, -1)


def state_pairs(sim: Sim) -> dict[str, str]:
    """The state pairs a streaming program keeps between runs (input -> output), on chip or host."""
    if isinstance(sim, PartitionedSimulator):
        islands = [s for island in sim.program.islands for s in island.state]
        return dict(sim.program.host.state) | {s.name: s.output for s in islands if s.output}
    return {s.name: s.output for s in sim.program.state if s.output}


def _as_model_input(x: np.ndarray, shape: tuple) -> np.ndarray:
    """The data reshaped to the model's static input shape when they differ only in axes of 1."""
    static = all(isinstance(n, int) for n in shape)
    if static and shape != x.shape[1:] and [n for n in shape if n != 1] == [n for n in x.shape[1:] if n != 1]:
        return x.reshape(len(x), *shape)
    return x


def _checked_inputs(sim: Sim, inputs: dict[str, np.ndarray], labels: np.ndarray, key: str,
                    streaming: bool) -> dict[str, TimeAxis] | None:
    """Inputs that fit the program and the labels, checked before anything runs; a stream's time axes."""
    axes = time_axes(sim, inputs, labels.shape[1]) if streaming else None
    if not streaming:
        check_inputs(sim.inputs, inputs, batch=True)
    sample_count(inputs, labels, key)
    return axes


def evaluate_frames(sim: Sim, inputs: dict[str, np.ndarray], labels: np.ndarray, key: str, threshold: float | None,
                    reference: str | None = None,
                    progress: Callable[[int, int], None] | None = None) -> FrameEvaluation:
    """Run every sample bit-accurately and compare each frame with its label and the float model's.

    `threshold` (None: 0.5) makes a one-score output's frames positive; it applies to the dequantised
    score, so a logit output wants 0."""
    labels, streaming = frame_labels(labels, key), is_streaming(sim)
    frames = labels.shape[1]
    axes = _checked_inputs(sim, inputs, labels, key, streaming)
    scored = score_classes(sim, frames, streaming)
    if threshold is not None and scored > 1:
        raise RnnaccelError(f"--threshold applies to one score per frame; output '{sim.outputs[0].name}' scores "
                            f"{scored} classes (the first maximum is taken)")
    one_score, threshold = scored == 1, DEFAULT_THRESHOLD if threshold is None else threshold
    classes = 2 if one_score else scored
    check_label_range(labels, key, classes)
    scores, stats, totals = chip_scores(sim, inputs, axes, frames, scored, progress)
    chip = predict(scores, threshold)
    ref = None if reference is None else predict(float_frame_scores(reference, inputs, axes, frames, state_pairs(sim)),
                                                 threshold)
    per_frame = Evaluation(labels.ravel(), chip.ravel(), None if ref is None else ref.ravel(), classes, stats, totals)
    return FrameEvaluation(per_frame, len(labels), frames, one_score, threshold, streaming, detect(labels, chip),
                           None if ref is None else detect(labels, ref))

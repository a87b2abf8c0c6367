"""The float model's predictions, from ONNX Runtime, for rnnaccel-eval --reference.

onnxruntime is an optional dependency (the test extra), imported only when asked for, so the
simulator itself never needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import numpy as np

from isa.container import Program
from isa.errors import RnnaccelError


def onnxruntime() -> ModuleType:
    """The onnxruntime module, or a user error saying how to install it."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise RnnaccelError("--reference needs onnxruntime, which is not installed: pip install onnxruntime "
                            "(or pip install 'rnnaccel[test]')") from None
    return ort


def float_scores(model: str, program: Program, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The model's first output for every sample, flattened (one ONNX Runtime call per sample, as compiled)."""
    scores = FloatModel(model).run(inputs)
    return scores.reshape(len(scores), -1) if len(scores) else scores


class FloatModel:
    """An ONNX model in ONNX Runtime, run one sample at a time on arrays with a leading samples axis."""

    def __init__(self, model: str) -> None:
        self.path, self.ort = model, onnxruntime()
        self.session = _session(self.ort, model)

    @property
    def input_shapes(self) -> dict[str, tuple]:
        """Each graph input's declared shape (a dynamic dim is a name or None)."""
        return {i.name: tuple(i.shape) for i in self.session.get_inputs()}

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The first output of every sample, stacked: [samples, *output shape]."""
        names = list(self.input_shapes)
        if sorted(names) != sorted(inputs):
            raise RnnaccelError(f"--reference {self.path}: its inputs {', '.join(names)} differ from the program's "
                                f"{', '.join(inputs)}")
        output = self.session.get_outputs()[0].name
        count = len(next(iter(inputs.values())))
        rows = [self._run([output], {k: v[i] for k, v in inputs.items()})[0] for i in range(count)]
        return np.stack(rows) if rows else np.zeros((0, 0))


    def run_stream(self, frames: list[dict[str, np.ndarray]], pairs: Mapping[str, str]) -> np.ndarray:
        """The first output at every frame, [samples, frames, *shape]: each sample one stream from
        zero state, each state pair's output fed back as its input, as the host of a model that
        carries its state does."""
        shapes = self.input_shapes
        output = self.session.get_outputs()[0].name
        count = len(next(iter(frames[0].values())))
        state = {name: np.zeros((count, *shapes[name]), np.float32) for name in pairs}
        rows = []
        for frame in frames:
            outs = [self._run([output, *pairs.values()], {**{k: v[i] for k, v in frame.items()},
                                                          **{k: v[i] for k, v in state.items()}})
                    for i in range(count)]
            rows.append(np.stack([o[0] for o in outs]))
            state = {name: np.stack([o[k + 1] for o in outs]) for k, name in enumerate(pairs)}
        return np.stack(rows, axis=1)

    def _run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self.session.run(outputs, {k: v.astype(np.float32) for k, v in feeds.items()})
        except ort_errors(self.ort) as exc:
            raise RnnaccelError(f"--reference {self.path}: ONNX Runtime failed: {first_line(exc)}") from None


def _session(ort: ModuleType, model: str):
    if not Path(model).is_file():
        raise RnnaccelError(f"--reference {model}: no such file")
    try:
        return ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    except ort_errors(ort) as exc:
        raise RnnaccelError(f"--reference {model}: ONNX Runtime cannot load it: {first_line(exc)}") from None


def ort_errors(ort: ModuleType) -> tuple[type[BaseException], ...]:
    """ONNX Runtime's exception types for a bad model or bad inputs (it has no common base)."""
    state = ort.capi.onnxruntime_pybind11_state
    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile", "NotImplemented",
             "RuntimeException")
    return tuple(getattr(state, n) for n in names if hasattr(state, n)) + (ValueError,)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

"""The data set a sweep scores every point on, and what each sample is scored against.

With labels (an integer array per sample, `y` by default) a point's score is its accuracy; without,
it is its top-1 agreement with the float model, run once per model through ONNX Runtime as
rnnaccel-eval --reference runs it (runtime_sim.float_ref).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from compiler.sweep.point import Scoring
from isa.errors import RnnaccelError
from isa.fileio import read_npz
from runtime_sim.evaluate import select_inputs, select_labels, top1
from runtime_sim.float_ref import FloatModel
from runtime_sim.host import Port


def read_data(path: str, samples: int | None) -> dict[str, np.ndarray]:
    """The data file's arrays, cut to `samples` evenly spaced samples when given (a quicker sweep
    that still sees every part of a data set sorted by class)."""
    data = read_npz(path, "data")
    counts = {len(a) if a.ndim else None for a in data.values()}
    if not data or len(counts) != 1 or None in counts:
        raise RnnaccelError(f"the data {path} must hold arrays with one leading samples axis of the same length")
    count = counts.pop()
    if count == 0:
        raise RnnaccelError(f"the data {path} has no samples: its arrays' leading axis is 0")
    if samples is None or samples >= count:
        return data
    chosen = np.arange(samples) * count // samples
    return {name: a[chosen] for name, a in data.items()}


def scorings(data: dict[str, np.ndarray], label_key: str, input_key: str | None,
             models: Mapping[str, str]) -> Callable[[str], Scoring]:
    """Per model name, how its points are scored (`models`: name -> ONNX file)."""
    if label_key in data:
        samples = len(next(iter(data.values())))
        top = int(data[label_key].max()) + 1 if data[label_key].dtype.kind in "iu" else 1
        labels = select_labels(data, label_key, samples, top)  # the program's classes are checked per point
        return lambda name: Scoring("accuracy", labels, label_key, input_key)
    _require_onnxruntime(label_key)
    return lambda name: Scoring("agreement", float_top1(models[name], data, label_key, input_key), label_key,
                                input_key)


def metric(data: dict[str, np.ndarray], label_key: str) -> str:
    """The score's column: accuracy with labels, agreement without."""
    return "accuracy" if label_key in data else "agreement"


def float_top1(path: str, data: dict[str, np.ndarray], label_key: str, input_key: str | None) -> np.ndarray:
    """The float model's top-1 class of every sample."""
    model = FloatModel(path)
    inputs = select_inputs([Port(name, None) for name in model.input_shapes], data, label_key, input_key)
    return top1(model.run(inputs))


def _require_onnxruntime(label_key: str) -> None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise RnnaccelError(f"the data has no labels '{label_key}', so points are scored by agreement with the "
                            "float model, which needs onnxruntime: pip install onnxruntime") from None

"""Run an ONNX model in float, sample by sample, to see the tensors at the islands' edges.

Calibration of a partitioned model needs the values entering each island, which the host part
computes: the whole model runs in float with those tensors added as graph outputs. ONNX Runtime
does it when it is installed, onnx's reference evaluator otherwise (no new required dependency).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from isa.errors import RnnaccelError, shortened

Session = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


def tensors_over_samples(model: onnx.ModelProto, samples: Mapping[str, np.ndarray], wanted: Sequence[str],
                         types: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Each `wanted` tensor for every sample (leading axis of `samples`, keyed by graph input).
    Nothing wanted (an island that reads only graph inputs) runs nothing: a session needs an output."""
    if not wanted:
        return {}
    run = session(with_outputs(model, wanted, types))
    count = len(next(iter(samples.values()))) if samples else 1
    inputs = {v.name: v.type.tensor_type.elem_type for v in model.graph.input if v.name in samples}
    per_sample = [run_typed(run, {name: samples[name][i] for name in inputs}, inputs, f"calibration sample {i}")
                  for i in range(count)]
    return {name: np.stack([values[k] for values in per_sample]) for k, name in enumerate(wanted)}


def run_typed(run: Session, feeds: Mapping[str, np.ndarray], types: Mapping[str, int], what: str) -> list[np.ndarray]:
    """One run on `feeds` cast to their graph inputs' element types; a failure is the data's, `what`."""
    typed = {name: value.astype(helper.tensor_dtype_to_np_dtype(types[name])) for name, value in feeds.items()}
    try:
        return run(typed)
    except Exception as exc:  # noqa: BLE001  (either runtime raises its own types for bad data)
        raise RnnaccelError(f"running the model in float on {what} failed: {shortened(exc, 160)}") from None


def with_outputs(model: onnx.ModelProto, wanted: Sequence[str], types: Mapping[str, int]) -> onnx.ModelProto:
    """A copy whose graph outputs are exactly `wanted` (typed, shapes left open)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.graph.output[:]
    copy.graph.output.extend(helper.make_tensor_value_info(t, types.get(t, onnx.TensorProto.FLOAT), None)
                             for t in wanted)
    return copy


def session(model: onnx.ModelProto) -> Session:
    """A float runner for the model: ONNX Runtime if it is installed, else the reference evaluator."""
    try:
        import onnxruntime
    except ImportError:
        from onnx.reference import ReferenceEvaluator
        evaluator = ReferenceEvaluator(model)
        return lambda feeds: evaluator.run(None, feeds)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    ort = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda feeds: ort.run(None, feeds)

"""A small sequence classifier, float and as ONNX Runtime's static quantisation (QDQ) writes it.

The float model: MatMul + Add + Relu (a projection of each frame), an LSTM, the last hidden
state through Gemm + Sigmoid. `quantized` runs onnxruntime.quantization.quantize_static on it
(QDQ format, per-channel int8 weights, int8 activations, calibrated on random frames), so the
tests and bench/qdq.py compare the same pair.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from compiler.pipeline import compile_model
from isa.target import Target
from runtime_sim import Simulator

STEPS, BATCH, FEATURES, PROJECTED, HIDDEN, CLASSES = 8, 1, 10, 12, 16, 5
INPUT = "x"


def float_model(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    weights = {
        "W1": rng.standard_normal((FEATURES, PROJECTED)) / np.sqrt(FEATURES),
        "b1": rng.standard_normal(PROJECTED) * 0.1,
        "W": rng.standard_normal((1, 4 * HIDDEN, PROJECTED)) * 0.5 / np.sqrt(PROJECTED),
        "R": rng.standard_normal((1, 4 * HIDDEN, HIDDEN)) * 0.5 / np.sqrt(HIDDEN),
        "B": rng.standard_normal((1, 8 * HIDDEN)) * 0.1,
        "W2": rng.standard_normal((CLASSES, HIDDEN)) / np.sqrt(HIDDEN),
        "b2": rng.standard_normal(CLASSES) * 0.1,
    }
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "axis0"))
    nodes = [helper.make_node("MatMul", [INPUT, "W1"], ["m"], name="proj"),
             helper.make_node("Add", ["m", "b1"], ["a"], name="bias"),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("LSTM", ["r", "W", "R", "B"], ["", "h_n"], hidden_size=HIDDEN, name="lstm"),
             helper.make_node("Squeeze", ["h_n", "axis0"], ["h"], name="last"),
             helper.make_node("Gemm", ["h", "W2", "b2"], ["g"], transB=1, name="head"),
             helper.make_node("Sigmoid", ["g"], ["y"], name="prob")]
    graph = helper.make_graph(nodes, "qdq_classifier",
                              [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [STEPS, BATCH, FEATURES])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [BATCH, CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def frames(count: int, seed: int) -> np.ndarray:
    """`count` random input sequences, stacked: [count, STEPS, BATCH, FEATURES]."""
    return np.random.default_rng(seed).standard_normal((count, STEPS, BATCH, FEATURES)).astype(np.float32)


class _Frames(CalibrationDataReader):
    def __init__(self, samples: np.ndarray) -> None:
        self.samples = iter(samples)

    def get_next(self) -> dict | None:
        sample = next(self.samples, None)
        return None if sample is None else {INPUT: sample}


def quantized(model: onnx.ModelProto, samples: np.ndarray) -> onnx.ModelProto:
    """The model as quantize_static writes it: QDQ pairs, per-channel int8 weights."""
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "float.onnx", Path(folder) / "qdq.onnx"
        onnx.save(model, source)
        quantize_static(source, target, _Frames(samples), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        return onnx.load(target)


def ort_run(model: onnx.ModelProto, samples: np.ndarray) -> np.ndarray:
    """ONNX Runtime's output for each sample, stacked."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.stack([session.run(None, {INPUT: sample})[0] for sample in samples])


def chip_figures(model: onnx.ModelProto, calibration: np.ndarray, samples: np.ndarray) -> dict:
    """Compile with `calibration`, simulate every sample: the worst error against ONNX Runtime on the
    same model, ONNX Runtime's largest output, and the cycles of one inference."""
    compiled = compile_model(model, Target(), {INPUT: calibration})
    result = Simulator(compiled.program).run({INPUT: samples}, batch=True)
    want = ort_run(model, samples)
    return {"error": float(np.max(np.abs(result.outputs["y"] - want))), "largest": float(np.max(np.abs(want))),
            "cycles": int(result.stats["cycles"]), "compiled": compiled}


def side_by_side(count: int = 64) -> dict[str, dict]:
    """The float model compiled with calibration, and its QDQ form, each against ONNX Runtime on itself."""
    model, calibration, samples = float_model(), frames(32, 1), frames(count, 2)
    return {"calibrated": chip_figures(model, calibration, samples),
            "qdq": chip_figures(quantized(model, calibration), calibration, samples)}

"""Models whose values go beyond the chip's natural formats, as shipped recurrent models do on real
speech: shared by tests/test_state_formats.py and bench/numerics.py.

Each case is a model built with onnx.helper, calibrated on its own samples (for a closed-loop case,
the inputs and states a float closed loop of other frames passes through, as a user records them),
then run on the simulator -- a sequence in one run, or frame by frame with the state fed back by
the host -- and compared with ONNX Runtime running the same loop on its own float state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from compiler.pipeline import Compiled, compile_model
from compiler.reference import reference_outputs
from isa.target import Target
from runtime_sim import Simulator

from packed_models import INPUTS as PACKED_INPUTS
from packed_models import packed_lstm

OPSET = 17
HIDDEN, FEATURES = 16, 8


def _info(name: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _model(nodes: list, inputs: list, outputs: list, inits: dict[str, np.ndarray]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "numerics", inputs, outputs,
                              [numpy_helper.from_array(v.astype(np.float32) if v.dtype.kind == "f" else v, k)
                               for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _weights(op: str, gates: int, rng: np.random.Generator, bias: np.ndarray, recurrent: float = 0.5) -> dict:
    return {"W": rng.standard_normal((1, gates * HIDDEN, FEATURES)) * 0.5 / np.sqrt(FEATURES),
            "R": rng.standard_normal((1, gates * HIDDEN, HIDDEN)) * recurrent / np.sqrt(HIDDEN),
            "B": np.concatenate([bias, np.zeros(gates * HIDDEN)])[None]}


def growing_lstm(steps: int, seed: int = 0) -> onnx.ModelProto:
    """An LSTM whose forget gate stays near 1 and whose candidate drifts one way per unit, so the
    cell state integrates to a few hundred within 100 steps (as a noise suppressor's does on
    speech); h0/c0 in, Y_h/Y_c out: the state a host feeds back."""
    rng = np.random.default_rng(seed)
    bias = np.concatenate([np.full(HIDDEN, 4.0), np.zeros(HIDDEN), np.full(HIDDEN, 7.0),
                           rng.uniform(-2.5, 2.5, HIDDEN)])  # i, o, f, c
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "", "h0", "c0"], ["Y", "Y_h", "Y_c"],
                            hidden_size=HIDDEN, name="lstm")
    state = (1, 1, HIDDEN)
    return _model([node], [_info("X", (steps, 1, FEATURES)), _info("h0", state), _info("c0", state)],
                  [_info("Y", (steps, 1, 1, HIDDEN)), _info("Y_h", state), _info("Y_c", state)],
                  _weights("LSTM", 4, rng, bias))


def wake_word(seed: int = 1) -> onnx.ModelProto:
    """One frame of a GRU wake-word detector: state in and out, and a logit head whose logit
    (beyond +-8) leaves the chip and also feeds a Sigmoid."""
    rng = np.random.default_rng(seed)
    state = (1, 1, HIDDEN)
    inits = {**_weights("GRU", 3, rng, rng.standard_normal(3 * HIDDEN) * 0.1, recurrent=1.0),
             "Wo": rng.standard_normal((HIDDEN, 1)) * 6.0, "bo": np.array([1.0])}
    nodes = [helper.make_node("GRU", ["X", "W", "R", "B", "", "h0"], ["", "h"], hidden_size=HIDDEN,
                              linear_before_reset=1, name="gru"),
             helper.make_node("Reshape", ["h", "flat"], ["h2"], name="flatten"),
             helper.make_node("MatMul", ["h2", "Wo"], ["m"], name="head"),
             helper.make_node("Add", ["m", "bo"], ["logit"], name="head_bias"),
             helper.make_node("Sigmoid", ["logit"], ["prob"], name="prob")]
    graph_inputs = [_info("X", (1, 1, FEATURES)), _info("h0", state)]
    return _model(nodes, graph_inputs, [_info("h", state), _info("logit", (1, 1)), _info("prob", (1, 1))],
                  {**inits, "flat": np.array([1, HIDDEN], np.int64)})


def leaky_rnn(op: str, steps: int, activations: list[str], memory: float = 0.0, drive: float = 1.0,
              seed: int = 2) -> onnx.ModelProto:
    """A GRU or RNN whose candidate integrates its input (recurrent weights of `memory` x identity
    plus noise), so a Relu's hidden state settles at a few tens; h0 in, Y/Y_h out."""
    rng = np.random.default_rng(seed)
    gates = {"GRU": 3, "RNN": 1}[op]
    inits = _weights(op, gates, rng, rng.standard_normal(gates * HIDDEN) * 0.1, recurrent=0.2)
    inits["R"][0, -HIDDEN:] += memory * np.eye(HIDDEN)
    inits["W"][0, -HIDDEN:] *= drive
    node = helper.make_node(op, ["X", "W", "R", "B", "", "h0"], ["Y", "Y_h"], hidden_size=HIDDEN,
                            activations=activations, name=op.lower())
    state = (1, 1, HIDDEN)
    return _model([node], [_info("X", (steps, 1, FEATURES)), _info("h0", state)],
                  [_info("Y", (steps, 1, 1, HIDDEN)), _info("Y_h", state)], inits)


@dataclass(frozen=True)
class Case:
    """A model, how its inputs are drawn, and the state its host feeds back (output -> input);
    `frames` runs of one frame each (closed loop), or one run of a whole sequence (frames 0)."""

    model: Callable[[], onnx.ModelProto]
    inputs: Callable[[np.random.Generator], dict[str, np.ndarray]]
    feedback: dict[str, str] = field(default_factory=dict)
    frames: int = 0


def _frame(rng: np.random.Generator, steps: int = 1, drift: float = 0.0) -> np.ndarray:
    return (rng.standard_normal((steps, 1, FEATURES)) * 0.5 + drift).astype(np.float32)


def _state(rng: np.random.Generator, scale: float) -> np.ndarray:
    return (rng.standard_normal((1, 1, HIDDEN)) * scale).astype(np.float32)


CASES = {
    "lstm-cell-loop": Case(lambda: growing_lstm(1), lambda rng: {"X": _frame(rng), "h0": _state(rng, 0),
                                                                 "c0": _state(rng, 0)},
                           {"Y_h": "h0", "Y_c": "c0"}, frames=100),
    "lstm-initial-states": Case(lambda: growing_lstm(20), lambda rng: {"X": _frame(rng, 20), "h0": _state(rng, 3),
                                                                       "c0": _state(rng, 30)}),
    "gru-wake-loop": Case(wake_word, lambda rng: {"X": _frame(rng), "h0": _state(rng, 3)}, {"h": "h0"}, frames=100),
    "rnn-tanh-initial": Case(lambda: leaky_rnn("RNN", 10, ["Tanh"]),
                             lambda rng: {"X": _frame(rng, 10), "h0": _state(rng, 3)}),
    "rnn-relu-loop": Case(lambda: leaky_rnn("RNN", 1, ["Relu"], memory=0.6, drive=8.0),
                          lambda rng: {"X": _frame(rng, drift=0.3),
                                                                               "h0": _state(rng, 0.1)},
                          {"Y_h": "h0"}, frames=100),
    "lstm-packed-loop": Case(lambda: packed_lstm(forget_bias=7.0),
                             lambda rng: {"X": (rng.standard_normal((1, 1, PACKED_INPUTS)) + 1.5).astype(np.float32),
                                          "state": np.zeros((1, 1, 8, 2), np.float32)},
                             {"state_out": "state"}, frames=100),
    "gru-relu": Case(lambda: leaky_rnn("GRU", 30, ["Sigmoid", "Relu"], memory=0.5, drive=30.0),
                     lambda rng: {"X": _frame(rng, 30, drift=0.3), "h0": _state(rng, 0.1)}),
}
CALIBRATION_RUNS = 8


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def float_loop(case: Case, model: onnx.ModelProto, seed: int) -> tuple[list[dict], list[dict]]:
    """ONNX Runtime on the case's inputs (its own state fed back frame by frame): the inputs of each
    run and its outputs."""
    rng, run = np.random.default_rng(seed), session(model)
    names = [o.name for o in model.graph.output]
    inputs, outputs, state = [], [], {}
    for _ in range(max(case.frames, 1)):
        given = {**case.inputs(rng), **state}
        got = dict(zip(names, run.run(None, given)))
        inputs.append(given)
        outputs.append(got)
        state = {into: got[out] for out, into in case.feedback.items()}
    return inputs, outputs


def calibration(case: Case, model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """What a user records: the inputs (states included) of float runs on other data."""
    runs = [float_loop(case, model, 100 + k)[0] for k in range(CALIBRATION_RUNS)]
    frames = [frame for inputs in runs for frame in inputs]
    return {name: np.stack([f[name] for f in frames]) for name in frames[0]}


@dataclass(frozen=True)
class Measured:
    compiled: Compiled
    chip: list[dict[str, np.ndarray]]  # per run: the simulator's dequantised outputs
    want: list[dict[str, np.ndarray]]  # per run: ONNX Runtime's on its own state
    exact: bool  # every run bit-exact against the golden reference

    def error(self, name: str, runs: slice = slice(None)) -> float:
        """Largest |chip - float| of an output over these runs, relative to max(1, max |float|)."""
        pairs = list(zip(self.chip, self.want))[runs]
        worst = max(float(np.max(np.abs(c[name] - w[name]))) for c, w in pairs)
        return worst / max(1.0, *(float(np.max(np.abs(w[name]))) for _, w in pairs))

    def relative_rms(self, name: str) -> float:
        chip = np.stack([c[name] for c in self.chip])
        want = np.stack([w[name] for w in self.want])
        return float(np.sqrt(np.mean((chip - want) ** 2) / max(np.mean(want ** 2), 1e-30)))


def measure(name: str, target: Target | None = None, seed: int = 0) -> Measured:
    """Compile the case with its calibration and run it as its host would, checking every run
    against the golden reference."""
    case = CASES[name]
    model = case.model()
    compiled = compile_model(model, target or Target(), calibration(case, model))
    simulator = Simulator(compiled.program)
    want_inputs, want = float_loop(case, model, seed)
    chip, exact, state = [], True, {}
    for frame in want_inputs:
        given = {**frame, **state}
        result = simulator.run(given)
        golden = reference_outputs(compiled.graph, {k: v[None] for k, v in given.items()})
        exact &= all(np.array_equal(result.raw_outputs[k], v[0]) for k, v in golden.items())
        chip.append(result.outputs)
        state = {into: result.outputs[out] for out, into in case.feedback.items()}
    return Measured(compiled, chip, want, exact)

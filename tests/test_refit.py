"""Refitting a layer with 2-bit matrices through time (ops/recurrent/refit.py): gradients, the
cell it differentiates, what it gains on sequences it never saw, and where it stays out."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import onnx
import pytest

from compiler.frontend.onnx_import import import_model
from compiler.ops.recurrent.float_cells import MIN_SAMPLES, RUN_SAMPLES, run_shape
from compiler.ops.recurrent.formats import Run
from compiler.ops.recurrent.refit import Layer, Tied, _Params
from compiler.passes.budget import Budget
from compiler.passes.calibrate import calibrate
from compiler.passes.compress import Compression
from compiler.passes.widths import Widths
from compiler.pipeline import compile_model
from isa.container import to_bytes
from runtime_sim import Simulator

from models import recurrent_model
from state_models import FEATURES, HIDDEN, KERNEL, vad_model
from toolchain import float_outputs, run_checked

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
CELLS = [("lstm", False), ("gru", True), ("gru", False), ("rnn", False)]


def _tied(rng, rows: np.ndarray, cols: int) -> Tied:
    """Two codebooks of four entries over `rows`."""
    slot = rng.integers(0, 4, (len(rows), cols)) + 4 * (np.arange(len(rows)) % 2)[:, None]
    return Tied(rows, slot, rng.standard_normal(8) * 0.6)


def _small_layer(op: str, lbr: bool, seed: int = 0, hidden: int = 3, inputs: int = 2) -> Layer:
    rng = np.random.default_rng(seed)
    rows = GATES[op] * hidden
    W, R = rng.standard_normal((rows, inputs)) * 0.6, rng.standard_normal((rows, hidden)) * 0.6
    parts = ([np.arange(2 * hidden), np.arange(2 * hidden, rows)] if op == "gru" and not lbr else [np.arange(rows)])
    return Layer(op, W, R, rng.standard_normal(rows) * 0.2, rng.standard_normal(hidden) * 0.2 if lbr else None,
                 (_tied(rng, np.arange(rows), inputs),), tuple(_tied(rng, p, hidden) for p in parts), lbr)


def _random_runs(layer: Layer, seed: int = 1) -> tuple[Run, ...]:
    rng = np.random.default_rng(seed)
    hidden, inputs = layer.R.shape[1], layer.W.shape[1]
    return tuple(Run(rng.standard_normal((steps, 2, inputs)), rng.standard_normal((2, hidden)) * 0.3,
                     rng.standard_normal((2, hidden)) * 0.3, rng.standard_normal((steps, 2, hidden)) * 0.5)
                 for steps in (5, 3))


@pytest.mark.parametrize("op, lbr", CELLS)
def test_the_gradient_is_the_loss_s_slope(op, lbr):
    params = _Params(_small_layer(op, lbr), ())
    params = _Params(params.base, _random_runs(params.base))
    values = params.initial()
    _, gradient = params.loss_and_gradient(values)
    step, slopes = 1e-6, []
    for k in range(len(values)):
        nudge = np.zeros_like(values)
        nudge[k] = step
        slopes.append((params.loss_and_gradient(values + nudge)[0] - params.loss_and_gradient(values - nudge)[0])
                      / (2 * step))
    np.testing.assert_allclose(gradient, slopes, rtol=1e-5, atol=1e-9)


def _calibrated_node(model: onnx.ModelProto, calibration: dict):
    """The model's recurrent node with what calibration saw inside it."""
    graph = import_model(model)
    node = next(n for n in graph.nodes if n.op in GATES)
    return node.with_attrs(ranges=calibrate(graph, calibration).inner[node.source])


@pytest.mark.parametrize("windows", [False, True])
@pytest.mark.parametrize("op, lbr", CELLS)
def test_calibration_keeps_runs_that_the_refit_s_cell_reproduces(op, lbr, windows, monkeypatch):
    """The runs hold ONNX Runtime's states, and the refit's forward pass of the float layer gives
    them back: zero loss, zero gradient. Where whole sequences do not fit, each sample keeps a
    window of its steps, the windows spread from the first step to the last, each starting from
    the float state before it."""
    if windows:  # room for 12 sample-steps: windows of 3 of the 6 steps of all 4 samples
        monkeypatch.setattr("compiler.ops.recurrent.float_cells.RUN_VALUES", 12 * (3 + 5))
        monkeypatch.setattr("compiler.ops.recurrent.float_cells.MIN_WINDOW", 2)
    attrs = {"linear_before_reset": int(lbr)} if op == "gru" else {}
    model = recurrent_model(op.upper(), 6, 1, 3, 5, initial=True, seed=2, **attrs)
    rng = np.random.default_rng(3)
    data = {"X": rng.standard_normal((4, 6, 1, 3)).astype(np.float32),
            "h0": rng.standard_normal((4, 1, 1, 5)).astype(np.float32) * 0.5}
    if op == "lstm":
        data["c0"] = rng.standard_normal((4, 1, 1, 5)).astype(np.float32) * 0.5
    node = _calibrated_node(model, data)
    (run,) = node.attrs.ranges.runs[0]
    expected = np.stack([float_outputs(model, {k: v[s] for k, v in data.items()})["Y"][:, 0, 0] for s in range(4)], 1)
    starts = [0, 1, 2, 3] if windows else [0] * 4
    assert run.h.shape == ((3 if windows else 6), 4, 5)
    for sample, start in enumerate(starts):
        np.testing.assert_allclose(run.h[:, sample], expected[start:start + len(run.h), sample], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(run.h0[sample], expected[start - 1, sample] if start else data["h0"][sample, 0, 0],
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(run.x[:, sample], data["X"][sample, start:start + len(run.x), 0])
    a, gates = node.attrs, node.attrs.W.shape[1]
    wb, rb = a.B[0][:gates].astype(np.float64), a.B[0][gates:].astype(np.float64)
    b = wb + (np.concatenate([rb[:10], np.zeros(5)]) if lbr else rb)
    layer = Layer(op, a.W[0].astype(np.float64), a.R[0].astype(np.float64), b, rb[10:] if lbr else None, (), (), lbr)
    loss, gradient = _Params(layer, (run,)).loss_and_gradient(_Params(layer, (run,)).initial())
    assert loss < 1e-20 and np.abs(gradient).max() < 1e-9


def _smooth(shape: tuple[int, ...], samples: int, seed: int) -> np.ndarray:
    """Sequences that drift from step to step, as speech frames do."""
    steps = np.random.default_rng(seed).standard_normal((samples, *shape)) * 0.5
    return np.cumsum(steps, axis=1).astype(np.float32)


def _output_error(model: onnx.ModelProto, calibration: dict, test: np.ndarray,
                  log: Callable[[str], None] = lambda line: None) -> tuple[float, int]:
    compiled = compile_model(model, calibration=calibration, compression=Compression(2), log=log)
    chip = Simulator(compiled.program).run({"X": test}, batch=True).outputs["Y_h"]
    exact = np.stack([float_outputs(model, {"X": x})["Y_h"] for x in test])
    return float(np.sqrt(np.mean((chip - exact) ** 2) / np.mean(exact ** 2))), compiled.report["total"]["stored_bytes"]


@pytest.mark.parametrize("op, attrs", [("lstm", {}), ("gru", {"linear_before_reset": 1}), ("gru", {}), ("rnn", {})])
def test_the_refit_brings_a_2_bit_layer_closer_on_sequences_it_never_saw(op, attrs, monkeypatch):
    model = recurrent_model(op.upper(), 20, 1, 4, 16, outputs=("Y_h",), seed=5, **attrs)
    calibration, test = {"X": _smooth((20, 1, 4), 48, seed=6)}, _smooth((20, 1, 4), 24, seed=7)
    refitted, size = _output_error(model, calibration, test)
    monkeypatch.setattr("compiler.ops.recurrent.quantize.REFIT_BITS", 0)
    stepwise, size_before = _output_error(model, calibration, test)
    assert refitted < 0.95 * stepwise
    assert size == size_before  # the same indices, codebooks and bias bytes


def test_windows_of_sequences_too_long_to_keep_whole_refit_a_layer_for_whole_sequences(monkeypatch):
    """Room for 720 of the 48 × 60 sample-steps: 12 whole sequences, too few to refit on, so 45
    samples keep windows of 16 steps; refitted on them, the layer follows whole unseen sequences
    more closely."""
    monkeypatch.setattr("compiler.ops.recurrent.float_cells.RUN_VALUES", 720 * (4 + 16))
    model = recurrent_model("LSTM", 60, 1, 4, 16, outputs=("Y_h",), seed=5)
    calibration, test = {"X": _smooth((60, 1, 4), 48, seed=6)}, _smooth((60, 1, 4), 24, seed=7)
    lines: list[str] = []
    refitted, size = _output_error(model, calibration, test, lines.append)
    assert any(line.startswith("'lstm': refitting through time on 45 calibration samples (windows of 16 of their "
                               "60 steps)") for line in lines)
    monkeypatch.setattr("compiler.ops.recurrent.quantize.REFIT_BITS", 0)
    stepwise, size_before = _output_error(model, calibration, test)
    assert refitted < 0.95 * stepwise and size == size_before


def test_a_refitted_program_is_bit_exact_keeps_its_widths_and_drops_the_runs():
    model = recurrent_model("LSTM", 12, 1, 3, 16, outputs=("Y_h",), seed=8)
    calibration = {"X": _smooth((12, 1, 3), 32, seed=9)}
    checked = run_checked(model, {"X": calibration["X"][0]}, calibration=calibration, compression=Compression(2))
    node = next(n for n in checked.compiled.graph.nodes if n.op == "lstm")
    for q in (node.attrs.cells[0].x, node.attrs.cells[0].h):
        assert q.codebook.bits == 2 and np.unique(q.codebook.indices).size <= 4
    assert node.attrs.ranges.runs == () and node.attrs.ranges.steps[0] is not None


def test_the_compile_log_says_which_layer_was_refitted_and_how_far():
    model = recurrent_model("GRU", 10, 1, 3, 8, outputs=("Y_h",), seed=20, direction="bidirectional")
    calibration = {"X": _smooth((10, 1, 3), 20, seed=21)}
    lines: list[str] = []
    compile_model(model, calibration=calibration, compression=Compression(2), log=lines.append)
    said = [line for line in lines if "refit" in line]
    assert [line.split(":")[0] for line in said] == ["'gru' (forward)"] * 2 + ["'gru' (reverse)"] * 2
    assert "refitting through time on 20 calibration samples (150 passes)" in said[0]
    before, after = (float(v) for v in said[1].split("states ")[1].split(" (")[0].split(" -> "))
    assert 0 < after < before
    lines.clear()
    compile_model(model, calibration=calibration, compression=Compression(3), log=lines.append)
    assert not any("refitted" in line for line in lines)


def test_a_state_model_says_its_refit_once_each_time_it_is_compiled():
    """Its state's scales are pinned by quantising twice, and the refit is fitted once per process
    (a memo): each compile still says both lines, once."""
    rng = np.random.default_rng(24)
    calibration = {"x": rng.standard_normal((24, 1, FEATURES, 1)),
                   "cache": rng.standard_normal((24, 1, FEATURES, KERNEL - 1)),
                   "state": rng.standard_normal((24, 2, 1, HIDDEN)) * 0.3}
    said = []
    for _ in range(2):
        lines: list[str] = []
        compile_model(vad_model(host_window=False), calibration=calibration, compression=Compression(2),
                      states={"state": "state_out", "cache": "cache_out"}, log=lines.append)
        said.append([line for line in lines if "refit" in line])
    assert said[0] == said[1] and [line.split(": ")[1].split(" ")[0] for line in said[0]] == ["refitting", "refitted;"]


def test_too_few_calibration_samples_keep_the_step_wise_fit_and_say_so(monkeypatch):
    model = recurrent_model("LSTM", 8, 1, 3, 8, outputs=("Y_h",), seed=22)
    calibration = {"X": _smooth((8, 1, 3), MIN_SAMPLES - 1, seed=23)}
    lines: list[str] = []
    program = to_bytes(compile_model(model, calibration=calibration, compression=Compression(2),
                                     log=lines.append).program)
    assert any(line.startswith(f"'lstm': not refitted through time: calibration kept {MIN_SAMPLES - 1} samples "
                               f"of it, at least {MIN_SAMPLES} needed") for line in lines)
    assert program == to_bytes(compile_model(model, calibration=calibration,
                                             compression=Compression(2, refit=False)).program)


SKIPPED = [("lstm", {"clip": 2.0}, Compression(2)),
           ("lstm", {"activations": ["Sigmoid", "Tanh", "Relu"]}, Compression(2)),
           ("gru", {"activations": ["HardSigmoid", "Tanh"]}, Compression(2)), ("lstm", {}, Compression(3)),
           ("lstm", {}, Compression(2, prune=0.5)), ("rnn", {}, Compression(2, activation_aware=False)),
           ("gru", {}, Compression(2, refit=False))]


@pytest.mark.parametrize("op, attrs, compression", SKIPPED)
def test_cells_and_widths_the_refit_does_not_take_compile_as_before(op, attrs, compression, monkeypatch):
    model = recurrent_model(op.upper(), 8, 1, 3, 8, outputs=("Y_h",), seed=10, **attrs)
    calibration = {"X": _smooth((8, 1, 3), 16, seed=11)}

    def program() -> bytes:
        return to_bytes(compile_model(model, calibration=calibration, compression=compression).program)
    with_refit = program()
    monkeypatch.setattr("compiler.ops.recurrent.quantize.REFIT_BITS", 0)
    assert program() == with_refit


def test_auto_measures_the_step_wise_fit_and_refits_the_program_it_chose():
    """The budget is measured on the calibration samples, which a refit would learn: the search
    measures every trial without it (the error it reached is the step-wise program's on the
    calibration samples), and only the chosen program (and --widths, which repeats it) is
    refitted, once per layer."""
    model = recurrent_model("LSTM", 8, 1, 3, 8, outputs=("Y_h",), seed=16)
    calibration = {"X": _smooth((8, 1, 3), 16, seed=17)}
    exact = np.stack([float_outputs(model, {"X": x})["Y_h"] for x in calibration["X"]])
    lines: list[str] = []

    def compiled(compression, log: Callable[[str], None] = lambda line: None):
        return compile_model(model, calibration=calibration, compression=compression, log=log)

    def error_on_calibration(compression) -> float:
        chip = Simulator(compiled(compression).program).run({"X": calibration["X"]}, batch=True).outputs["Y_h"]
        return float(np.sqrt(np.sum((chip - exact) ** 2) / np.sum(exact ** 2)))
    auto = compiled(Budget(min_agreement=None, max_error=10.0), lines.append)  # a budget every width keeps
    program = to_bytes(auto.program)
    assert program == to_bytes(compiled(Widths({"lstm/qx0": 2, "lstm/qh0": 2})).program)
    assert program == to_bytes(compiled(Compression(2)).program)
    assert program != to_bytes(compiled(Compression(2, refit=False)).program)
    reached = auto.report["compression"]["reached"]["error"]
    assert reached == pytest.approx(error_on_calibration(Compression(2, refit=False)), abs=1e-5)
    assert abs(reached - error_on_calibration(Compression(2))) > 1e-3
    refits = [line for line in lines if "refit" in line]
    assert len(refits) == 2 and refits[0].startswith("'lstm': refitting through time")
    assert lines.index(refits[0]) > max(i for i, line in enumerate(lines) if "compression within the budget" in line)


def test_a_layer_trained_with_shared_weights_keeps_them(monkeypatch):
    """Weights that already take four values a matrix have no error to refit."""
    model = recurrent_model("GRU", 8, 1, 3, 8, outputs=("Y_h",), seed=18, linear_before_reset=1)
    for init in model.graph.initializer:
        if init.name in ("W", "R"):
            values = onnx.numpy_helper.to_array(init)
            levels = np.quantile(values, [0.1, 0.4, 0.6, 0.9]).astype(np.float32)
            nearest = levels[np.argmin(np.abs(values[..., None] - levels), axis=-1)]
            init.CopyFrom(onnx.numpy_helper.from_array(nearest, init.name))
    calibration = {"X": _smooth((8, 1, 3), 16, seed=19)}
    compression = Compression(2, "matrix")
    with_refit = to_bytes(compile_model(model, calibration=calibration, compression=compression).program)
    monkeypatch.setattr("compiler.ops.recurrent.quantize.REFIT_BITS", 0)
    assert to_bytes(compile_model(model, calibration=calibration, compression=compression).program) == with_refit


def test_peepholes_keep_the_step_wise_fit(monkeypatch):
    model = recurrent_model("LSTM", 8, 1, 3, 8, outputs=("Y_h",), peepholes=True, seed=12)
    calibration = {"X": _smooth((8, 1, 3), 16, seed=13)}
    with_refit = to_bytes(compile_model(model, calibration=calibration, compression=Compression(2)).program)
    monkeypatch.setattr("compiler.ops.recurrent.quantize.REFIT_BITS", 0)
    assert to_bytes(compile_model(model, calibration=calibration, compression=Compression(2)).program) == with_refit


def test_runs_keep_whole_sequences_or_windows_within_their_bounds():
    samples = {"X": _smooth((6, 1, 3), RUN_SAMPLES + 16, seed=15)}
    node = _calibrated_node(recurrent_model("GRU", 6, 1, 3, 5, seed=14), samples)
    (run,) = node.attrs.ranges.runs[0]
    assert run.x.shape == (6, RUN_SAMPLES, 3) and run.h.shape == (6, RUN_SAMPLES, 5)
    wide = dataclasses.replace(node.attrs, steps=500, W=np.zeros((1, 4096, 1024)), R=np.zeros((1, 4096, 1024)),
                               hidden=1024)
    assert run_shape(wide, 64) == (4, 16)  # 64 sample-steps a pass: too few samples to refit on
    long = dataclasses.replace(node.attrs, steps=100_000, W=np.zeros((1, 3, 40)), R=np.zeros((1, 3, 1)), hidden=1)
    assert run_shape(long, 64) == (64, 3196)  # 41 values a step: 64 MiB hold 204600 of them
    assert run_shape(dataclasses.replace(long, steps=10_000), 64) == (20, 10_000)  # 20 whole sequences

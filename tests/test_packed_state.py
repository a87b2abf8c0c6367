"""Packed state tensors at the host boundary get a scale per slice (compiler/passes/packing.py):
closed loop over 100 steps, the host feeding the dequantised state back, bit-exact against the
golden reference at every step and within the float tolerance of ONNX Runtime without drift."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from compiler.pipeline import compile_model
from compiler.reference import reference_outputs
from isa import programfile
from isa.cli import as_main, objdump_main
from isa.target import Target
from runtime_sim import Simulator
from runtime_sim.partitioned import PartitionedSimulator
from tests.packed_models import HIDDEN, INPUTS, packed_lstm, split_lstm
from tests.toolchain import TOLERANCE, float_outputs, run_checked

STEPS = 100
Step = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


def _frames(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 1, 1, INPUTS)).astype(np.float32)


def _float_loop(model, xs: np.ndarray, state: np.ndarray) -> list[dict[str, np.ndarray]]:
    """ONNX Runtime run closed loop on its own state."""
    outs = []
    for x in xs:
        outs.append(float_outputs(model, {"X": x, "state": state}))
        state = outs[-1]["state_out"]
    return outs


def _calibration(model, state_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Frames and the states the float model reaches on them: c ranges to about 5, h below 1."""
    xs = _frames(64, seed=1)
    states = [np.zeros(state_shape, np.float32)] + [o["state_out"] for o in _float_loop(
        model, xs[:-1], np.zeros(state_shape, np.float32))]
    return {"X": xs, "state": np.stack(states)}


def _closed_loop(model, step: Step, state_shape: tuple[int, ...], steps: int = STEPS) -> np.ndarray:
    """The error of every output at every step, the chip's state fed back by the host as floats."""
    xs = _frames(steps, seed=2)
    state = np.zeros(state_shape, np.float32)
    errors = []
    for x, want in zip(xs, _float_loop(model, xs, state)):
        got = step(x, state)
        state = got["state_out"]
        errors.append([float(np.max(np.abs(got[k] - want[k])) / max(1.0, float(np.max(np.abs(want[k])))))
                       for k in ("y", "state_out")])
    return np.array(errors)


def _chip_step(compiled) -> Step:
    sim = Simulator(compiled.program)

    def step(x: np.ndarray, state: np.ndarray) -> dict[str, np.ndarray]:
        result = sim.run({"X": x, "state": state})
        for name, want in reference_outputs(compiled.graph, {"X": x[None], "state": state[None]}).items():
            np.testing.assert_array_equal(result.raw_outputs[name], want[0], err_msg=f"{name} is not bit-exact")
        return result.outputs
    return step


def _assert_no_drift(errors: np.ndarray) -> None:
    assert np.all(errors <= TOLERANCE[8]), errors.max(axis=0)
    quarter = len(errors) // 4
    assert np.all(errors[-quarter:].max(axis=0) <= 2 * errors[:quarter].max(axis=0)), errors


@pytest.fixture(scope="module")
def packed():
    model = packed_lstm()
    return model, compile_model(model, Target(), _calibration(model, (1, 1, HIDDEN, 2)))


def test_the_packed_state_gets_a_scale_per_slice(packed):
    _, compiled = packed
    (x, state), (y, state_out) = compiled.program.inputs, compiled.program.outputs
    assert (x.slices, y.slices) == ((), ())
    assert state.slice_axis == state_out.slice_axis == 3
    (_, h_in), (_, c_in) = state.slices
    assert state.scale == c_in > 4 * h_in  # h no longer quantised with the scale c needs
    assert state_out.slices == ((1, 2.0 ** -15), (1, 2.0 ** -12))  # each cell's own format, no rescale
    assert not any(n.op == "rescale" and n.inputs[0] in ("h_u", "c_u") for n in compiled.graph.nodes)


def test_packed_lstm_state_closed_loop_100_steps(packed):
    model, compiled = packed
    _assert_no_drift(_closed_loop(model, _chip_step(compiled), (1, 1, HIDDEN, 2)))


def test_tf_style_state_split_and_concatenated(tmp_path):
    model = split_lstm()
    compiled = compile_model(model, Target(), _calibration(model, (1, 2 * HIDDEN)))
    state, state_out = compiled.program.inputs[1], compiled.program.outputs[1]
    assert state.slice_axis == state_out.slice_axis == 1
    assert [n for n, _ in state.slices] == [n for n, _ in state_out.slices] == [HIDDEN, HIDDEN]
    _assert_no_drift(_closed_loop(model, _chip_step(compiled), (1, 2 * HIDDEN), steps=40))


def test_an_input_read_whole_or_of_one_range_keeps_one_scale():
    model = packed_lstm()
    calibration = _calibration(model, (1, 1, HIDDEN, 2))
    calibration["X"] = calibration["X"] * np.geomspace(0.01, 10, INPUTS)  # X's columns differ 1000x
    calibration["state"] = np.clip(calibration["state"], -1, 1)  # h and c of one range
    inputs = {k: v[0] for k, v in calibration.items()}
    checked = run_checked(model, inputs, calibration=calibration)
    assert [d.slices for d in checked.compiled.program.inputs] == [(), ()]  # X: the LSTM reads it whole


def test_partitioned_model_with_packed_state():
    model = packed_lstm(host_op=True)
    compiled = compile_model(model, Target(), _calibration(model, (1, 1, HIDDEN, 2)))
    island = compiled.islands[0].compiled
    assert [d.slice_axis for d in island.program.inputs if d.slices] == [3]
    sim = PartitionedSimulator(compiled.program)

    def step(x: np.ndarray, state: np.ndarray) -> dict[str, np.ndarray]:
        result = sim.run({"X": x, "state": state})
        (run,) = result.islands
        feeds = {k: v[None] for k, v in run.inputs.items()}
        for name, want in reference_outputs(island.graph, feeds).items():
            np.testing.assert_array_equal(run.result.raw_outputs[name], want[0], err_msg=name)
        return result.outputs
    _assert_no_drift(_closed_loop(model, step, (1, 1, HIDDEN, 2), steps=40))


def _exits_cleanly(main: Callable[[list[str]], None], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0


@pytest.mark.parametrize("host_op", [False, True])
def test_objdump_then_as_gives_identical_bytes(tmp_path, capsys, host_op):
    model = packed_lstm(host_op=host_op)
    compiled = compile_model(model, Target(), _calibration(model, (1, 1, HIDDEN, 2)))
    programfile.save(compiled.program, str(tmp_path / "p.rnna"))
    _exits_cleanly(objdump_main, [str(tmp_path / "p.rnna")])
    listing = capsys.readouterr().out
    assert "slices=[[1," in listing and "slice_axis=3" in listing
    (tmp_path / "p.s").write_text(listing)
    _exits_cleanly(as_main, [str(tmp_path / "p.s"), "-o", str(tmp_path / "q.rnna")])
    assert (tmp_path / "q.rnna").read_bytes() == (tmp_path / "p.rnna").read_bytes()

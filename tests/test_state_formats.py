"""Formats from calibration on models whose values go beyond the chip's natural formats: the LSTM cell
state in the hundreds, initial states beyond +-1 given as inputs, a logit beyond +-8 that also feeds
a Sigmoid, Relu states, each run the way its host runs it (closed loop: the state fed back) and
compared with ONNX Runtime and, bit for bit, with the golden reference (tests/numerics_cases.py)."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.ops.recurrent.formats import MIN_FRAC, state_frac
from compiler.passes.calibrate import calibrate
from compiler.passes.headroom import headroom_warnings
from compiler.passes.quantize import quantize_graph
from compiler.pipeline import compile_model
from isa.target import Target

from numerics_cases import CASES, calibration, measure, wake_word
from toolchain import TOLERANCE

# what each case must exercise: (layer state, the least its calibrated range must reach)
BEYOND = {"lstm-cell-loop": ("c", 50.0), "lstm-initial-states": ("h", 1.0), "gru-wake-loop": ("h", 1.0),
          "lstm-packed-loop": ("c", 50.0), "rnn-tanh-initial": ("h", 1.0), "rnn-relu-loop": ("h", 8.0),
          "gru-relu": ("h", 8.0)}


def _layer_states(measured) -> dict:
    (layer,) = [row for row in measured.compiled.report["layers"] if "states" in row]
    return layer["states"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_states_beyond_the_natural_formats_match_onnx_runtime(name):
    measured = measure(name)
    assert measured.exact, "a run differs from the golden reference"
    state, least = BEYOND[name]
    seen = _layer_states(measured)[state]
    assert seen["calibrated_max"] > least and seen["holds"], seen
    for output in measured.chip[0]:
        assert measured.error(output) <= TOLERANCE[8], f"{output}: {measured.error(output)}"


@pytest.mark.parametrize("name", [n for n, case in sorted(CASES.items()) if case.frames])
def test_a_closed_loop_does_not_drift(name):
    """The last quarter of the frames is as close to ONNX Runtime as the first."""
    measured = measure(name)
    frames = len(measured.chip)
    for output in measured.chip[0]:
        late = measured.error(output, slice(3 * frames // 4, None))
        assert late <= max(2 * measured.error(output, slice(0, frames // 4)), TOLERANCE[8] / 3), output


def test_an_lstm_cell_state_of_hundreds_keeps_sixteen_bit_accuracy():
    measured = measure("lstm-cell-loop", Target(weight_bits=16))
    assert measured.exact and _layer_states(measured)["c"]["format"] not in ("Q3.12", "Q15.0")
    assert all(measured.error(output) <= TOLERANCE[16] for output in measured.chip[0])


def test_a_logit_that_feeds_a_sigmoid_leaves_the_chip_whole():
    measured = measure("gru-wake-loop")
    logits = np.concatenate([w["logit"].ravel() for w in measured.want])
    assert np.max(np.abs(logits)) > 8
    chip = np.concatenate([c["logit"].ravel() for c in measured.chip])
    assert np.max(np.abs(chip - logits)) <= TOLERANCE[8] * np.max(np.abs(logits))


@pytest.mark.parametrize("natural,seen,frac", [(12, 7.9, 12), (12, 8.01, 10), (12, 442.0, 5), (15, 0.99, 15),
                                               (15, 3.0, 12), (12, 1e9, MIN_FRAC)])
def test_a_state_keeps_its_natural_format_until_calibration_leaves_it(natural, seen, frac):
    assert state_frac(natural, seen) == frac


def test_the_compiler_warns_once_per_value_its_format_cannot_hold():
    model = CASES["lstm-cell-loop"].model()
    data = calibration(CASES["lstm-cell-loop"], model)
    quiet: list[str] = []
    compile_model(model, Target(), data, log=quiet.append)
    assert not [line for line in quiet if line.startswith("warning")]
    loud: list[str] = []
    compile_model(model, Target(), {**data, "c0": data["c0"] * 1000}, log=loud.append)
    warned = [line for line in loud if line.startswith("warning")]
    assert any("layer 'lstm'" in line and "|c|" in line and "Q15.0" in line for line in warned), warned
    assert any("tensor 'c0'" in line for line in warned), warned
    assert len(warned) == len(set(warned))


def test_a_table_input_beyond_its_format_is_not_warned_about():
    """A Sigmoid's input saturating at +-8 is exact: the function is flat there."""
    from compiler.frontend.onnx_import import import_model

    from models import fc_model

    graph = import_model(fc_model(4, 6, 3, activation="Sigmoid"))
    calib = calibrate(graph, {"x": np.random.default_rng(0).standard_normal((16, 4, 6)) * 100})
    assert headroom_warnings(quantize_graph(graph, calib, Target()), calib) == []


def test_the_report_lists_each_state_with_its_format_and_range():
    model = wake_word()
    compiled = compile_model(model, Target(), calibration(CASES["gru-wake-loop"], model))
    (gru,) = [row for row in compiled.report["layers"] if row["op"] == "gru"]
    h = gru["states"]["h"]
    frac = round(-np.log2(h["scale"]))
    assert h["calibrated_max"] > 1 and h["format"] == f"Q{15 - frac}.{frac}"
    assert h["calibrated_max"] * 2 <= 32768 * h["scale"]

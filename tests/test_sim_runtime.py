"""The runtime API: quantise inputs, run, dequantise outputs; batches; input validation."""

from __future__ import annotations

import numpy as np
import pytest

from isa import container
from isa.errors import RnnaccelError
from runtime_sim import Simulator, load
from tests.sim_helpers import FEATURES, HIDDEN, STEPS, make_program, samples, tiny_rnn


@pytest.fixture(scope="module")
def sim() -> Simulator:
    return Simulator(tiny_rnn())


def test_run_returns_dequantised_outputs_shaped_as_declared(sim):
    result = sim.run({"x": samples(1)[0]})
    assert result.outputs["h"].shape == (HIDDEN,) and result.outputs["h"].dtype == np.float32
    assert result.raw_outputs["h"].dtype == np.int64
    np.testing.assert_array_equal(result.outputs["h"], (result.raw_outputs["h"] / 4096).astype(np.float32))
    assert np.abs(result.outputs["h"]).max() <= 8
    assert result.stats["instructions"] == len(result.trace) == STEPS + 4


def test_a_batch_equals_the_per_sample_runs(sim, monkeypatch):
    monkeypatch.setattr("runtime_sim.simulator.CHUNK", 3)  # several chunks, the last one partial
    xs = samples(7)
    batched = sim.run({"x": xs}, batch=True)
    assert batched.outputs["h"].shape == (7, HIDDEN)
    for i, x in enumerate(xs):
        single = sim.run({"x": x})
        np.testing.assert_array_equal(batched.raw_outputs["h"][i], single.raw_outputs["h"])
        assert single.stats == batched.stats


def test_integer_inputs_are_accepted(sim):
    result = sim.run({"x": np.zeros((STEPS, FEATURES), np.int32)})
    np.testing.assert_array_equal(result.raw_outputs["h"], 0)


@pytest.mark.parametrize("inputs, batch, message", [
    ({}, False, r"missing input\(s\) x; the program expects x"),
    ({"x": np.zeros((4, 10)), "y": np.zeros(1)}, False, r"unknown input\(s\) y; the program expects x"),
    ({"x": np.zeros((10, 4))}, False, r"input 'x' has shape \(10, 4\), expected \(4, 10\)"),
    ({"x": np.zeros((4, 10))}, True, r"input 'x' has shape \(4, 10\), expected \(N, 4, 10\)"),
    ({"x": np.full((4, 10), np.nan)}, False, r"input 'x' contains non-finite values"),
    ({"x": np.full((4, 10), "a")}, False, r"input 'x' has dtype <U1, expected a real numeric array"),
    ({"x": np.zeros((4, 10), bool)}, False, r"input 'x' has dtype bool"),
])
def test_bad_inputs_are_one_line_errors(sim, inputs, batch, message):
    with pytest.raises(RnnaccelError, match=message) as info:
        sim.run(inputs, batch=batch)
    assert "\n" not in str(info.value)


def test_load_reads_a_container(tmp_path, sim):
    path = tmp_path / "tiny.rnna"
    container.save(tiny_rnn(), str(path))
    x = samples(1)[0]
    np.testing.assert_array_equal(load(str(path)).run({"x": x}).raw_outputs["h"], sim.run({"x": x}).raw_outputs["h"])


def test_empty_batch_gives_empty_outputs(sim):
    assert sim.run({"x": samples(0)}, batch=True).outputs["h"].shape == (0, HIDDEN)


def test_batch_inputs_must_agree_on_the_sample_count():
    prog = make_program([], inputs={"a": (0, (2,)), "b": (2, (3,))}, outputs={"a2": (0, (2,))}, host=8)
    with pytest.raises(RnnaccelError, match=r"inputs disagree on the number of samples: \[4, 5\]"):
        Simulator(prog).run({"a": np.zeros((4, 2)), "b": np.zeros((5, 3))}, batch=True)
    out = Simulator(prog).run({"a": np.array([[0.5, -2.0]]), "b": np.zeros((1, 3))}, batch=True)
    np.testing.assert_array_equal(out.outputs["a2"], [[1.0, -2.0]])  # scale 1: round half up

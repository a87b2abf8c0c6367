"""Many streams at once: Stream holds them in chunks of CHUNK samples, a machine each; every
frame's raw outputs must be those of one machine stepping all samples, and a state region's raw
integers read and written across the chunks."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.pipeline import compile_model
from isa import numerics
from isa.errors import RnnaccelError
from runtime_sim import Simulator

from models import recurrent_model
from toolchain import random_inputs


def _time_slices(x: np.ndarray) -> list[np.ndarray]:
    """X [samples, T, 1, F] as T one-frame inputs [samples, 1, 1, F]."""
    return [x[:, t:t + 1] for t in range(x.shape[1])]


def _lstm_stream_program():
    """A small streaming LSTM (h and c as state) and frames for 7 streams, 5 frames each."""
    model = recurrent_model("LSTM", 5, 1, 3, 8, seed=7)
    calib = random_inputs(model, seed=8, samples=4)
    frames = _time_slices(random_inputs(model, seed=9, samples=7)["X"])
    return compile_model(model, calibration=calib, streaming=True).program, frames


def _one_machine_frames(sim: Simulator, frames: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The plain way to stream: one machine holding every sample, the program run on it per frame."""
    m, (x,) = sim.machine(len(frames[0])), sim.inputs
    outputs = []
    for frame in frames:
        m.write_host(x, numerics.quantize(frame, x.scales()))
        sim.execute(m)
        outputs.append({d.name: m.read_host(d) for d in sim.outputs})
    return outputs


@pytest.mark.parametrize("samples", [None, 1, 7])
def test_chunked_streams_equal_one_machine(samples, monkeypatch):
    """Streams held in chunks (3 samples a chunk, the last one partial) give every frame's raw
    outputs, statistics and trace of one machine stepping all samples together."""
    monkeypatch.setattr("runtime_sim.simulator.CHUNK", 3)
    program, frames = _lstm_stream_program()
    frames = [f[:samples or 1] for f in frames]
    sim = Simulator(program)
    stream = sim.stream(samples=samples)
    for t, (frame, expected) in enumerate(zip(frames, _one_machine_frames(sim, frames))):
        result = stream.step({"X": frame if samples else frame[0]})
        for name, raw in expected.items():
            want = raw if samples else raw[0]
            np.testing.assert_array_equal(result.raw_outputs[name], want, err_msg=f"{name} at {t}")
        assert result.stats == sim.stats and result.trace == sim.timing.trace


def test_read_state_is_each_streams_state(monkeypatch):
    """After a frame, the state regions hold what the program left at their addresses: h and c
    are Y_h and Y_c (same scale, as the whole-sequence program carries them)."""
    monkeypatch.setattr("runtime_sim.simulator.CHUNK", 3)
    program, frames = _lstm_stream_program()
    stream = Simulator(program).stream(samples=7)
    assert all(not stream.read_state(d).any() for d in program.state)
    result = stream.step({"X": frames[0]})
    h, c = program.state
    assert stream.read_state(h).shape == (7, h.size) and stream.read_state(h).dtype == np.int64
    np.testing.assert_array_equal(stream.read_state(h), result.raw_outputs["Y_h"].reshape(7, -1))
    np.testing.assert_array_equal(stream.read_state(c), result.raw_outputs["Y_c"].reshape(7, -1))


def test_write_state_resumes_a_stream(monkeypatch):
    """A fresh stream given another stream's state continues it bit for bit; bad values are refused."""
    monkeypatch.setattr("runtime_sim.simulator.CHUNK", 3)
    program, frames = _lstm_stream_program()
    sim = Simulator(program)
    ahead, fresh = sim.stream(samples=7), sim.stream(samples=7)
    for frame in frames[:3]:
        ahead.step({"X": frame})
    for desc in program.state:
        fresh.write_state(desc, ahead.read_state(desc))
    for frame in frames[3:]:
        expected = ahead.step({"X": frame}).raw_outputs["Y"]
        np.testing.assert_array_equal(fresh.step({"X": frame}).raw_outputs["Y"], expected)
    h, too_large = program.state[0], np.zeros((7, 8), np.int64)
    too_large[2, 3] = 40000
    with pytest.raises(RnnaccelError, match=r"'state:lstm/d0/h' takes integers of shape \(7, 8\), not int64 \(1, 8\)"):
        fresh.write_state(h, np.zeros((1, 8), np.int64))
    with pytest.raises(RnnaccelError, match=r"takes integers of shape \(7, 8\), not float32"):
        fresh.write_state(h, np.zeros((7, 8), np.float32))
    with pytest.raises(RnnaccelError, match=r"holds activations in \[-32768, 32767\]; the values reach \[0, 40000\]"):
        fresh.write_state(h, too_large)

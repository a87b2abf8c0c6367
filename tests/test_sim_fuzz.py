"""Property test: random small LSTM, GRU, RNN and FC layers, compiled and simulated, equal the
golden reference bit for bit (tests/toolchain.run_checked also audits the trace and the
objdump -> as round trip). Few examples, small shapes: this runs in every `make test`."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.passes.compress import Compression
from isa.target import Target

from models import fc_model, recurrent_model
from toolchain import random_inputs, run_checked

dims = st.integers(1, 12)
targets = st.builds(Target, macs=st.sampled_from([8, 16, 32]), weight_bits=st.sampled_from([8, 16]))
compressions = st.none() | st.builds(Compression, st.sampled_from([2, 3, 4]), st.sampled_from(["tile", "matrix"]),
                                     prune=st.sampled_from([0.0, 0.0, 0.4, 0.8]))


@st.composite
def recurrent_layers(draw):
    op = draw(st.sampled_from(["LSTM", "GRU", "RNN"]))
    options = {"direction": draw(st.sampled_from(["forward", "reverse", "bidirectional"])),
               "layout": draw(st.integers(0, 1)), "seed": draw(st.integers(0, 1000))}
    if op == "GRU":
        options["linear_before_reset"] = draw(st.integers(0, 1))
    if op == "LSTM":
        options["peepholes"] = draw(st.booleans())
    return recurrent_model(op, draw(st.integers(1, 5)), draw(st.integers(1, 2)), draw(dims), draw(dims), **options)


@st.composite
def fc_layers(draw):
    activation = draw(st.sampled_from([None, "Relu", "Sigmoid", "Tanh"]))
    return fc_model(draw(st.integers(1, 3)), draw(dims), draw(dims), seed=draw(st.integers(0, 1000)),
                    activation=activation, gemm=draw(st.booleans()))


@given(recurrent_layers() | fc_layers(), targets, compressions, st.integers(0, 1000))
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
def test_random_layers_are_bit_exact(model, target, compression, seed):
    run_checked(model, random_inputs(model, seed=seed), target=target, compression=compression)

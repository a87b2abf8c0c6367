"""Bit-exact: the layer-level reference equals the instruction-level simulation, over many shapes.

Hidden sizes that are and are not multiples of the MAC count, input sizes from 1 to 300,
1 to 100 timesteps, batch 1 and 3, both layouts, initial state given or not, 8- and 16-bit
weights, several MAC counts. Every case also audits the trace and round-trips the listing.
"""

from __future__ import annotations

import pytest

from isa.target import Target

from models import fc_model, lstm_model
from toolchain import random_inputs, run_checked

LSTM_CASES = [
    # steps, batch, inputs, hidden, layout, initial
    (1, 1, 1, 1, 0, "none"),
    (3, 1, 10, 32, 0, "none"),
    (7, 3, 5, 33, 0, "inputs"),
    (5, 3, 300, 17, 1, "none"),
    (100, 1, 12, 20, 0, "const"),
    (12, 3, 40, 64, 1, "inputs"),
    (49, 1, 10, 64, 0, "none"),
    (4, 2, 64, 100, 0, "const"),
]


@pytest.mark.parametrize("steps,batch,inputs,hidden,layout,initial", LSTM_CASES)
def test_lstm_is_bit_exact(steps, batch, inputs, hidden, layout, initial):
    model = lstm_model(steps, batch, inputs, hidden, layout=layout, initial=initial, seed=steps + hidden)
    run_checked(model, random_inputs(model, seed=hidden))


@pytest.mark.parametrize("outputs", [("Y",), ("Y_h",), ("Y_c",), ("Y_h", "Y_c")])
def test_lstm_output_subsets_are_bit_exact(outputs):
    model = lstm_model(6, 2, 8, 24, outputs=outputs)
    run_checked(model, random_inputs(model, seed=3))


@pytest.mark.parametrize("macs", [8, 16, 64, 128, 256])
def test_lstm_bit_exact_at_other_mac_counts(macs):
    model = lstm_model(5, 1, 9, 70, seed=macs)
    checked = run_checked(model, random_inputs(model, seed=macs), target=Target(macs=macs))
    assert checked.stats["macs"] == macs


def test_lstm_bit_exact_with_16_bit_weights():
    model = lstm_model(8, 3, 20, 48, initial="inputs")
    run_checked(model, random_inputs(model, seed=4), target=Target(weight_bits=16))


FC_CASES = [(1, 1, 1, None), (1, 300, 12, None), (3, 64, 100, "Relu"), (2, 33, 31, "Sigmoid"),
            (4, 128, 64, "Tanh"), (1, 10, 257, "Relu")]


@pytest.mark.parametrize("rows,inputs,outputs,activation", FC_CASES)
@pytest.mark.parametrize("gemm", [True, False])
def test_fc_is_bit_exact(rows, inputs, outputs, activation, gemm):
    model = fc_model(rows, inputs, outputs, activation=activation, gemm=gemm, seed=inputs)
    run_checked(model, random_inputs(model, seed=outputs))


def test_fc_bit_exact_with_16_bit_weights_and_8_macs():
    model = fc_model(2, 50, 20, activation="Relu")
    run_checked(model, random_inputs(model, seed=1), target=Target(weight_bits=16, macs=8))


def test_the_references_float_product_is_exact_and_falls_back_to_integers_where_it_could_not_be():
    """accumulate sums in float64 through BLAS only while no sum can reach 2^53; both paths equal
    the integer product exactly, at int16 extremes and past the float limit."""
    import numpy as np

    from compiler.ir import QMatrix
    from compiler.ops.integer import EXACT, accumulate

    rng = np.random.default_rng(3)
    weights = rng.integers(-32768, 32768, (40, 300))
    q = QMatrix(weights, np.ones(40, np.int64), np.zeros(40, np.int64), rng.integers(-2**31, 2**31, 40))
    for x in (rng.integers(-32768, 32768, (5, 300)), np.full((2, 300), -32768), rng.integers(-2**34, 2**34, (3, 300))):
        expected = np.einsum("sk,rk->sr", x.astype(object), weights.astype(object)) + q.bias
        assert (accumulate(q, x) == expected.astype(np.int64)).all()
    assert 2**33 * q.largest_row_sum >= EXACT

"""Machine state after each instruction kind, against numpy written here (not isa.numerics)."""

from __future__ import annotations

import numpy as np
import pytest

from isa.errors import RnnaccelError
from isa.numerics import activation_table
from isa.target import Target
from runtime_sim import Simulator
from tests.sim_helpers import (
    RNG,
    I,
    host_images,
    make_program,
    requant_bytes,
    round_shift,
    run_state,
    sat16,
    weights_bytes,
)


def test_load_and_store_copy_ranges():
    host = host_images(40)
    m = run_state(make_program([I("LOAD", dst=100, src=5, n=20), I("STORE", dst=60, src=100, n=20)], host=128), host)
    np.testing.assert_array_equal(m.amem[:, 100:120], host[:, 5:25])
    np.testing.assert_array_equal(m.host[:, 60:80], host[:, 5:25])


@pytest.mark.parametrize("weight_bits", [8, 16])
def test_mv_is_the_weighted_sum_k_major(weight_bits):
    rows, cols, lim = 32, 50, 1 << (weight_bits - 1)
    w = RNG.integers(-lim, lim, (cols, rows))
    host = host_images(cols)
    code = [I("LOAD", dst=0, src=0, n=cols), I("MV", acc=7, w=0, x=0, rows=rows, cols=cols)]
    prog = make_program(code, weights=weights_bytes(w, weight_bits), target=Target(weight_bits=weight_bits))
    m = run_state(prog, host)
    np.testing.assert_array_equal(m.acc[:, 7:7 + rows], host.astype(np.int64) @ w)


def test_mvb_adds_int32_biases_and_mva_accumulates():
    rows, cols = 8, 12
    w1, w2 = RNG.integers(-128, 128, (cols, rows)), RNG.integers(-128, 128, (cols, rows))
    bias = RNG.integers(-(1 << 31), 1 << 31, rows)
    host = host_images(2 * cols)
    code = [I("LOAD", dst=0, src=0, n=2 * cols),
            I("MVB", acc=0, w=0, x=0, rows=rows, cols=cols, bias=4000),
            I("MVA", acc=0, w=rows * cols, x=cols, rows=rows, cols=cols)]
    weights = weights_bytes(w1) + weights_bytes(w2)
    prog = make_program(code, weights=weights, biases=bias.astype("<i4").tobytes(), bias_base=4000)
    m = run_state(prog, host)
    x = host.astype(np.int64)
    np.testing.assert_array_equal(m.acc[:, :rows], bias + x[:, :cols] @ w1 + x[:, cols:] @ w2)


@pytest.mark.parametrize("weight_bits", [8, 16])
def test_mvdb_and_mvda_give_each_lane_its_own_channel(weight_bits):
    """acc[r] = bias[r] + sum_t W[t, r] * x[t*step + r], the weights tap-major; MVDA adds on."""
    rows, taps, step, lim = 32, 3, 40, 1 << (weight_bits - 1)
    w1, w2 = RNG.integers(-lim, lim, (taps, rows)), RNG.integers(-lim, lim, (2, rows))
    bias = RNG.integers(-(1 << 31), 1 << 31, rows)
    host = host_images(200)
    code = [I("LOAD", dst=0, src=0, n=200),
            I("MVDB", acc=3, w=0, x=5, rows=rows, taps=taps, step=step, bias=4000),
            I("MVDA", acc=3, w=taps * rows * weight_bits // 8, x=7, rows=rows, taps=2, step=1)]
    prog = make_program(code, weights=weights_bytes(w1, weight_bits) + weights_bytes(w2, weight_bits),
                        biases=bias.astype("<i4").tobytes(), bias_base=4000, target=Target(weight_bits=weight_bits))
    m = run_state(prog, host)
    x, lanes = host.astype(np.int64), np.arange(rows)
    want = bias + sum(w1[t] * x[:, 5 + t * step + lanes] for t in range(taps)) \
        + sum(w2[t] * x[:, 7 + t + lanes] for t in range(2))
    np.testing.assert_array_equal(m.acc[:, 3:3 + rows], want)


def test_a_depthwise_instruction_wider_than_the_array_is_refused():
    code = [I("MVDA", acc=0, w=0, x=0, rows=40, taps=1, step=0)]
    with pytest.raises(RnnaccelError, match="40 rows x split 1 do not fit the 32 MAC lanes"):
        run_state(make_program(code, weights=bytes(64)), host_images(8))


def _acc_program(extra: list, n: int, q_bytes: bytes) -> tuple:
    """LOAD x, MV with identity-like weights scaled up so acc holds large values, then `extra`."""
    w = RNG.integers(-128, 128, (n, n))
    code = [I("LOAD", dst=0, src=0, n=2 * n), I("MV", acc=0, w=0, x=0, rows=n, cols=n), *extra]
    weights = weights_bytes(w)
    prog = make_program(code, weights=weights + bytes(2048 - len(weights)) + q_bytes)
    host = host_images(2 * n)
    return prog, host, host[:, :n].astype(np.int64) @ w


def test_vrq_requantises_per_element_with_saturation():
    n = 16
    mult, shift = RNG.integers(1 << 14, 1 << 15, n), RNG.integers(0, 40, n)
    prog, host, acc = _acc_program([I("VRQ", dst=300, src=0, n=n, q=2048)], n, requant_bytes(mult, shift))
    m = run_state(prog, host)
    want = sat16(round_shift(np.clip(acc, -(1 << 31), (1 << 31) - 1) * mult, shift))
    np.testing.assert_array_equal(m.amem[:, 300:300 + n], want)


def test_vrqa_requantises_adds_and_saturates_once():
    n = 16
    mult, shift = RNG.integers(1 << 14, 1 << 15, n), RNG.integers(10, 30, n)
    code = [I("VRQA", dst=300, src=0, n=n, q=2048, add=n)]
    prog, host, acc = _acc_program(code, n, requant_bytes(mult, shift))
    m = run_state(prog, host)
    want = sat16(round_shift(np.clip(acc, -(1 << 31), (1 << 31) - 1) * mult, shift) + host[:, n:])
    np.testing.assert_array_equal(m.amem[:, 300:300 + n], want)


def test_vrq_rejects_a_shift_outside_range():
    prog, host, _ = _acc_program([I("VRQ", dst=300, src=0, n=2, q=2048)], 2, requant_bytes([16384, 1], [3, -1]))
    with pytest.raises(RnnaccelError, match=r"pc 2: requantisation shift -1 at wmem 2054"):
        run_state(prog, host)


def _lerp_table(func: str, x: np.ndarray) -> np.ndarray:
    t = activation_table(func)
    u = x.astype(np.int64) + 32768
    i, frac = u >> 8, u & 255
    return t[i] + (((t[i + 1] - t[i]) * frac + 128) >> 8)


def _edges(n: int) -> np.ndarray:
    host = host_images(n)
    host[0, :4] = [-32768, 32767, 0, -1]
    return host


@pytest.mark.parametrize("index,func", [(0, "sigmoid"), (1, "tanh")])
def test_vact_applies_the_numbered_table(index, func):
    n, host = 64, _edges(64)
    m = run_state(make_program([I("LOAD", dst=0, src=0, n=n), I("VACT", dst=0, src=0, n=n, table=index)]), host)
    got = m.amem[:, :n].astype(np.int64)
    np.testing.assert_array_equal(got, _lerp_table(func, host))
    ref = {"sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh}[func](host / 4096.0)
    assert np.abs(got / 32768.0 - ref).max() < 2e-3


@pytest.mark.parametrize("up", [1, 4, 12])
def test_vact_shifts_its_input_into_q312_saturating(up):
    """A value with 12 - up fraction bits reads as Q3.12 after a left shift that saturates: tanh of
    a cell state of 100 in Q7.8 is tanh(8)."""
    n, host = 64, _edges(64)
    m = run_state(make_program([I("LOAD", dst=0, src=0, n=n), I("VACT", dst=0, src=0, n=n, table=1, up=up)]), host)
    shifted = np.clip(host.astype(np.int64) * (1 << up), -32768, 32767)
    np.testing.assert_array_equal(m.amem[:, :n].astype(np.int64), _lerp_table("tanh", shifted))
    assert np.abs(m.amem[:, :n] / 32768.0 - np.tanh(host * 2.0 ** (up - 12))).max() < 2e-3


def test_vrelu_is_exact():
    n, host = 64, _edges(64)
    m = run_state(make_program([I("LOAD", dst=0, src=0, n=n), I("VRELU", dst=0, src=0, n=n)]), host)
    np.testing.assert_array_equal(m.amem[:, :n], np.maximum(host, 0))


def test_vsub_and_vclamp_saturate_and_clamp():
    n, host = 8, host_images(16)
    host[0, :2], host[0, 8:10] = [-32768, 32767], [32767, -32768]
    code = [I("LOAD", dst=0, src=0, n=16), I("VSUB", dst=100, a=0, b=8, n=n),
            I("VCLAMP", dst=200, src=0, n=n, lo=-1000, hi=2000)]
    m = run_state(make_program(code), host)
    wide = host.astype(np.int64)
    np.testing.assert_array_equal(m.amem[:, 100:108], np.clip(wide[:, :8] - wide[:, 8:16], -32768, 32767))
    np.testing.assert_array_equal(m.amem[:, 200:208], np.clip(host[:, :8], -1000, 2000))


def test_vact_without_its_table_is_an_error():
    prog = make_program([I("VACT", dst=0, src=0, n=4, table=2)])
    with pytest.raises(RnnaccelError, match=r"pc 0 \(VACT\): table 2 does not exist \(the program has 2\)"):
        Simulator(prog).execute(Simulator(prog).machine(1))


def test_vmul_vadd_vscale_vmov():
    n = 24
    host = host_images(2 * n)
    host[:, 0], host[:, n] = 30000, 30000  # saturation in VADD
    code = [I("LOAD", dst=0, src=0, n=2 * n),
            I("VMUL", dst=100, a=0, b=n, n=n, shift=13),
            I("VADD", dst=200, a=0, b=n, n=n),
            I("VSCALE", dst=300, src=0, n=n, mult=40000, shift=15),
            I("VMOV", dst=400, src=n, n=n)]
    m = run_state(make_program(code), host)
    a, b = host[:, :n].astype(np.int64), host[:, n:].astype(np.int64)
    np.testing.assert_array_equal(m.amem[:, 100:100 + n], sat16(round_shift(a * b, 13)))
    np.testing.assert_array_equal(m.amem[:, 200:200 + n], sat16(a + b))
    assert (m.amem[:, 200] == 32767).all()
    np.testing.assert_array_equal(m.amem[:, 300:300 + n], sat16(round_shift(a * 40000, 15)))
    np.testing.assert_array_equal(m.amem[:, 400:400 + n], b)


@pytest.mark.parametrize("instr, message", [
    (I("LOAD", dst=32760, src=0, n=30),
     r"pc 1 \(LOAD\): amem range \[32760, 32790\) outside activation memory \(32768 elements\)"),
    (I("LOAD", dst=0, src=120, n=10), r"pc 1 \(LOAD\): host range \[120, 130\) outside host memory \(128 elements\)"),
    (I("MV", acc=4090, w=0, x=0, rows=8, cols=1), r"pc 1 \(MV\): acc range \[4090, 4098\) outside accumulator memory"),
    (I("MV", acc=0, w=524280, x=0, rows=8, cols=2), r"pc 1 \(MV\): wmem range \[524280, 524296\) outside weight mem"),
    (I("VRQ", dst=0, src=0, n=4, q=524280), r"pc 1 \(VRQ\): wmem range \[524280, 524296\)"),
    (I("MV", acc=0, w=0, x=0, rows=33, cols=1), r"pc 1 \(MV\): 33 rows x split 1 do not fit the 32 MAC lanes"),
])
def test_bad_instructions_are_errors_naming_the_pc(instr, message):
    sim = Simulator(make_program([I("VMOV", dst=0, src=1, n=1), instr], host=128))
    with pytest.raises(RnnaccelError, match=message):
        sim.run({})


def test_descriptor_outside_host_memory_is_an_error():
    prog = make_program([], inputs={"x": (120, (10,))}, host=128)
    with pytest.raises(RnnaccelError, match=r"input 'x' at host range \[120, 130\)"):
        Simulator(prog).run({"x": np.zeros(10)})

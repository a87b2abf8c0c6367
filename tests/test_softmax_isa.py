"""The softmax instructions (VRMAX, VSUBS, VRSUM, VNORM, VLOG): machine state after each, against
numpy written here (not isa.numerics), and their cost and footprint as the trace shows them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from isa.numerics import activation_table
from isa.target import Target
from runtime_sim import Simulator
from tests.sim_helpers import I, make_program, run_state

RNG = np.random.default_rng(99)
B = 3
N = 20


def _host(n: int = N, lo: int = -32768, hi: int = 32768) -> np.ndarray:
    """Random activations; the extremes in the first sample where the range has them."""
    host = RNG.integers(lo, hi, (B, n)).astype(np.int16)
    if lo < 0 and n > 1:
        host[0, :2] = [-32768, 32767]
    return host


def _with_tables(code: list, *names: str):
    prog = make_program(code)
    return dataclasses.replace(prog, tables={name: activation_table(name) for name in names})


def _sum_into(acc: int, n: int = N) -> list:
    return [I("LOAD", dst=0, src=0, n=n), I("VRSUM", dst=acc, src=0, n=n)]


def test_vrmax_writes_the_largest_element():
    host = _host()
    m = run_state(make_program([I("LOAD", dst=0, src=0, n=N), I("VRMAX", dst=50, src=0, n=N)]), host)
    np.testing.assert_array_equal(m.amem[:, 50], host.max(axis=1))


def test_vsubs_broadcasts_the_scalar_and_saturates():
    host = _host(N + 1)
    host[:, N] = [32767, -32768, 5]
    code = [I("LOAD", dst=0, src=0, n=N + 1), I("VSUBS", dst=100, a=0, s=N, n=N)]
    m = run_state(make_program(code), host)
    wide = host.astype(np.int64)
    np.testing.assert_array_equal(m.amem[:, 100:100 + N], np.clip(wide[:, :N] - wide[:, N:], -32768, 32767))


def test_vrsum_writes_the_exact_sum_to_one_accumulator():
    n = 3000
    host = np.full((B, n), 32767, np.int16)
    host[1] = _host(n)[1]
    m = run_state(make_program(_sum_into(acc=7, n=n)), host)
    np.testing.assert_array_equal(m.acc[:, 7], host.astype(np.int64).sum(axis=1))
    assert m.acc[0, 7] == 32767 * n  # beyond 16 bits: nothing saturates


def test_vnorm_divides_rounding_half_up():
    host = _host(lo=0, hi=32768)
    host[0, :4] = [1, 2, 3, 32767]
    code = [*_sum_into(acc=3), I("VNORM", dst=100, src=0, n=N, s=3)]
    m = run_state(make_program(code), host)
    a, total = host.astype(np.int64), host.astype(np.int64).sum(axis=1, keepdims=True)
    want = np.clip((a * 2 ** 16 + total) // (2 * total), -32768, 32767)  # floor(a * 2^15 / total + 1/2)
    np.testing.assert_array_equal(m.amem[:, 100:100 + N], want)


def test_vnorm_by_a_sum_smaller_than_the_element_saturates():
    host = np.array([[30000, -30000, 2, 0]] * B, np.int16)
    code = [I("LOAD", dst=0, src=0, n=4), I("VRSUM", dst=0, src=2, n=1), I("VNORM", dst=10, src=0, n=2, s=0)]
    m = run_state(make_program(code), host)
    np.testing.assert_array_equal(m.amem[:, 10:12], [[32767, -32768]] * B)


def _log_model(total: int) -> int:
    """ln(total / 2^15) in Q4.11 by the documented recipe: normalise, look the mantissa up, add k ln 2."""
    k = total.bit_length() - 1
    mantissa = total << (16 - k) if k <= 16 else total >> (k - 16)
    code = mantissa - 65536 - 32768
    t = activation_table("lnmant")
    i, frac = (code + 32768) >> 8, (code + 32768) & 255
    ln_q15 = (k - 15) * 22713 + int(t[i] + (((t[i + 1] - t[i]) * frac + 128) >> 8))
    return (ln_q15 + 8) >> 4


@pytest.mark.parametrize("n", [1, 5, 400])
def test_vlog_is_the_normalised_table_log_of_an_accumulator(n):
    host = _host(n, lo=1, hi=32768)
    code = [*_sum_into(acc=9, n=n), I("VLOG", dst=600, src=9, table=1)]
    m = run_state(_with_tables(code, "exp", "lnmant"), host)
    totals = host.astype(np.int64).sum(axis=1)
    np.testing.assert_array_equal(m.amem[:, 600], [_log_model(int(t)) for t in totals])
    assert np.abs(m.amem[:, 600] / 2048 - np.log(totals / 32768)).max() <= 0.6 / 2048


def test_the_trace_shows_reductions_streaming_n_and_acc_written_by_vec():
    code = [*_sum_into(acc=5), I("VRMAX", dst=40, src=0, n=N), I("VNORM", dst=100, src=0, n=N, s=5),
            I("VLOG", dst=41, src=5, table=0)]
    result = Simulator(_with_tables(code, "lnmant")).run({})
    load, vrsum, vrmax, vnorm, vlog = result.trace
    lanes, latency = Target().vec_lanes, Target().vec_latency
    assert [r["end"] - r["start"] for r in (vrsum, vrmax, vnorm, vlog)] == [-(-N // lanes)] * 3 + [1]
    assert vrsum["writes"] == [["acc", 5, 1]] and vrmax["writes"] == [["amem", 40, 1]]
    assert ["acc", 5, 1] in vnorm["reads"] and vlog["reads"] == [["acc", 5, 1]]
    assert vnorm["start"] >= vrsum["ready"] == vrsum["end"] + latency  # RAW through accumulator memory
    assert vrsum["start"] >= load["ready"]

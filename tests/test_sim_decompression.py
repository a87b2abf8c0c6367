"""The decompression engine and the compressed layers' requantisation, instruction by instruction,
against numpy written here from the ISA's description."""

from __future__ import annotations

import numpy as np
import pytest

from isa.bitstream import pack_indices, unpack_indices
from isa.errors import RnnaccelError
from runtime_sim import Simulator

from sim_helpers import I, host_images, make_program, requant_bytes, round_shift, run_state, sat16

RNG = np.random.default_rng(11)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_index_streams_round_trip(bits):
    values = RNG.integers(0, 1 << bits, 101)
    packed = pack_indices(values, bits)
    assert len(packed) == -(-101 * bits // 8)
    np.testing.assert_array_equal(unpack_indices(packed, 101, bits), values)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_cbload_then_mvc_expands_the_codebook(bits):
    rows, cols, entries = 12, 9, 1 << bits
    book = RNG.integers(-128, 128, entries)
    index = RNG.integers(0, entries, (cols, rows))  # k-major, then row: the MV weight order
    stream = pack_indices(index, bits)
    weights = book.astype("<i1").tobytes() + bytes(16 - entries) + stream
    code = [I("CBLOAD", dst=32, src=0, n=entries), I("LOAD", dst=0, src=0, n=cols),
            I("MVC", acc=5, w=16, x=0, rows=rows, cols=cols, cb=32, bits=bits)]
    host = host_images(cols)
    m = run_state(make_program(code, weights=weights), host)
    np.testing.assert_array_equal(m.cbm[32:32 + entries], book)
    np.testing.assert_array_equal(m.acc[:, 5:5 + rows], host.astype(np.int64) @ book[index])


def test_mvc_reads_only_the_packed_bytes_and_takes_cols_cycles():
    code = [I("CBLOAD", dst=0, src=0, n=16), I("MVC", acc=0, w=16, x=0, rows=32, cols=10, cb=0, bits=3)]
    sim = Simulator(make_program(code, weights=bytes(16 + 120)))
    cbload, mvc = sim.timing.trace
    assert mvc["reads"][0] == ["wmem", 16, 120] and mvc["reads"][2] == ["cbm", 0, 16]
    assert mvc["end"] - mvc["start"] == 10 and mvc["start"] >= cbload["ready"]
    assert cbload["unit"] == "DEC" and sim.stats["weight_bytes_read"] == 16 + 120


def _pruned_stream(rows: int, cols: int, bits: int, keep: float):
    """A random bitmap and the kept weights' indices, as MVCS reads them (k-major, then row)."""
    kept = RNG.random((cols, rows)) < keep
    index = RNG.integers(0, 1 << bits, (cols, rows))
    return kept, index, pack_indices(kept, 1) + pack_indices(index[kept], bits)


@pytest.mark.parametrize("bits,keep", [(2, 0.3), (4, 0.7), (3, 0.0), (2, 1.0)])
def test_mvcs_expands_kept_weights_and_zeros_the_rest(bits, keep):
    rows, cols, entries = 12, 9, 1 << bits
    book = RNG.integers(-128, 128, entries)
    kept, index, stream = _pruned_stream(rows, cols, bits, keep)
    code = [I("CBLOAD", dst=32, src=0, n=entries), I("LOAD", dst=0, src=0, n=cols),
            I("MVCS", acc=5, w=16, x=0, rows=rows, cols=cols, cb=32, bits=bits, nnz=int(kept.sum()))]
    host = host_images(cols)
    m = run_state(make_program(code, weights=book.astype("<i1").tobytes() + bytes(16 - entries) + stream), host)
    np.testing.assert_array_equal(m.acc[:, 5:5 + rows], host.astype(np.int64) @ np.where(kept, book[index], 0))


def test_mvcs_reads_the_bitmap_and_kept_indices_and_takes_mvc_cycles():
    rows, cols, bits = 32, 10, 2
    kept, _, stream = _pruned_stream(rows, cols, bits, 0.25)
    nnz = int(kept.sum())
    code = [I("CBLOAD", dst=0, src=0, n=4),
            I("MVCS", acc=0, w=16, x=0, rows=rows, cols=cols, cb=0, bits=bits, nnz=nnz)]
    sim = Simulator(make_program(code, weights=bytes(16) + stream))
    mvcs = sim.timing.trace[1]
    assert mvcs["reads"][0] == ["wmem", 16, 40 + -(-nnz * bits // 8)] == ["wmem", 16, len(stream)]
    assert mvcs["end"] - mvcs["start"] == cols and mvcs["macs"] == rows * cols


def test_a_bitmap_that_disagrees_with_nnz_names_the_pc():
    kept, _, stream = _pruned_stream(8, 4, 2, 0.5)
    code = [I("CBLOAD", dst=0, src=0, n=4), I("LOAD", dst=0, src=0, n=4),
            I("MVCS", acc=0, w=16, x=0, rows=8, cols=4, cb=0, bits=2, nnz=int(kept.sum()) + 1)]
    with pytest.raises(RnnaccelError, match=f"pc 2: the bitmap at wmem 16 keeps {int(kept.sum())} weights, "
                                            f"the instruction says {int(kept.sum()) + 1}"):
        run_state(make_program(code, weights=bytes(16) + stream + bytes(1)), host_images(4))


def _compressed_requant(extra, n, tail: bytes):
    """LOAD x; MV with random weights into acc; then `extra` reading parameters at wmem 2048."""
    w = RNG.integers(-128, 128, (n, n))
    code = [I("LOAD", dst=0, src=0, n=2 * n), I("MV", acc=0, w=0, x=0, rows=n, cols=n), *extra]
    weights = w.astype("<i1").tobytes()
    prog = make_program(code, weights=weights + bytes(2048 - len(weights)) + tail)
    host = host_images(2 * n)
    return prog, host, host[:, :n].astype(np.int64) @ w


def test_vrqc_adds_shifted_weight_bits_biases():
    n, mult, shift, bshift = 16, 23000, 19, 5
    bias = RNG.integers(-128, 128, n)
    tail = requant_bytes(np.array([mult]), np.array([shift])) + bias.astype("<i1").tobytes()
    prog, host, acc = _compressed_requant([I("VRQC", dst=300, src=0, n=n, q=2048, bias=2052, bshift=bshift)], n, tail)
    want = sat16(round_shift(np.clip(acc, -(1 << 31), (1 << 31) - 1) * mult, shift) + (bias << bshift))
    np.testing.assert_array_equal(run_state(prog, host).amem[:, 300:300 + n], want)


def test_vrqac_uses_one_multiplier_for_all_elements():
    n, mult, shift = 16, 30000, 21
    prog, host, acc = _compressed_requant([I("VRQAC", dst=300, src=0, n=n, q=2048, add=n)], n,
                                          requant_bytes(np.array([mult]), np.array([shift])))
    want = sat16(round_shift(np.clip(acc, -(1 << 31), (1 << 31) - 1) * mult, shift) + host[:, n:])
    np.testing.assert_array_equal(run_state(prog, host).amem[:, 300:300 + n], want)

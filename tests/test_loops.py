"""Hardware loops: the sequencer's expansion, its errors, and the compiler folding timesteps into
loops so that code size does not grow with the sequence."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from compiler.pipeline import compile_model
from isa.errors import RnnaccelError
from isa.loops import STRIDE_SLOTS, counted, expand_program
from runtime_sim import Simulator

from sim_helpers import I, host_images, make_program, run_state
from toolchain import random_inputs, run_checked

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_models import recurrent_classifier  # noqa: E402


def _strides(*rows: list[int]) -> bytes:
    table = np.zeros((len(rows), STRIDE_SLOTS), np.int16)
    for i, row in enumerate(rows):
        table[i, :len(row)] = row
    return table.astype("<i2").tobytes()


def test_loop_repeats_its_body_with_strided_fields():
    # VMOV dst=100+4i src=0+4i n=4, four times: copies host[0:16] to amem[100:116] in steps
    code = [I("LOAD", dst=0, src=0, n=16), I("LOOP", count=4, body=1, strides=0), I("VMOV", dst=100, src=0, n=4)]
    host = host_images(16)
    m = run_state(make_program(code, weights=_strides([4, 4, 0])), host)
    np.testing.assert_array_equal(m.amem[:, 100:116], host)
    trace = Simulator(make_program(code, weights=_strides([4, 4, 0]))).timing.trace
    assert [r["pc"] for r in trace] == [0, 1, 2, 2, 2, 2]
    assert [r["writes"][0][1] for r in trace[2:]] == [100, 104, 108, 112]


def test_counted_stands_one_instruction_for_all_iterations_where_its_figures_do_not_move():
    # the first VMOV advances addresses only, the second its length: the one counted once (times 4),
    # the other expanded; both sum to what the expanded stream sums to
    code = [I("LOOP", count=4, body=2, strides=0), I("VMOV", dst=100, src=0, n=4), I("VMOV", dst=200, src=0, n=1)]
    program = make_program(code, weights=_strides([4, 4, 0], [0, 0, 1]))
    stream = counted(program, lambda instr, strides: not strides[2])
    assert stream[0] == (0, program.code[0], 1)
    assert [(pc, instr["n"], times) for pc, instr, times in stream[1:]] == \
        [(1, 4, 4), (2, 1, 1), (2, 2, 1), (2, 3, 1), (2, 4, 1)]
    expanded = expand_program(program)[1:]
    assert sum(instr["n"] * times for _, instr, times in stream[1:]) == sum(instr["n"] for _, instr in expanded)


@pytest.mark.parametrize("code,message", [
    ([I("LOOP", count=2, body=3, strides=0), I("VMOV", dst=0, src=0, n=1)], "does not fit the program"),
    ([I("LOOP", count=2, body=2, strides=0), I("VMOV", dst=0, src=0, n=1), I("LOOP", count=1, body=1, strides=0)],
     "loops do not nest"),
    ([I("LOOP", count=3, body=1, strides=0), I("VMOV", dst=0, src=0, n=1)],
     r"pc 1 \(VMOV\): loop iteration 1 takes dst to -1"),
])
def test_bad_loops_are_refused_naming_the_pc(code, message):
    program = make_program(code, weights=_strides([-1, 0, 0], [0, 0, 0]))
    with pytest.raises(RnnaccelError, match=message):
        expand_program(program)


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_code_size_does_not_grow_with_the_sequence(cell):
    def size(steps: int) -> int:
        return compile_model(recurrent_classifier(cell, 32, steps=steps)).report["total"]["code_bytes"]

    assert size(49) == size(99) == size(491)
    assert size(50) == size(490)


def test_looped_programs_stay_bit_exact_and_fast():
    model = recurrent_classifier("LSTM", 64, steps=30)
    checked = run_checked(model, random_inputs(model, seed=1))
    program = checked.compiled.program
    assert any(i.mnemonic == "LOOP" for i in program.code)
    assert len(expand_program(program)) > 3 * len(program.code)
    assert checked.stats["mac_utilization"] >= 0.97

"""The cycle model: busy cycles, latencies, scoreboard stalls, concurrency and the statistics."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from isa.encoding import Instruction
from isa.table import OPS
from isa.target import Target
from runtime_sim import Simulator
from tests.sim_helpers import I, make_program
from tests.trace_audit import audit_trace


def schedule(code: list, target: Target | None = None, **kw) -> tuple[list[dict], dict]:
    sim = Simulator(make_program(code, target=target, **kw))
    return sim.timing.trace, sim.stats


def span(record: dict) -> tuple[int, int, int]:
    return record["start"], record["end"], record["ready"]


def test_mac_busy_is_cols_and_ready_adds_mac_latency():
    trace, _ = schedule([I("MV", acc=0, w=0, x=0, rows=32, cols=50)])
    assert span(trace[0]) == (0, 50, 54)
    assert trace[0]["macs"] == 32 * 50


def test_vec_busy_is_n_over_lanes_rounded_up():
    trace, _ = schedule([I("VMOV", dst=100, src=0, n=17), I("VADD", dst=200, a=0, b=0, n=8)])
    assert span(trace[0]) == (0, 3, 7)
    assert span(trace[1]) == (3, 4, 8)  # in order on VEC, no wait for the latency of an unrelated result


def test_dma_busy_is_bytes_over_bandwidth_plus_latency():
    trace, _ = schedule([I("LOAD", dst=0, src=0, n=13)])
    assert span(trace[0]) == (0, 4, 24)  # ceil(2 * 13 / 8) = 4 cycles, then dma_latency 20


def test_latencies_come_from_the_target():
    target = Target(mac_latency=9, vec_latency=1, dma_latency=3, dma_bytes_per_cycle=2, vec_lanes=4)
    trace, _ = schedule([I("MV", acc=0, w=0, x=0, rows=4, cols=5), I("VMOV", dst=100, src=0, n=9),
                         I("LOAD", dst=200, src=0, n=3)], target)
    assert [span(r) for r in trace] == [(0, 5, 14), (0, 3, 4), (0, 3, 6)]


def test_raw_waits_for_the_producer_ready_and_counts_as_stall():
    trace, stats = schedule([I("LOAD", dst=0, src=0, n=8), I("VMOV", dst=100, src=4, n=8)])
    assert span(trace[1]) == (22, 23, 27)
    assert stats["unit_stall_cycles"] == {"DMA": 0, "MAC": 0, "VEC": 22, "DEC": 0, "SEQ": 0}
    assert stats["stall_cycles"] == 22


def test_war_waits_for_the_reader_to_end():
    trace, stats = schedule([I("MV", acc=0, w=0, x=0, rows=8, cols=64), I("LOAD", dst=60, src=0, n=8)])
    assert trace[1]["start"] == 64
    assert stats["unit_stall_cycles"]["DMA"] == 64


def test_waw_waits_for_the_earlier_write_to_land():
    trace, _ = schedule([I("VMOV", dst=100, src=0, n=8), I("LOAD", dst=104, src=0, n=8)])
    assert trace[1]["start"] == trace[0]["ready"] == 5


def test_accumulation_chain_waits_for_the_accumulator():
    trace, _ = schedule([I("MV", acc=0, w=0, x=0, rows=8, cols=10), I("MVA", acc=0, w=0, x=0, rows=8, cols=10),
                         I("VRQ", dst=100, src=0, n=8, q=1000)])
    assert [span(r) for r in trace] == [(0, 10, 14), (14, 24, 28), (28, 29, 33)]


def test_independent_units_run_concurrently():
    code = [I("LOAD", dst=0, src=0, n=64), I("MV", acc=0, w=0, x=1000, rows=32, cols=40),
            I("VMOV", dst=2000, src=3000, n=64)]
    trace, stats = schedule(code)
    assert [r["start"] for r in trace] == [0, 0, 0]
    assert stats["cycles"] == max(r["ready"] for r in trace) == 40 + 4
    assert stats["stall_cycles"] == 0
    assert stats["unit_busy"] == {"DMA": 16, "MAC": 40, "VEC": 8, "DEC": 0, "SEQ": 0}


def test_stats_formulas():
    code = [I("MVB", acc=0, w=0, x=0, rows=32, cols=100, bias=8192), I("VRQ", dst=500, src=0, n=32, q=9000)]
    trace, stats = schedule(code)
    assert stats["cycles"] == 100 + 4 + 4 + 4
    assert stats["mac_ops"] == 3200
    assert stats["macs"] == 32
    assert stats["mac_utilization"] == pytest.approx(3200 / (32 * 112))
    assert stats["weight_bytes_read"] == 3200 + 32 * 4 + 32 * 4
    assert stats["instructions"] == 2
    assert stats["clock_mhz"] == 200
    assert stats["latency_us"] == pytest.approx(112 / 200)
    audit_trace(trace, stats, Target().to_dict())


def test_trace_records_footprints_from_the_table():
    trace, _ = schedule([I("VRQA", dst=10, src=20, n=5, q=40, add=60)])
    assert trace[0]["reads"] == [["acc", 20, 5], ["wmem", 40, 20], ["amem", 60, 5]]
    assert trace[0]["writes"] == [["amem", 10, 5]]
    assert set(trace[0]) == {"pc", "op", "unit", "start", "end", "ready", "reads", "writes", "macs"}


ADDRESS_SPAN = {"host": 256, "amem": 256, "acc": 64, "wmem": 2048, "cbm": 64}
SIZES = {"split": (1, 2), "bits": (1, 5), "bshift": (0, 8), "rows": (1, 32), "cols": (1, 40), "n": (1, 40),
         "shift": (0, 20), "mult": (0, 1 << 16), "table": (0, 2), "lo": (-100, 0), "hi": (0, 100),
         "nnz": (0, 1), "up": (0, 13), "add": (0, 1 << 20),
         "taps": (1, 9), "step": (0, 40), "pow": (-2, 2),
         "off": (-100, 100)}  # weight memory is zeros: an MVCS bitmap keeps nothing


def random_instruction(rng: np.random.Generator) -> Instruction:
    """Any instruction, operands drawn from small overlapping ranges so that hazards are common."""
    straight = [op for op in OPS if op.unit != "SEQ"]  # loops have tests of their own
    op = straight[rng.integers(len(straight))]
    memory_of = {a.operand: a.memory for a in op.reads + op.writes}
    args = {}
    for f in op.fields:
        if f.name in memory_of:
            args[f.name] = int(rng.integers(ADDRESS_SPAN[memory_of[f.name]]))
        else:
            args[f.name] = int(rng.integers(*SIZES[f.name]))
    return Instruction.make(op.mnemonic, **args)


@pytest.mark.parametrize("seed", range(8))
def test_random_programs_pass_the_trace_audit(seed):
    rng = np.random.default_rng(seed)
    code = [random_instruction(rng) for _ in range(300)]
    sim = Simulator(make_program(code, host=512))
    result = sim.run({})
    audit_trace(result.trace, result.stats, Target())
    assert result.stats["stall_cycles"] > 0


def test_the_audit_catches_violations():
    trace, stats = schedule([I("LOAD", dst=0, src=0, n=8), I("VMOV", dst=100, src=4, n=8),
                             I("LOAD", dst=4, src=0, n=8)])
    audit_trace(trace, stats, Target().to_dict())
    cases = {"RAW": (1, -1), "WAR": (2, -1), "overlaps": (2, -22)}
    for what, (pc, shift) in cases.items():
        bad = copy.deepcopy(trace)
        for key in ("start", "end", "ready"):
            bad[pc][key] += shift
        bad_stats = {**stats, "cycles": max(r["ready"] for r in bad)}
        bad_stats["mac_utilization"] = 0.0
        with pytest.raises(AssertionError, match=what):
            audit_trace(bad, bad_stats, Target().to_dict())


def test_the_audit_checks_vec_busy_and_cycles():
    trace, stats = schedule([I("VMOV", dst=100, src=0, n=17)])
    with pytest.raises(AssertionError, match="VEC busy"):
        audit_trace([{**trace[0], "end": trace[0]["end"] + 1}], stats, Target().to_dict())
    with pytest.raises(AssertionError, match="cycles"):
        audit_trace(trace, {**stats, "cycles": stats["cycles"] + 1}, Target().to_dict())
    assert math.ceil(17 / 8) == trace[0]["end"] - trace[0]["start"]


def test_split_k_runs_column_ranges_on_their_own_lanes():
    trace, stats = schedule([I("MV", acc=0, w=0, x=0, rows=12, cols=64, split=2),
                             I("MV", acc=0, w=0, x=0, rows=8, cols=64, split=4)])
    assert [r["end"] - r["start"] for r in trace] == [32 + 1, 16 + 3]
    assert stats["mac_ops"] == 12 * 64 + 8 * 64

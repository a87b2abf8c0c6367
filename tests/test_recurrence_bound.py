"""The recurrence bound (docs/scheduling.md): per step, the recurrent product's MAC cycles,
mac_latency, the vector chain from the last accumulator to the last h element, vec_latency; the
same figure in the program, the report, the simulator's statistics and the listing; and the
schedule never slower on a wider array."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from fuzz_targets import sections, with_meta
from onnx import TensorProto, helper, numpy_helper

from compiler.pipeline import compile_model
from isa.assembler import assemble
from isa.container import from_bytes, to_bytes
from isa.errors import RnnaccelError
from isa.listing import disassemble
from isa.target import Target
from runtime_sim import PartitionedSimulator, Simulator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_models import recurrent_classifier  # noqa: E402
from partitioned_cases import compile_case  # noqa: E402

STEPS, HIDDEN = 5, 64


def lstm_chain(vec_latency: int) -> int:
    """One unit group's chain at 8 vector lanes, by hand from the ISA table: VRQA over its 32 gate
    rows (4 cycles), VACT over i, o and f (3), then VMUL i*g, VADD f*c + i*g, VACT tanh(c) and
    VMUL o*tanh(c), a cycle each, every link waiting vec_latency for its operand."""
    return 4 + 3 + 1 + 1 + 1 + 1 + 5 * vec_latency


@pytest.mark.parametrize("vec_latency, mac_latency", [(4, 4), (1, 7)])
def test_the_lstm_bound_is_product_latency_and_chain_per_step(vec_latency, mac_latency):
    target = Target(macs=256, vec_latency=vec_latency, mac_latency=mac_latency)
    compiled = compile_model(recurrent_classifier("LSTM", HIDDEN, steps=STEPS), target)
    waves = STEPS - 1  # no initial h: the first step has no R h
    product = waves * 4 * HIDDEN * HIDDEN
    expected = math.ceil(product / 256) + waves * (mac_latency + lstm_chain(vec_latency) + vec_latency)
    program, report = compiled.program, compiled.report
    assert dict(program.recurrence) == {"lstm0": expected}
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert layers["lstm0"]["recurrence_bound_cycles"] == report["total"]["recurrence_bound_cycles"] == expected
    assert "recurrence_bound_cycles" not in layers["head"]
    stats = Simulator(program).stats
    assert stats["recurrence_bound_cycles"] == expected
    assert {layer["name"]: layer.get("recurrence_bound_cycles") for layer in stats["layers"]}["lstm0"] == expected
    assert assemble(disassemble(program)).recurrence == program.recurrence


def test_a_program_without_recurrent_layers_has_no_recurrence_bound():
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "fc",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(np.ones((4, 8), np.float32), "w")])
    compiled = compile_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert compiled.program.recurrence == ()
    assert "recurrence_bound_cycles" not in compiled.report["total"]
    assert "recurrence_bound_cycles" not in Simulator(compiled.program).stats


def test_a_partitioned_programs_bound_is_its_islands_one_after_the_other():
    """two-islands (GRU -> Sin on the host -> GRU): each island's recurrence bound is its GRU's;
    the program's, in the report and the statistics, is their sum."""
    compiled = compile_case("two-islands", "script")
    islands = [island.compiled for island in compiled.islands]
    each = [dict(island.program.recurrence) for island in islands]
    assert all(len(bounds) == 1 for bounds in each)
    total = sum(b for bounds in each for b in bounds.values())
    assert compiled.report["total"]["recurrence_bound_cycles"] == total
    stats = PartitionedSimulator(compiled.program).stats
    assert stats["recurrence_bound_cycles"] == total < stats["cycles"]


@pytest.mark.parametrize("bounds", [[1, 2], {"lstm0": -1}, {"lstm0": 1.5}, {"lstm0": True}])
def test_a_corrupted_recurrence_in_meta_is_refused(bounds):
    blob = to_bytes(compile_model(recurrent_classifier("LSTM", 16, steps=3)).program)
    offset, length = sections(blob)[b"META"]
    corrupted = with_meta(blob, {**json.loads(blob[offset:offset + length]), "recurrence": bounds})
    with pytest.raises(RnnaccelError, match="corrupted program: META's recurrence is not a map of node names"):
        from_bytes(corrupted)


def test_the_assembler_refuses_a_negative_recurrence_bound():
    text = disassemble(compile_model(recurrent_classifier("LSTM", 16, steps=3)).program)
    with pytest.raises(RnnaccelError, match=r"k\.s:\d+:1: \.recurrence 'lstm0': cycles must be non-negative"):
        assemble(text.replace(".recurrence node=\"lstm0\" cycles=", ".recurrence node=\"lstm0\" cycles=-"), "k.s")


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_a_wider_array_is_never_slower(cell):
    """The KWS models at 128 and 256 MACs (256 was 10 % slower before R's rows were split in two
    tiles on the wide array), and at 256 within 90 % of the binding bound."""
    model = recurrent_classifier(cell, 64)
    stats = [Simulator(compile_model(model, Target(macs=macs)).program).stats for macs in (128, 256)]
    assert stats[1]["cycles"] <= stats[0]["cycles"]
    wide = stats[1]
    assert max(wide["bound_cycles"], wide["recurrence_bound_cycles"]) >= 0.88 * wide["cycles"]

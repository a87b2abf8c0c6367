"""Whole models as shipped: PyTorch exports (both exporters) with host operators, compiled with
partitioning by default and run end to end: outputs against ONNX Runtime on the original model,
every island bit-exact against the golden reference and its trace audited."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.frontend.partition import HOST
from compiler.pipeline import compile_model
from isa import programfile
from isa.errors import RnnaccelError
from isa.partitioned import PartitionedProgram
from runtime_sim import PartitionedSimulator, load
from tests.partitioned_cases import (
    CASES,
    DATA,
    EXPORTERS,
    assert_islands_bit_exact,
    closed_loop,
    model_path,
    run_case,
)
from tests.toolchain import TOLERANCE
from tests.trace_audit import audit_trace

# case -> (host operators, islands) the plan must find: the CRNNs' Conv, the MLP's GELU and its
# BatchNorm (folded into the Gemm before it, by the compiler or by the dynamo exporter) and the
# LayerNorm run on the chip; two-islands keeps a Sin on the host between its GRUs
EXPECTED = {
    "crnn1d": (set(), 1), "crnn2d": (set(), 1), "lstm-ln": (set(), 1), "mlp-bn-gelu": (set(), 1),
    "two-islands": ({"Sin"}, 2), "sr-branch@16000": (set(), 1), "sr-branch@8000": (set(), 1),
}


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("case", CASES)
def test_an_exported_model_runs_whole_with_the_host(case, exporter):
    run = run_case(case, exporter)
    host_ops, islands = EXPECTED.get((case, exporter)) or EXPECTED[case]
    plan = run.compiled.partition
    assert host_ops <= set(plan.host_ops) and len(plan.islands) == islands, (plan.host_ops, plan.islands)
    bound = TOLERANCE[8] * max(1.0, *(float(np.max(np.abs(v))) for v in run.want.values()))
    assert run.worst_error <= bound, (run.worst_error, bound)
    graphs = [i.compiled.graph for i in run.compiled.islands] or [run.compiled.graph]
    if run.result.islands:
        assert_islands_bit_exact(graphs, run.result, batch=True)
        for island, program in zip(run.result.islands, run.compiled.program.islands):
            audit_trace(island.result.trace, island.result.stats, program.target)
    assert run.result.stats["cycles"] > 0


def test_the_host_runs_through_the_reference_evaluator_too():
    ort_run, ref_run = run_case("two-islands", "script"), run_case("two-islands", "script", force_reference=True)
    assert ref_run.result.stats["host"]["runtime"] == "reference"
    np.testing.assert_allclose(ref_run.result.outputs["y"], ort_run.result.outputs["y"], atol=1e-5)


def test_the_container_carries_the_whole_model(tmp_path):
    run = run_case("two-islands", "dynamo")
    path = str(tmp_path / "m.rnna")
    programfile.save(run.compiled.program, path)
    assert isinstance(programfile.load(path), PartitionedProgram)
    again = load(path).run({"x": np.load(DATA / "two-islands-dynamo.npz")["x"]}, batch=True)
    np.testing.assert_array_equal(again.outputs["y"], run.result.outputs["y"])


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_explicit_state_runs_closed_loop_for_50_frames(exporter):
    """x and h_in in, y and h_out out: the host feeds h_out back as h_in, frame after frame."""
    loop = closed_loop(exporter)
    assert isinstance(loop.compiled.program, PartitionedProgram) and len(loop.results) == 50
    for result in loop.results:
        assert_islands_bit_exact([i.compiled.graph for i in loop.compiled.islands], result, batch=False)
    assert loop.worst_error <= TOLERANCE[8], loop.worst_error


def test_chip_only_refuses_a_model_that_needs_the_host():
    with pytest.raises(RnnaccelError, match=r"^--chip-only: 1 node stays on the host: node '.*' \(Sin\): "):
        compile_model(DATA / "two-islands-script.onnx", chip_only=True)


def test_chip_only_compiles_the_crnns_whose_conv_runs_on_the_chip():
    for case in ("crnn1d", "crnn2d"):
        for exporter in EXPORTERS:
            assert not compile_model(model_path(case, exporter), chip_only=True).islands


def test_a_custom_domain_operator_on_the_host_is_refused_at_compile_time():
    model = onnx.load(str(DATA / "crnn1d-script.onnx"))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    conv.domain = "com.example"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    message = (r"^node '.*' \(Conv\): neither ONNX Runtime nor onnx's reference evaluator runs operator "
               r"'com.example.Conv' \(custom domain\) on the host")
    with pytest.raises(RnnaccelError, match=message):
        compile_model(model)


def test_the_report_has_the_partition():
    compiled = run_case("two-islands", "dynamo").compiled
    part = compiled.report["partition"]
    assert part["host_ops"] == {"Sin": 1} and part["chip_mac_fraction"] == 1.0
    assert part["chip_mac_ops"] > 0 and part["host_mac_ops"] == 0  # an element-wise operator counts no MACs
    island = part["islands"][-1]
    assert island["est_cycles"] > 0 and island["outputs"] == ["y"] and island["nodes"]
    assert part["boundary_bytes"] == compiled.partition.boundary_bytes > 0
    assert [n["op"] for n in part["host_nodes"]] == [p.op_type for p in compiled.partition.of(HOST)]


def test_a_streaming_partitioned_program_steps_frame_by_frame():
    """GRU -> Sin (host, frame-wise) -> GRU + Linear: each island keeps its state on chip."""
    path, x = DATA / "two-islands-script.onnx", np.load(DATA / "two-islands-script.npz")["x"]
    whole = PartitionedSimulator(compile_model(path, calibration={"x": x}).program).run({"x": x[0]})
    stream = PartitionedSimulator(compile_model(path, calibration={"x": x}, streaming=True).program).stream()
    for t in range(x.shape[2]):
        last = stream.step({"x": x[0][:, t:t + 1]})
    np.testing.assert_array_equal(last.outputs["y"], whole.outputs["y"])


def lstm_sin_linear() -> onnx.ModelProto:
    """x [5, 1, 3] -> LSTM -> Sin (host) -> MatMul: the island after the host holds no recurrent layer."""
    rng = np.random.default_rng(6)
    inits = {k: (rng.standard_normal(shape) * 0.3).astype(np.float32)
             for k, shape in {"W": (1, 16, 3), "R": (1, 16, 4), "Wl": (4, 2)}.items()}
    nodes = [helper.make_node("LSTM", ["x", "W", "R"], ["Y"], name="lstm", hidden_size=4),
             helper.make_node("Sin", ["Y"], ["s"], name="sin"),
             helper.make_node("MatMul", ["s", "Wl"], ["y"], name="linear")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 1, 1, 2])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("model, message", [
    (lambda: DATA / "crnn1d-script.onnx",
     r"^--streaming: Conv '.*' reads windows of its input, which one frame per run cannot give"),
    (lstm_sin_linear, r"^--streaming: island 1 \(.*\) holds no recurrent layer"),
], ids=["crnn1d-script", "lstm-sin-linear"])
def test_streaming_refuses_a_host_part_it_cannot_run_frame_by_frame(model, message):
    with pytest.raises(RnnaccelError, match=message):
        compile_model(model(), streaming=True)


def test_an_if_on_data_stays_on_the_host_and_reads_an_island_inside_its_branches():
    """x -> MatMul (chip) -> If on the sign of prod(x) (a reduction the chip does not run), whose
    branches read the MatMul's output from the graph around them (host) -> MatMul (chip): the If's
    reads count as the island's readers."""
    w = numpy_helper.from_array(np.random.default_rng(4).standard_normal((4, 4)).astype(np.float32), "W")
    zero = numpy_helper.from_array(np.array(0, np.float32), "zero")
    branch = [helper.make_graph([helper.make_node(op, ["m"], [f"o{op}"])], op, [],
                                [helper.make_tensor_value_info(f"o{op}", TensorProto.FLOAT, [1, 4])])
              for op in ("Relu", "Sigmoid")]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"], name="mm1"),
             helper.make_node("ReduceProd", ["x"], ["s"], name="prod", keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["c"], name="positive"),
             helper.make_node("If", ["c"], ["y0"], name="choose", then_branch=branch[0], else_branch=branch[1]),
             helper.make_node("MatMul", ["y0", "W"], ["y"], name="mm2")]
    graph = helper.make_graph(nodes, "ifdata", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(5).standard_normal((8, 1, 4)).astype(np.float32)
    compiled = compile_model(model, calibration={"x": x})
    assert [i.outputs for i in compiled.partition.islands] == [("m",), ("y",)]
    got = PartitionedSimulator(compiled.program).run({"x": x}, batch=True).outputs["y"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = np.stack([session.run(None, {"x": xi})[0] for xi in x])
    assert float(np.max(np.abs(got - want))) <= TOLERANCE[8] * max(1.0, float(np.max(np.abs(want))))


def test_an_unnamed_host_node_is_named_as_the_plan_names_it():
    model = onnx.load(str(DATA / "two-islands-script.onnx"))
    for node in model.graph.node:
        node.name = ""
    compiled = compile_model(model)
    (sin,) = compiled.partition.of(HOST)
    (row,) = [n for n in compiled.program.host.nodes if not n.calls_island]
    assert row.name == sin.name != "" and row.macs == sin.macs

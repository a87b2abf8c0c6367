"""Capability apart from conversion: every declared constraint refuses a model that violates it, by
compile and by --check, with its reason; the predicates are plain functions of a NodeView; and
--check tells capacity (the target's memories) apart from capability."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compiler.cli import main
from compiler.frontend import capability, opdoc
from compiler.frontend.capability import CONSTRAINTS, Constraint, InputView, NodeView, unsupported_reasons
from compiler.frontend.onnx_import import import_model
from isa.errors import RnnaccelError

from capability_cases import MALFORMED, VIOLATIONS, as_input, node_of, one_node
from cli_checks import compile_fails, save
from models import fc_model, lstm_model, recurrent_model


def check(tmp_path, capsys, model, *extra) -> tuple[int, list[str], str]:
    with pytest.raises(SystemExit) as exc:
        main([str(save(tmp_path, model)), "--check", *extra])
    out, err = capsys.readouterr()
    return exc.value.code, out.splitlines(), err


def test_every_constraint_has_a_model_that_violates_it():
    """Of the default domain's operators: a contrib operator off the chip is refused by the host,
    so its violations are tested on their own (test_dynamic_lstm.py)."""
    declared = {(op, c.reason) for op, constraints in CONSTRAINTS.items() if "." not in op for c in constraints}
    assert declared == set(VIOLATIONS)


@pytest.mark.parametrize("case", VIOLATIONS, ids=lambda case: f"{case[0]}: {case[1]}")
def test_a_violated_constraint_is_refused_by_compile(tmp_path, capsys, case):
    build, message = VIOLATIONS[case]
    err = compile_fails(tmp_path, capsys, save(tmp_path, build()))
    assert f"node '{node_of(case[0])}' ({case[0]}): {message}\n" in err, err


@pytest.mark.parametrize("case", VIOLATIONS, ids=lambda case: f"{case[0]}: {case[1]}")
def test_a_violated_constraint_is_listed_by_check(tmp_path, capsys, case):
    build, message = VIOLATIONS[case]
    status, lines, err = check(tmp_path, capsys, build())
    assert status == 2 and f"node '{node_of(case[0])}' ({case[0]}): {message}" in lines, lines
    assert err == "rnnaccel-compile: nothing in this model runs on the chip\n"


def _lstm_view(**attrs) -> NodeView:
    """An LSTM as the importer would see it: X computed, W and R constants, no bias."""
    x = InputView("X", (3, 1, 2), np.dtype(np.float32))
    weights = [InputView(n, (1, 16, k), np.dtype(np.float32), np.zeros((1, 16, k), np.float32))
               for n, k in (("W", 2), ("R", 4))]
    return NodeView("LSTM", attrs, (x, *weights), 17)


def test_predicates_are_plain_functions_of_a_view():
    assert unsupported_reasons(_lstm_view()) == []
    assert unsupported_reasons(_lstm_view(direction="sideways", activations=["Sigmoid", "Softsign", "Tanh"])) == [
        "direction must be forward, reverse or bidirectional; got 'sideways'",
        "each activation must be one of Relu, Sigmoid, Tanh, HardSigmoid; got Softsign"]
    computed_w = _lstm_view()
    computed_w = NodeView("LSTM", {}, (computed_w.inputs[0], InputView("W", (1, 16, 2), np.dtype(np.float32)),
                                       computed_w.inputs[2]), 17)
    assert unsupported_reasons(computed_w) == ["W must be a constant (an initialiser); got computed 'W'"]


def test_an_operator_or_attribute_outside_the_table_is_a_reason_too():
    assert unsupported_reasons(NodeView("Softsign", {}, (), 17)) == ["operator Softsign is not supported"]
    assert unsupported_reasons(NodeView("Relu", {}, (), 17, "com.example")) == [
        "operator com.example.Relu is not supported"]
    assert unsupported_reasons(NodeView("Constant", {"value_strings": ["a"]}, (), 17)) == [
        "attribute 'value_strings' is not supported"]


def test_a_constant_attribute_outside_the_table_is_refused(tmp_path, capsys):
    model = one_node("Constant", [], {}, value_strings=["a"])
    model.graph.node[0].ClearField("input")
    assert "node 'n' (Constant): attribute 'value_strings' is not supported" in compile_fails(
        tmp_path, capsys, save(tmp_path, model))


def test_a_folding_node_meets_the_constraints_of_data_nowhere():
    """Gemm and MatMul of constants fold, whatever their ranks: the weight constraints are about data."""
    view = NodeView("MatMul", {}, tuple(InputView(n, (2, 4, 3), np.dtype(np.float32), np.ones((2, 4, 3)))
                                        for n in ("a", "b")), 17)
    assert unsupported_reasons(view) == []


def test_declaring_constraints_for_an_unknown_operator_is_refused():
    with pytest.raises(ValueError, match="Softsign, which is not a registered operator"):
        capability.declare({"Softsign": (capability.ON_CONSTANTS,)})
    assert "Softsign" not in CONSTRAINTS


def test_a_constraint_without_a_finding_says_only_its_reason():
    rule = Constraint("never", lambda view: False)
    assert rule.message(NodeView("Relu", {}, (), 17)) == "never"


def test_check_lists_every_failing_reason_of_a_node_and_compile_the_first(tmp_path, capsys):
    model = as_input(recurrent_model("GRU", 3, 1, 2, 4, direction="sideways"), "W")
    status, lines, err = check(tmp_path, capsys, model)
    assert status == 2 and lines == [
        "node 'gru' (GRU): direction must be forward, reverse or bidirectional; got 'sideways'",
        "node 'gru' (GRU): W must be a constant (an initialiser); got computed 'W'"]
    assert err == "rnnaccel-compile: nothing in this model runs on the chip\n"
    with pytest.raises(RnnaccelError, match=r"^node 'gru' \(GRU\): direction must be .*'sideways'$"):
        import_model(model)


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_model_is_refused_while_converting(tmp_path, capsys, case):
    """A model that meets every constraint but contradicts itself: its handler refuses it, for
    compile and for --check alike (capability is not validity)."""
    build, node, message = MALFORMED[case]
    name, op = node.split()
    assert f"node '{name}' {op}: {message}\n" in compile_fails(tmp_path, capsys, save(tmp_path, build()))
    status, lines, _ = check(tmp_path, capsys, build())
    assert status == 2 and lines == [f"node '{name}' {op}: {message}"]


def _target(tmp_path, **params) -> str:
    path = tmp_path / "target.json"
    path.write_text(json.dumps(params))
    return str(path)


def test_check_reports_capacity_apart_from_capability(tmp_path, capsys):
    status, lines, err = check(tmp_path, capsys, fc_model(40000, 4, 3))
    assert status == 2 and lines == [
        "does not fit the target: input 'x' [40000, 4] alone needs 160000 elements of activation memory "
        "but the target has 32768 (act_mem_bytes=65536)"], lines
    assert err == "rnnaccel-compile: the model does not fit the target\n"


def test_check_measures_capacity_against_the_target_given(tmp_path, capsys):
    model = fc_model(1, 300, 300)
    assert check(tmp_path, capsys, model)[0] == 0
    status, lines, _ = check(tmp_path, capsys, model, "--target", _target(tmp_path, weight_mem_bytes=4096))
    assert status == 2 and lines[0].startswith("node 'fc' (Gemm): does not fit the target: its weights")
    assert lines[1:] == []  # the Identity after it alone would only move data: nothing is left for the chip


def test_check_measures_capacity_of_a_stream_by_its_frames(tmp_path, capsys):
    """A stream runs one frame at a time, so W x and R h need not both be live (limits._check_accumulators)."""
    model, target = lstm_model(500, 1, 4, 64, outputs=("Y_h",)), _target(tmp_path, acc_entries=300)
    status, lines, _ = check(tmp_path, capsys, model, "--target", target)
    assert status == 2 and "its accumulators (W x and R h, 256 rows each)" in lines[0]
    assert check(tmp_path, capsys, model, "--target", target, "--streaming")[0] == 0


def test_capacity_of_the_whole_graph_waits_for_every_node_to_be_capable(tmp_path, capsys):
    """A graph with a host node is not one chip program: its nodes are judged one by one (the fc's
    input alone would not fit activation memory, which the whole-graph check would say)."""
    model = fc_model(40000, 4, 3, activation="Softsign")
    status, lines, _ = check(tmp_path, capsys, model)
    assert status == 0 and lines[:4] == ["node 'act' (Softsign): operator Softsign is not supported",
                                         "host: Softsign x1 (operator Softsign is not supported)",
                                         "host: Identity x1 (its island would only move data between host and "
                                         "chip (no arithmetic on the chip))",
                                         "island 1: 1 node (fc); in: x; out: y0"]


def test_supported_ops_and_the_docs_list_every_constraint(capsys):
    main_out = opdoc.supported_ops_text()
    doc = opdoc.render()
    for op, constraints in CONSTRAINTS.items():
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{op}` |"))
        for constraint in constraints:
            assert f"  - {constraint.reason}\n" in main_out and constraint.reason in row
    assert "| constraints |" in doc

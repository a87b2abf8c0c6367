"""What users learn before compiling: `--supported-ops`, `--check`, and docs/operators.md."""

from __future__ import annotations

import pytest
from onnx import TensorProto, helper

from compiler.cli import main
from compiler.frontend import opdoc
from compiler.frontend.registry import OPERATORS

from cli_checks import compile_fails, save
from models import fc_model


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_docs_operators_md_is_not_stale() -> None:
    assert opdoc.main(["--check"]) == 0, "docs/operators.md is stale: run `python -m compiler.frontend.opdoc`"


def test_supported_ops_lists_every_operator_with_its_attributes(capsys):
    status, out, _ = run(["--supported-ops"], capsys)
    assert status == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(" ")}
    assert set(OPERATORS) <= set(lines)
    assert "alpha=1.0, beta=1.0, transA=0, transB=0" in lines["Gemm"] and "compute" in lines["Gemm"]
    assert "fold" in lines["Range"] and "layout" in lines["Transpose"] and "perm=None" in lines["Transpose"]


def test_every_operator_is_documented():
    text = opdoc.render()
    assert text.startswith(opdoc.HEADER)
    for name in OPERATORS:
        assert f"| `{name}` |" in text


def _broken_model():
    """Softsign (unknown), then a Relu that reads it, then a Mul of two computed tensors, a PRelu by a
    computed slope (refused by a constraint), then a good Relu."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, 4]) for name in ("m", "q", "y")]
    nodes = [helper.make_node("Softsign", ["x"], ["s"], name="squash"),
             helper.make_node("Relu", ["s"], ["r"], name="after"),
             helper.make_node("Mul", ["x", "r"], ["m"], name="both"),
             helper.make_node("PRelu", ["x", "x"], ["q"], name="leak"),
             helper.make_node("Relu", ["x"], ["y"], name="fine")]
    return helper.make_model(helper.make_graph(nodes, "g", [x], y), opset_imports=[helper.make_opsetid("", 17)])


def test_check_lists_every_node_that_cannot_be_compiled(tmp_path, capsys):
    """The nodes after a host node are judged too (their shapes come from shape inference), and
    the summary says how the model would be split."""
    status, out, err = run([str(save(tmp_path, _broken_model())), "--check"], capsys)
    assert status == 0
    assert out.splitlines() == [
        "node 'squash' (Softsign): operator Softsign is not supported",
        "node 'leak' (PRelu): slope must be a constant (an initialiser); got computed 'x'",
        "host: Softsign x1 (operator Softsign is not supported)",
        "host: PRelu x1 (slope must be a constant (an initialiser); got computed 'x')",
        "island 1: 2 nodes (after, both); in: s, x; out: m",
        "island 2: 1 node (fine); in: x; out: y",
        "chip: 3 of 5 nodes in 2 islands, no MACs; 160 bytes cross between host and chip per inference",
        "2 of 5 nodes run on the host, the rest on the chip",
    ]
    assert err == ""
    assert not list(tmp_path.glob("*.rnna"))
    status, _, err = run([str(save(tmp_path, _broken_model())), "--check", "--chip-only"], capsys)
    assert status == 2 and err == "rnnaccel-compile: 2 of 5 nodes need the host (--chip-only)\n"


def test_check_of_a_supported_model_writes_nothing(tmp_path, capsys):
    status, out, _ = run([str(save(tmp_path, fc_model(2, 4, 3, activation="Relu"))), "--check"], capsys)
    assert status == 0 and out == "all 3 nodes supported\n"
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".onnx"]


def test_a_chip_only_compile_lists_every_node_that_needs_the_host(tmp_path, capsys):
    err = compile_fails(tmp_path, capsys, save(tmp_path, _broken_model()), "--chip-only")
    assert err == ("rnnaccel-compile: error: --chip-only: 2 nodes stay on the host: node 'squash' (Softsign): "
                   "operator Softsign is not supported; node 'leak' (PRelu): slope must be a constant "
                   "(an initialiser); got computed 'x'\n")
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".onnx"]


def test_compiling_needs_an_output(tmp_path, capsys):
    status, _, err = run([str(save(tmp_path, fc_model(1, 4, 3)))], capsys)
    assert status == 2 and "-o PROG.rnna is required" in err and err.count("\n") == 1


def test_a_model_is_needed_unless_listing_operators(capsys):
    status, _, err = run([], capsys)
    assert status == 2 and "no model given" in err and err.count("\n") == 1


def test_check_reports_a_broken_file_as_an_error(tmp_path, capsys):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"junk")
    status, _, err = run([str(path), "--check"], capsys)
    assert status == 2 and "not an ONNX model" in err

"""The operator registry (compiler/ops) and the checks that hold it together: completeness at
import, every node's attributes against its op's declaration between passes, and a compiler
package whose modules import each other in one direction only."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from compiler.frontend.onnx_import import import_model
from compiler.ops import OPS, OpDef, registry
from compiler.ops.activation import ReluAttrs
from compiler.ops.fc import FcAttrs, QuantFcAttrs
from compiler.passes.calibrate import calibrate, default_calibration
from compiler.passes.quantize import quantize_graph
from compiler.verify import _matches, verify
from isa.target import Target

from models import fc_model, lstm_model

COMPILER = Path(__file__).resolve().parents[1] / "compiler"
MAX_LINES = 400


def test_every_op_the_frontend_can_emit_is_declared() -> None:
    graph = import_model(lstm_model(3, 1, 4, 8))
    assert {n.op for n in graph.nodes} <= set(OPS)
    assert {"fc", "lstm", "gru", "rnn", "relu", "table", "gather", "rescale", "constant", "add_const", "mul_const",
            "add", "sub", "mul", "softmax", "logsoftmax", "fake_quant", "leaky", "clip", "scaled_table",
            "conv", "depthwise", "reduce", "normalize", "power", "log"} == set(OPS)


@pytest.mark.parametrize("change,message", [
    ({"kind": "sideways"}, "unknown kind"),
    ({"lower": None}, "lower not callable"),
    ({"attrs": dict}, "not a frozen dataclass"),
    ({"quantized": QuantFcAttrs, "attrs": ReluAttrs}, "does not extend"),
])
def test_an_incomplete_declaration_fails_at_import(monkeypatch, change: dict, message: str) -> None:
    broken = dataclasses.replace(OPS["fc"], name="broken", **change)
    monkeypatch.setitem(OPS, "broken", broken)
    with pytest.raises(AssertionError, match=message):
        registry.check_complete()


def test_an_op_cannot_be_declared_twice() -> None:
    with pytest.raises(AssertionError, match="declared twice"):
        registry.register(OPS["fc"])


def _fc_graph():
    return import_model(fc_model(2, 6, 4))


def test_verify_refuses_attributes_of_the_wrong_type() -> None:
    graph = _fc_graph()
    fc = graph.nodes[0]
    wrong = dataclasses.replace(fc, attrs=FcAttrs(weight=fc.attrs.weight.tolist(), bias=None))
    with pytest.raises(AssertionError, match=r"fc\.weight is list"):
        verify(graph.replace(nodes=(wrong, *graph.nodes[1:])))


def test_verify_refuses_a_record_of_another_op_or_stage() -> None:
    graph = _fc_graph()
    fc = graph.nodes[0]
    with pytest.raises(AssertionError, match="has ReluAttrs attributes, expected FcAttrs"):
        verify(graph.replace(nodes=(dataclasses.replace(fc, attrs=ReluAttrs()), *graph.nodes[1:])))
    quantized = quantize_graph(graph, calibrate(graph, default_calibration(graph.input_shapes)), Target())
    assert isinstance(verify(quantized).nodes[0].attrs, QuantFcAttrs)
    with pytest.raises(AssertionError, match="has FcAttrs attributes, expected QuantFcAttrs"):
        verify(quantized.replace(nodes=(fc, *quantized.nodes[1:])))


def test_verify_refuses_an_unknown_op() -> None:
    graph = _fc_graph()
    renamed = dataclasses.replace(graph.nodes[0], op="deconv")  # an op nobody declares
    with pytest.raises(AssertionError, match="unknown op deconv"):
        verify(graph.replace(nodes=(renamed, *graph.nodes[1:])))


def test_attribute_types_follow_the_hints() -> None:
    assert _matches((1, 2), tuple[int, int]) and not _matches((1, 2, 3), tuple[int, int])
    assert _matches((("sigmoid", "tanh"),), tuple[tuple[str, ...], ...]) and not _matches(["a"], tuple[str, ...])
    assert _matches(None, np.ndarray | None) and not _matches(True, int) and _matches(3, float)


def test_each_op_definition_is_one_record() -> None:
    assert all(isinstance(op, OpDef) and op.name == name for name, op in OPS.items())


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(COMPILER.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in COMPILER.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The compiler modules `path` names in its import statements (a name imported from a package
    may be a submodule)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("compiler"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found & set(modules)


def test_no_compiler_module_imports_one_that_imports_it_back() -> None:
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    cycles = []

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and not seen.add(nxt) and reaches(nxt, goal, seen)):
                return True
        return False

    for name in graph:
        if reaches(name, name, set()):
            cycles.append(name)
    assert not cycles, f"modules on an import cycle: {sorted(cycles)}"


def test_no_compiler_module_is_over_the_size_limit() -> None:
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"

"""Checks of the command lines' error contract: one line on stderr, status 2, no output left."""

from __future__ import annotations

import onnx
import pytest
from onnx import helper

from compiler.cli import main


def compile_fails(tmp_path, capsys, model_path, *extra) -> str:
    out = tmp_path / "prog.rnna"
    with pytest.raises(SystemExit) as exc:
        main([str(model_path), "-o", str(out), "--listing", str(tmp_path / "p.s"), "-q", *extra])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.startswith("rnnaccel-compile: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".rnna", ".s", ".tmp")) == []
    return err


def save(tmp_path, model, name="model.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def single_node_model(node, inputs, outputs, inits=()) -> onnx.ModelProto:
    graph = helper.make_graph([node], "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

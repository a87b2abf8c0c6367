"""Hostile and broken ONNX models: each ends in one line naming the problem, status 2, no file.

Cases go through rnnaccel-compile (test_compiler_errors.compile_fails checks the exit status,
the single line, the absent traceback and that no output or temporary file is left).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.cli import main
from compiler.frontend.limits import MAX_TENSOR_ELEMENTS
from compiler.pipeline import compile_model
from isa.container import to_bytes
from isa.errors import RnnaccelError

from cli_checks import compile_fails, save
from hostile_inputs import external_model, point_to_file
from models import fc_model


def _mutated(edit) -> onnx.ModelProto:
    """fc_model(1, 4, 3) changed by `edit` (which may leave it invalid; it is not re-checked)."""
    model = fc_model(1, 4, 3)
    edit(model)
    return model


def _reverse_nodes(m):
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(reversed(nodes))


def _input_dim(value):
    def edit(m):
        m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = value
    return edit


def _initialiser(tensor):
    def edit(m):
        m.graph.initializer[0].CopyFrom(tensor)
    return edit


def _fp16_input(m):
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16


def _claims_2_40_elements(m):
    del m.graph.initializer[0].dims[:]
    m.graph.initializer[0].dims.extend([1 << 20, 1 << 20])


CASES = {
    "cycle": (_reverse_nodes, "topologically sorted, however input 'y0' of node: name: out"),
    "missing initialiser": (lambda m: m.graph.initializer.pop(0), "input 'Wt' of node: name: fc"),
    "dim 0": (_input_dim(0), "input 'x' has an empty dimension [0,4]"),
    "dim 2^40": (_input_dim(1 << 40), f"input 'x' has 4398046511104 elements [1099511627776, 4], more than "
                                      f"the limit of {MAX_TENSOR_ELEMENTS}"),
    "input dtype": (_fp16_input, "input 'x' must be a float32 tensor"),
    "string initialiser": (_initialiser(helper.make_tensor("Wt", TensorProto.STRING, [3, 4], [b"a"] * 12)),
                           "initialiser 'Wt' has data type STRING, which is not supported"),
    "complex initialiser": (_initialiser(numpy_helper.from_array(np.ones((3, 4), np.complex64), "Wt")),
                            "initialiser 'Wt' has data type COMPLEX64"),
    "initialiser of 2^40 elements": (_claims_2_40_elements, "Wt"),
    "checker": (lambda m: setattr(m.graph.node[0], "op_type", ""), "invalid ONNX model"),
}


@pytest.mark.parametrize("case", CASES)
def test_broken_model_is_one_line_status_2(tmp_path, capsys, case):
    edit, message = CASES[case]
    err = compile_fails(tmp_path, capsys, save(tmp_path, _mutated(edit)))
    assert message in err, err


@pytest.mark.parametrize("cut", [1, 7, 100, -20, -1])
def test_truncated_protobuf(tmp_path, capsys, cut):
    path = save(tmp_path, fc_model(1, 4, 3))
    path.write_bytes(path.read_bytes()[:cut])
    err = compile_fails(tmp_path, capsys, path)
    assert "not an ONNX model" in err or "invalid ONNX model" in err


def test_huge_constant_of_shape_is_refused_before_allocating():
    model = fc_model(1, 4, 3)
    model.graph.initializer.append(numpy_helper.from_array(np.array([1 << 20, 1 << 20], np.int64), "big"))
    model.graph.node.insert(0, helper.make_node("ConstantOfShape", ["big"], ["filled"], name="fill"))
    with pytest.raises(RnnaccelError, match=r"node 'fill' \(ConstantOfShape\): the requested shape has "
                                            r"1099511627776 elements"):
        compile_model(model)


def test_weight_matrix_larger_than_weight_memory_names_node_and_sizes(tmp_path, capsys):
    err = compile_fails(tmp_path, capsys, save(tmp_path, fc_model(1, 1024, 1024)))
    assert ("node 'fc' (Gemm): does not fit the target: its weights (weight [1024, 1024]) alone need 1048576 "
            "bytes of weight memory at 8 bits "
            "but the target has 524288") in err


def test_input_larger_than_activation_memory_names_input_and_sizes(tmp_path, capsys):
    err = compile_fails(tmp_path, capsys, save(tmp_path, fc_model(40000, 4, 3)))
    assert "input 'x' [40000, 4] alone needs 160000 elements of activation memory but the target has 32768" in err


def test_model_file_over_the_size_limit(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("compiler.frontend.onnx_import.MAX_MODEL_BYTES", 100)
    err = compile_fails(tmp_path, capsys, save(tmp_path, fc_model(1, 4, 3)))
    assert "larger than the limit" in err


def test_model_given_as_proto_cannot_use_external_data():
    model = fc_model(1, 4, 3)
    point_to_file(model.graph.initializer[0], {"location": "w.bin"})
    with pytest.raises(RnnaccelError, match="Wt.*(w.bin|stores its data in an external file)"):
        compile_model(model)


# --- external data -----------------------------------------------------------------------------

def test_external_data_inside_the_folder_compiles_like_inline_data(tmp_path):
    path, _ = external_model(tmp_path, "data/weights.bin")
    calibration = {"x": np.ones((2, 1, 4), np.float32)}
    got = compile_model(path, calibration=calibration).program
    want = compile_model(fc_model(1, 4, 3), calibration=calibration).program
    assert to_bytes(got)[:8] == to_bytes(want)[:8] and got.regions == want.regions and got.code == want.code


def test_external_data_through_a_symlink_inside_the_folder_is_fine(tmp_path):
    path, data = external_model(tmp_path, "link.bin")
    (tmp_path / "real.bin").write_bytes(data)
    (tmp_path / "link.bin").unlink()
    (tmp_path / "link.bin").symlink_to(tmp_path / "real.bin")
    compile_model(path, calibration={"x": np.ones((2, 1, 4), np.float32)})


def _secret(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.bin").write_bytes(bytes(48))
    folder = tmp_path / "model"
    folder.mkdir()
    return folder, outside / "secret.bin"


@pytest.mark.parametrize("how", ["relative", "absolute", "symlink", "symlinked folder"])
def test_external_data_outside_the_folder_is_refused(tmp_path, capsys, how):
    folder, secret = _secret(tmp_path)
    location = {"relative": "../outside/secret.bin", "absolute": str(secret)}.get(how, "w/secret.bin")
    if how == "symlink":
        (folder / "w").mkdir()
        (folder / "w" / "secret.bin").symlink_to(secret)
    elif how == "symlinked folder":
        (folder / "w").symlink_to(secret.parent)
    path, _ = external_model(folder, location)
    err = compile_fails(folder, capsys, path)
    assert f"tensor 'Wt': external data location '{location}' lies outside the model's folder; refused" in err


@pytest.mark.parametrize("fields, message", [
    ({"length": 4}, "external data length 4 does not match its shape and type (48 bytes)"),
    ({"offset": 8}, "external data [8, 56) runs past the end of weights.bin (48 bytes)"),
    ({"offset": "x"}, "external data offset 'x' is not an integer"),
    ({"offset": -1}, "external data offset -1 is negative"),
])
def test_bad_external_data_fields(tmp_path, capsys, fields, message):
    path, _ = external_model(tmp_path, **fields)
    assert f"tensor 'Wt': {message}" in compile_fails(tmp_path, capsys, path)


def test_missing_external_file(tmp_path, capsys):
    path, _ = external_model(tmp_path)
    (tmp_path / "weights.bin").unlink()
    assert "external data file 'weights.bin' not found next to the model" in compile_fails(tmp_path, capsys, path)


def test_external_data_that_is_a_folder(tmp_path, capsys):
    path, _ = external_model(tmp_path)
    (tmp_path / "weights.bin").unlink()
    (tmp_path / "weights.bin").mkdir()
    assert "is not a regular file" in compile_fails(tmp_path, capsys, path)


def test_hostile_model_in_a_real_process(tmp_path):
    folder, _ = _secret(tmp_path)
    path, _ = external_model(folder, "../outside/secret.bin")
    run = subprocess.run([sys.executable, "-m", "compiler.cli", str(path), "-o", str(folder / "p.rnna")],
                         check=False, capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert "outside the model's folder" in run.stderr and not (folder / "p.rnna").exists()


def test_compile_check_mode_reports_hostile_model_as_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(save(tmp_path, _mutated(_input_dim(1 << 40)))), "--check"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "more than the limit" in err

"""Every user error of rnnaccel-compile: one line on stderr, exit status 2, no output file."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from compiler.cli import main

from cli_checks import compile_fails, save, single_node_model
from models import fc_model, lstm_model
from toolchain import run_checked


def test_not_an_onnx_file(tmp_path, capsys):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00\x01this is not a protobuf\xff" * 10)
    assert "not an ONNX model" in compile_fails(tmp_path, capsys, path)


def test_missing_model_file(tmp_path, capsys):
    assert "no such model file" in compile_fails(tmp_path, capsys, tmp_path / "absent.onnx")


def test_unsupported_operator_names_node_and_operator(tmp_path, capsys):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    model = single_node_model(helper.make_node("Softsign", ["x"], ["y"], name="squash"), [x], [y])
    err = compile_fails(tmp_path, capsys, save(tmp_path, model))
    assert "'squash'" in err and "Softsign" in err and "not supported" in err


def test_unsupported_lstm_activation_is_named(tmp_path, capsys):
    model = lstm_model(3, 1, 4, 8)
    model.graph.node[0].attribute.append(helper.make_attribute("activations", ["Softsign", "Tanh", "Tanh"]))
    err = compile_fails(tmp_path, capsys, save(tmp_path, model))
    assert "'lstm' (LSTM): each activation must be one of Relu, Sigmoid, Tanh, HardSigmoid; got Softsign" in err


def test_computed_weights_are_refused(tmp_path, capsys):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    model = single_node_model(helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"), [x, w], [y])
    err = compile_fails(tmp_path, capsys, save(tmp_path, model))
    assert "node 'mm' (MatMul): B must be a constant (an initialiser); got computed 'w'" in err


def test_nan_weights_name_the_tensor(tmp_path, capsys):
    model = fc_model(1, 4, 3)
    weights = onnx.numpy_helper.to_array(model.graph.initializer[0]).copy()
    weights[0, 0] = np.nan
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(weights, "Wt"))
    assert "'Wt' contains NaN or Inf" in compile_fails(tmp_path, capsys, save(tmp_path, model))


def symbolic_fc(tmp_path):
    model = fc_model(1, 4, 3)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    return save(tmp_path, model)


def test_symbolic_dims_need_shape(tmp_path, capsys):
    err = compile_fails(tmp_path, capsys, symbolic_fc(tmp_path))
    assert "symbolic dims [?,4]" in err and "--shape x=" in err


def test_shape_fixes_symbolic_dims(tmp_path, capsys):
    out = tmp_path / "prog.rnna"
    with pytest.raises(SystemExit) as exc:
        main([str(symbolic_fc(tmp_path)), "-o", str(out), "--shape", "x=3,4", "-q"])
    assert exc.value.code == 0 and out.is_file()


@pytest.mark.parametrize("shape,message", [("x=3,5", "does not match"), ("x=a,b", "integer dims"),
                                           ("nope=1,4", "unknown input"), ("x=0,4", "positive dims")])
def test_bad_shape_option(tmp_path, capsys, shape, message):
    assert message in compile_fails(tmp_path, capsys, symbolic_fc(tmp_path), "--shape", shape)


def test_model_too_large_for_target_names_sizes(tmp_path, capsys):
    target = tmp_path / "tiny.json"
    target.write_text(json.dumps({"act_mem_bytes": 512}))
    err = compile_fails(tmp_path, capsys, save(tmp_path, lstm_model(20, 1, 10, 32)), "--target", str(target))
    assert "elements of activation memory" in err and "the target has 256" in err


def test_weight_memory_too_small(tmp_path, capsys):
    err = compile_fails(tmp_path, capsys, save(tmp_path, fc_model(1, 300, 300)), "--target",
                        _target_file(tmp_path, weight_mem_bytes=4096))
    assert "bytes of weight memory" in err and "weight_mem_bytes=4096" in err


def _target_file(tmp_path, **params) -> str:
    path = tmp_path / "target.json"
    path.write_text(json.dumps(params))
    return str(path)


@pytest.mark.parametrize("target,message", [("nonesuch", "neither a known target"), ("{bad", "neither")])
def test_unknown_target(tmp_path, capsys, target, message):
    assert message in compile_fails(tmp_path, capsys, save(tmp_path, fc_model(1, 4, 3)), "--target", target)


def test_invalid_target_parameter(tmp_path, capsys):
    assert "macs=48 is invalid" in compile_fails(tmp_path, capsys, save(tmp_path, fc_model(1, 4, 3)), "--macs", "48")


def test_compression_needs_a_known_width(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(save(tmp_path, fc_model(1, 4, 3))), "-o", str(tmp_path / "p.rnna"), "--compress", "5"])
    assert exc.value.code == 2 and "invalid choice: '5'" in capsys.readouterr().err


@pytest.mark.parametrize("arrays,message", [({"y": np.zeros((4, 1, 4))}, "lacks input(s) x"),
                                            ({"x": np.zeros((4, 1, 5))}, "has shape [4, 1, 5]"),
                                            ({"x": np.full((4, 1, 4), np.inf)}, "finite")])
def test_bad_calibration(tmp_path, capsys, arrays, message):
    calib = tmp_path / "calib.npz"
    np.savez(calib, **arrays)
    err = compile_fails(tmp_path, capsys, save(tmp_path, fc_model(1, 4, 3)), "--calibration", str(calib))
    assert message in err


def test_corrupted_calibration_file(tmp_path, capsys):
    calib = tmp_path / "calib.npz"
    calib.write_bytes(b"PK\x03\x04 broken")
    err = compile_fails(tmp_path, capsys, save(tmp_path, fc_model(1, 4, 3)), "--calibration", str(calib))
    assert "cannot read calibration" in err


def test_real_process_prints_no_traceback(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_text("hello")
    run = subprocess.run([sys.executable, "-m", "compiler.cli", str(path), "-o", str(tmp_path / "p.rnna")],
                         check=False, capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert not (tmp_path / "p.rnna").exists()


def test_default_calibration_is_announced(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(save(tmp_path, fc_model(1, 4, 3))), "-o", str(tmp_path / "p.rnna")])
    captured = capsys.readouterr()
    assert exc.value.code == 0 and "no --calibration given" in captured.err
    assert "compiled model" in captured.out and "1 instructions" not in captured.out


@pytest.mark.parametrize("extra,message", [(("--prune", "0.5"), "--prune needs --compress"),
                                           (("--compress", "2", "--prune", "1"), "expected a fraction in [0, 1)"),
                                           (("--compress", "2", "--prune", "nan"), "--prune nan"),
                                           (("--compress", "2", "--prune", "-0.1"), "--prune -0.1")])
def test_bad_pruning(tmp_path, capsys, extra, message):
    assert message in compile_fails(tmp_path, capsys, save(tmp_path, fc_model(1, 4, 3)), *extra)


def test_an_input_given_back_as_an_output_is_copied():
    model = fc_model(1, 4, 3)
    model.graph.output.append(onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]))
    x = np.linspace(-1, 1, 4, dtype=np.float32).reshape(1, 4)
    checked = run_checked(model, {"x": x})
    np.testing.assert_allclose(checked.outputs["x"], x, atol=1e-3)


@pytest.mark.parametrize("output,shape,message", [("y", [1, 3], "graph output 'y' is listed twice"),
                                                  ("b", [3], "graph output 'b' is a constant")])
def test_outputs_that_name_nothing_new(tmp_path, capsys, output, shape, message):
    model = fc_model(1, 4, 3)
    model.graph.output.append(onnx.helper.make_tensor_value_info(output, TensorProto.FLOAT, shape))
    assert message in compile_fails(tmp_path, capsys, save(tmp_path, model))

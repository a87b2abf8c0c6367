"""rnnaccel-eval: accuracy, agreement and confusion checked against an independent computation."""

from __future__ import annotations

import re
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from runtime_sim import Simulator
from runtime_sim.eval_cli import main

KWS = Path(__file__).resolve().parents[1] / "examples" / "kws"


def exit_status(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


def _field(out: str, name: str) -> tuple[float, int]:
    match = re.search(rf"^{name}:\s+([\d.]+) % \((\d+)/\d+\)", out, re.M)
    assert match, f"no '{name}' line in:\n{out}"
    return float(match[1]), int(match[2])


def test_report_matches_an_independent_computation(kws, capsys):
    tmp, program, x, y = kws
    argv = [str(tmp / "gru.rnna"), "--data", str(tmp / "test.npz"), "--reference", str(KWS / "kws_gru64.onnx")]
    assert exit_status(argv) == 0
    out = capsys.readouterr().out
    sim = Simulator(program)
    chip = np.array([sim.run({"mfcc": xi}).outputs["logits"].argmax() for xi in x])
    session = ort.InferenceSession(str(KWS / "kws_gru64.onnx"), providers=["CPUExecutionProvider"])
    ref = np.array([session.run(None, {"mfcc": xi})[0].argmax() for xi in x])
    assert _field(out, "chip top-1")[1] == int(np.sum(chip == y))
    assert _field(out, "float top-1")[1] == int(np.sum(ref == y))
    assert _field(out, "top-1 agreement")[1] == int(np.sum(ref == chip))
    assert _field(out, "chip top-1")[0] == pytest.approx(100 * np.mean(chip == y), abs=0.005)
    names = (KWS / "labels.txt").read_text().split()
    table = out.split("chip prediction):\n")[1].splitlines()
    assert table[0].split() == names + ["acc"]
    for true, line in enumerate(table[1:]):
        cells = line.split()
        assert cells[0] == names[true]
        expected = [int(np.sum((y == true) & (chip == p))) for p in range(len(names))]
        assert [int(c) for c in cells[1:-1]] == expected
    assert "samples/s" in out and "simulated MACs/s" in out and "inferences/s" in out


def test_inputs_by_name_or_input_key_and_class_indices_without_labels_txt(kws, capsys, tmp_path):
    tmp, _, x, y = kws
    np.savez(tmp_path / "named.npz", mfcc=x, label=y, extra=x[:, 0])
    prog = str(tmp / "gru.rnna")
    assert exit_status([prog, "--data", str(tmp_path / "named.npz"), "--labels", "label"]) == 0
    by_name = capsys.readouterr().out
    np.savez(tmp_path / "keyed.npz", feats=x, other=x, y=y)
    assert exit_status([prog, "--data", str(tmp_path / "keyed.npz"), "--input-key", "feats"]) == 0
    by_key = capsys.readouterr().out
    assert _field(by_name, "chip top-1") == _field(by_key, "chip top-1")
    assert by_key.split("chip prediction):\n")[1].splitlines()[0].split()[:3] == ["0", "1", "2"]
    assert "float top-1" not in by_key


@pytest.mark.parametrize("arrays, extra, message", [
    (lambda x, y: {"a": x, "b": x, "y": y}, [], "the data has no array for input(s) mfcc (keys: a, b, y); "
                                                "give --input-key KEY"),
    (lambda x, y: {"x": x, "y": y}, ["--input-key", "z"], "--input-key z: no such array in the data"),
    (lambda x, y: {"x": x}, [], "--labels y: no such array in the data (keys: x)"),
    (lambda x, y: {"x": x, "y": y[:5]}, [], "labels 'y' must be 40 integers (one per sample)"),
    (lambda x, y: {"x": x, "y": y.astype(np.float32)}, [], "labels 'y' must be 40 integers"),
    (lambda x, y: {"x": x, "y": y + 12}, [], "labels 'y' range over 12..23, but the program's output has 12 classes"),
    (lambda x, y: {"x": x[:, 0], "y": y}, [], "input 'mfcc' has shape (40, 49, 10), expected (N, 1, 49, 10)"),
])
def test_bad_data_is_one_line_and_exit_2_without_a_plot(kws, capsys, tmp_path, arrays, extra, message):
    tmp, _, x, y = kws
    np.savez(tmp_path / "bad.npz", **arrays(x, y))
    plot = tmp_path / "cm.png"
    argv = [str(tmp / "gru.rnna"), "--data", str(tmp_path / "bad.npz"), *extra]
    assert exit_status(argv + (["--plot", str(plot)] if find_spec("matplotlib") else [])) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnaccel-eval: error: ") and message in err and err.count("\n") == 1
    assert not plot.exists()


def test_reference_without_onnxruntime_is_a_clear_error(kws, capsys, monkeypatch):
    tmp, _, _, _ = kws
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    argv = [str(tmp / "gru.rnna"), "--data", str(tmp / "test.npz"), "--reference", str(KWS / "kws_gru64.onnx")]
    assert exit_status(argv) == 2
    assert "--reference needs onnxruntime, which is not installed" in capsys.readouterr().err


def test_a_bad_reference_model_is_one_line(kws, capsys, tmp_path):
    tmp, _, _, _ = kws
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    mlp = Path(__file__).resolve().parent / "data" / "mlp.onnx"
    for model, message in ((tmp_path / "junk.onnx", "ONNX Runtime cannot load it"),
                           (tmp_path / "none.onnx", "no such file"),
                           (mlp, "its inputs x differ from the program's mfcc")):
        assert exit_status([str(tmp / "gru.rnna"), "--data", str(tmp / "test.npz"), "--reference", str(model)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rnnaccel-eval: error: --reference ") and message in err and err.count("\n") == 1


def test_plot_writes_a_png(kws, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    tmp, _, _, _ = kws
    plot = tmp_path / "cm.png"
    assert exit_status([str(tmp / "gru.rnna"), "--data", str(tmp / "test.npz"), "--plot", str(plot)]) == 0
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]


def test_plot_without_matplotlib_fails_before_running(kws, capsys, tmp_path, monkeypatch):
    tmp, _, _, _ = kws
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    plot = tmp_path / "cm.png"
    assert exit_status([str(tmp / "gru.rnna"), "--data", str(tmp / "test.npz"), "--plot", str(plot)]) == 2
    captured = capsys.readouterr()
    assert "--plot needs matplotlib, which is not installed" in captured.err and captured.out == ""
    assert not plot.exists()

"""Data files that are not what a command expects: a .npy for an .npz, a header that claims 2^40
elements, a zip bomb, complex numbers, no samples, a huge labels.txt, a wrong key, a PyTorch file.

Each ends in one line and status 2 before anything large is allocated, or, for an optional file,
in a one-line warning and a normal result.
"""

from __future__ import annotations

import io
import resource
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from compiler.cli import main as compile_main
from isa import container
from isa.fileio import MAX_NPZ_BYTES, read_npz
from runtime_sim.cli import main as sim_main
from runtime_sim.eval_cli import main as eval_main
from tests.sim_helpers import samples, tiny_rnn

from hostile_inputs import npy_bytes, npy_header, one_member_zip, zip_bomb
from models import fc_model

COMMANDS = {"compile": compile_main, "sim": sim_main, "eval": eval_main}
BOMB_BYTES = 3 << 30  # what the zip bomb inflates to (more needs zip64; the check reads only the header)


def fails(command: str, argv: list[str], capsys, *messages: str) -> str:
    with pytest.raises(SystemExit) as info:
        COMMANDS[command](argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert err.startswith(f"rnnaccel-{command}: error: ") and err.count("\n") == 1, err
    assert all(m in err for m in messages), err
    return err


@pytest.fixture
def work(tmp_path):
    onnx.save(fc_model(1, 4, 3), str(tmp_path / "m.onnx"))
    container.save(tiny_rnn(), str(tmp_path / "p.rnna"))
    np.savez(tmp_path / "in.npz", x=samples(1)[0])
    return tmp_path


def compile_with(t: Path, calibration: Path) -> list[str]:
    return [str(t / "m.onnx"), "-o", str(t / "x.rnna"), "-q", "--calibration", str(calibration)]


def test_a_npy_file_where_an_npz_is_expected(work, capsys):
    np.save(work / "one.npy", np.zeros((4, 1, 4), np.float32))
    hint = "it is a .npy file (one unnamed array); expected an .npz archive"
    fails("compile", compile_with(work, work / "one.npy"), capsys, "calibration", hint)
    fails("sim", [str(work / "p.rnna"), "--inputs", str(work / "one.npy")], capsys, "inputs", hint)
    fails("eval", [str(work / "p.rnna"), "--data", str(work / "one.npy")], capsys, "data", hint)
    assert not (work / "x.rnna").exists()


def test_a_header_claiming_2_40_elements_is_refused_before_allocating(work, capsys):
    header = npy_header((1 << 40,))
    (work / "huge.npz").write_bytes(one_member_zip(header + bytes(16)))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fails("sim", [str(work / "p.rnna"), "--inputs", str(work / "huge.npz")], capsys,
          "array 'x' claims shape [1099511627776] of float32")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200_000  # KiB: nothing of 4 TiB was made


def test_a_zip_bomb_is_refused_from_its_header(work, capsys):
    (work / "bomb.npz").write_bytes(zip_bomb(BOMB_BYTES))  # 3 GiB of zeros in a few MB
    assert (work / "bomb.npz").stat().st_size < 8 << 20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fails("compile", compile_with(work, work / "bomb.npz"), capsys, f"more than the limit of {MAX_NPZ_BYTES}")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200_000


def test_an_npz_file_larger_than_the_limit_is_refused_unread(work, capsys):
    with open(work / "big.npz", "wb") as fh:
        fh.truncate(10 << 30)  # sparse: 10 GB claimed, nothing written
    fails("sim", [str(work / "p.rnna"), "--inputs", str(work / "big.npz")], capsys,
          f"larger than the limit of {MAX_NPZ_BYTES} bytes")


def test_an_array_larger_than_its_archive_member_is_refused(work, capsys):
    header = npy_header((1000,))
    (work / "short.npz").write_bytes(one_member_zip(header + bytes(8)))
    fails("sim", [str(work / "p.rnna"), "--inputs", str(work / "short.npz")], capsys, "bytes in the archive")


def test_complex_calibration_is_refused_without_a_warning(work, capsys):
    np.savez(work / "c.npz", x=np.ones((4, 1, 4), np.complex64))
    fails("compile", compile_with(work, work / "c.npz"), capsys, "array 'x' has dtype complex64; expected real")


def test_complex_calibration_through_the_api_is_refused(work):
    from compiler.pipeline import compile_model
    from isa.errors import RnnaccelError
    with pytest.raises(RnnaccelError, match="has dtype complex128; expected real numbers"):
        compile_model(fc_model(1, 4, 3), calibration={"x": np.ones((4, 1, 4), np.complex128)})


def test_a_calibration_array_of_the_wrong_shape_is_reported_as_given(work, capsys):
    np.savez(work / "c.npz", x=np.ones((5, 2, 4), np.float32))
    fails("compile", compile_with(work, work / "c.npz"), capsys, "has shape [5, 2, 4]; expected [samples, 1, 4]")
    np.savez(work / "c.npz", x=np.ones((2, 4), np.float32))
    fails("compile", compile_with(work, work / "c.npz"), capsys, "has shape [2, 4]; expected")


def test_a_wrong_key_says_what_was_found(work, capsys):
    np.savez(work / "c.npz", mfcc=np.ones((4, 1, 4), np.float32))
    fails("compile", compile_with(work, work / "c.npz"), capsys, "lacks input(s) x (it has mfcc)")
    np.savez(work / "bad_in.npz", features=samples(1)[0])
    fails("sim", [str(work / "p.rnna"), "--inputs", str(work / "bad_in.npz")], capsys,
          "missing input(s) x; the program expects x and was given features")


def test_a_pytorch_checkpoint_gets_a_hint_to_export_it(work, capsys):
    with zipfile.ZipFile(work / "model.pt", "w") as archive:  # the layout torch.save writes
        archive.writestr("model/data.pkl", b"\x80\x02}q\x00.")
    shutil.copy(work / "model.pt", work / "renamed.onnx")
    for name in ("model.pt", "renamed.onnx"):
        fails("compile", [str(work / name), "-o", str(work / "x.rnna")], capsys, "not an ONNX model",
              "PyTorch checkpoint (torch.save): export the model with torch.onnx.export")


def test_eval_on_no_samples_is_one_line(kws, capsys):
    tmp, _, x, y = kws
    np.savez(tmp / "empty.npz", x=x[:0], y=y[:0])
    fails("eval", [str(tmp / "gru.rnna"), "--data", str(tmp / "empty.npz")], capsys, "has no samples")


def test_a_huge_labels_file_is_passed_over_with_a_warning(kws, tmp_path, capsys):
    prog, _, x, y = kws
    np.savez(tmp_path / "test.npz", x=x, y=y)
    with open(tmp_path / "labels.txt", "wb") as fh:
        fh.truncate(10 << 30)  # sparse
    with pytest.raises(SystemExit) as info:
        eval_main([str(prog / "gru.rnna"), "--data", str(tmp_path / "test.npz")])
    captured = capsys.readouterr()
    assert info.value.code == 0
    assert captured.err.startswith("rnnaccel-eval: warning: cannot read class names") and "limit" in captured.err
    assert "chip top-1:" in captured.out


def test_reading_an_npz_file_round_trips_every_real_dtype(tmp_path):
    arrays = {"f": np.arange(6, dtype=np.float32).reshape(2, 3), "i": np.arange(3), "b": np.array([True, False]),
              "u": np.arange(4, dtype=np.uint8)}
    np.savez_compressed(tmp_path / "a.npz", **arrays)
    got = read_npz(tmp_path / "a.npz")
    assert got.keys() == arrays.keys()
    for name, value in arrays.items():
        np.testing.assert_array_equal(got[name], value)
        assert got[name].dtype == value.dtype


def test_an_array_named_twice_or_encrypted_is_refused(work, capsys):
    payload = npy_bytes(samples(1)[0])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive, warnings.catch_warnings(action="ignore", category=UserWarning):
        archive.writestr("x.npy", payload)
        archive.writestr("x.npy", payload)
    (work / "twice.npz").write_bytes(buf.getvalue())
    fails("sim", [str(work / "p.rnna"), "--inputs", str(work / "twice.npz")], capsys, "array 'x' appears twice")
    blob = bytearray(one_member_zip(payload))
    blob[6] |= 1  # the local header's encryption flag
    central = blob.rindex(b"PK\x01\x02")
    blob[central + 8] |= 1  # and the central directory's
    (work / "locked.npz").write_bytes(bytes(blob))
    fails("sim", [str(work / "p.rnna"), "--inputs", str(work / "locked.npz")], capsys, "array 'x' is encrypted")

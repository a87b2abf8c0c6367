"""Files a user names by mistake: an output that is an input or another output, a device, a FIFO,
a directory, a full disk, a name at the length limit, a mask, a link; inputs that are not files.

Each command must end with one line and status 2 (or succeed, writing through a device), leave no
file or temporary behind and change no input. Cases come from the second hostile-input campaign.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest

from compiler.cli import main as compile_main
from isa import container
from isa.cli import as_main, objdump_main
from isa.listing import disassemble
from runtime_sim.cli import main as sim_main
from tests.sim_helpers import samples, tiny_rnn

from hostile_inputs import external_model
from models import fc_model

COMMANDS = {"compile": compile_main, "sim": sim_main, "objdump": objdump_main, "as": as_main}
SUBPROCESS_SECONDS = 120  # a hang fails the test instead of blocking the suite


def run(command: str, argv: list[str], capsys) -> tuple[int, str]:
    """Exit status and standard error of one command run in this process."""
    with pytest.raises(SystemExit) as info:
        COMMANDS[command](argv)
    err = capsys.readouterr().err
    return info.value.code, err


def fails(command: str, argv: list[str], capsys, message: str) -> str:
    status, err = run(command, argv, capsys)
    assert status == 2, err
    assert err.startswith(f"rnnaccel-{command}: error: ") and err.count("\n") == 1, err
    assert message in err, err
    return err


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below `folder` with its bytes and mode: what a refused command must leave as it was."""
    return {str(p.relative_to(folder)): (p.read_bytes(), stat.S_IMODE(p.lstat().st_mode))
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture
def work(tmp_path):
    """A model, calibration data, a program, its listing and its inputs, in one folder."""
    onnx.save(fc_model(1, 4, 3), str(tmp_path / "m.onnx"))
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).standard_normal((8, 1, 4)).astype(np.float32))
    program = tiny_rnn()
    container.save(program, str(tmp_path / "p.rnna"))
    (tmp_path / "p.s").write_text(disassemble(program))
    np.savez(tmp_path / "in.npz", x=samples(1)[0])
    return tmp_path


def compile_args(t: Path, *extra: str) -> list[str]:
    return [str(t / "m.onnx"), "-q", "--calibration", str(t / "calib.npz"), *extra]


SAME_FILE_CASES = {
    "-o is the model": ("compile", lambda t: compile_args(t, "-o", str(t / "m.onnx")), "the model"),
    "-o is the model by another path": ("compile", lambda t: compile_args(t, "-o", f"{t}/./m.onnx"), "the model"),
    "--listing is the model": ("compile", lambda t: compile_args(t, "-o", str(t / "x.rnna"), "--listing",
                                                                 str(t / "m.onnx")), "the model"),
    "-o is the calibration": ("compile", lambda t: compile_args(t, "-o", str(t / "calib.npz")), "calibration data"),
    "--report is the calibration": ("compile", lambda t: compile_args(t, "-o", str(t / "x.rnna"), "--report",
                                                                      str(t / "calib.npz")), "calibration data"),
    "--listing is -o": ("compile", lambda t: compile_args(t, "-o", str(t / "x.rnna"), "--listing",
                                                          str(t / "x.rnna")), "is the same file as -o"),
    "--report is -o": ("compile", lambda t: compile_args(t, "-o", str(t / "x.rnna"), "--report",
                                                         str(t / "x.rnna")), "is the same file as -o"),
    "--outputs is the program": ("sim", lambda t: [str(t / "p.rnna"), "--inputs", str(t / "in.npz"), "--outputs",
                                                   str(t / "p.rnna")], "the program"),
    "--stats is the inputs": ("sim", lambda t: [str(t / "p.rnna"), "--inputs", str(t / "in.npz"), "--stats",
                                                str(t / "in.npz")], "the inputs"),
    "--trace is --stats": ("sim", lambda t: [str(t / "p.rnna"), "--inputs", str(t / "in.npz"), "--stats",
                                             str(t / "s.json"), "--trace", str(t / "s.json")], "as --stats"),
    "as -o is the listing": ("as", lambda t: [str(t / "p.s"), "-o", str(t / "p.s")], "the listing"),
    "objdump -o is the program": ("objdump", lambda t: [str(t / "p.rnna"), "-o", str(t / "p.rnna")], "the program"),
}


@pytest.mark.parametrize("case", SAME_FILE_CASES)
def test_an_output_that_is_an_input_or_another_output_is_refused(work, capsys, case):
    command, argv, message = SAME_FILE_CASES[case]
    before = snapshot(work)
    fails(command, argv(work), capsys, message)
    assert snapshot(work) == before


def test_an_output_hard_linked_to_the_model_is_refused(work, capsys):
    os.link(work / "m.onnx", work / "alias.onnx")
    before = snapshot(work)
    fails("compile", compile_args(work, "-o", str(work / "alias.onnx")), capsys, "the model")
    assert snapshot(work) == before


def test_outputs_honour_the_umask_and_an_existing_files_mode(work, capsys):
    (work / "old.s").write_text("old")
    os.chmod(work / "old.s", 0o640)
    old = os.umask(0o027)
    try:
        status, _ = run("compile", compile_args(work, "-o", str(work / "x.rnna"), "--listing", str(work / "old.s"),
                                                "--report", str(work / "r.json")), capsys)
    finally:
        os.umask(old)
    assert status == 0
    assert stat.S_IMODE((work / "x.rnna").stat().st_mode) == 0o640  # 0666 less 0027
    assert stat.S_IMODE((work / "r.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((work / "old.s").stat().st_mode) == 0o640 and (work / "old.s").read_text() != "old"


def test_a_vector_folder_honours_the_umask(work, capsys):
    old = os.umask(0o022)
    try:
        status, _ = run("sim", [str(work / "p.rnna"), "--inputs", str(work / "in.npz"), "--dump-vectors",
                                str(work / "v"), "--stats", str(work / "s.json")], capsys)
    finally:
        os.umask(old)
    assert status == 0
    assert stat.S_IMODE((work / "v").stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in (work / "v").iterdir()} == {0o644}


def test_an_output_name_of_250_bytes_is_written(work, capsys):
    name = "p" * 245 + ".rnna"
    status, err = run("compile", compile_args(work, "-o", str(work / name)), capsys)
    assert status == 0, err
    assert (work / name).read_bytes()[:4] == b"RNNA"


def test_a_symlinked_output_keeps_its_link_and_updates_the_file(work, capsys):
    (work / "real.s").write_text("old")
    (work / "link.s").symlink_to("real.s")
    status, _ = run("objdump", [str(work / "p.rnna"), "-o", str(work / "link.s")], capsys)
    assert status == 0
    assert (work / "link.s").is_symlink() and (work / "real.s").read_text().startswith((work / "p.s").read_text()[:20])


def test_dev_null_is_written_through_not_replaced(work, capsys):
    argv = [str(work / "p.rnna"), "--inputs", str(work / "in.npz"), "--stats", os.devnull, "--trace", os.devnull]
    assert run("sim", argv, capsys)[0] == 0
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert not list(Path(os.devnull).parent.glob(".rnnaccel-*"))


def test_a_fifo_output_receives_the_file(work, capsys):
    fifo = work / "listing.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    status, _ = run("objdump", [str(work / "p.rnna"), "-o", str(fifo)], capsys)
    reader.join(SUBPROCESS_SECONDS)
    assert status == 0 and stat.S_ISFIFO(fifo.stat().st_mode)
    assert received == [(work / "p.s").read_bytes()]


def test_a_directory_as_output_is_one_line(work, capsys):
    (work / "d").mkdir()
    before = snapshot(work)
    fails("compile", compile_args(work, "-o", str(work / "d")), capsys, "it is a directory")
    fails("sim", [str(work / "p.rnna"), "--inputs", str(work / "in.npz"), "--stats", str(work / "d")], capsys,
          "it is a directory")
    assert snapshot(work) == before and not list((work / "d").iterdir())


def test_a_full_device_is_one_line_and_no_file_is_left(work, capsys):
    before = snapshot(work)
    fails("compile", compile_args(work, "-o", str(work / "x.rnna"), "--report", "/dev/full"), capsys,
          "No space left on device")
    assert snapshot(work) == before


@pytest.mark.parametrize("argv", [["rnnaccel-objdump", "{p}.rnna"], ["rnnaccel-sim", "{p}.rnna", "--inputs", "{i}"]])
def test_standard_output_on_a_full_device_is_one_line(work, argv):
    cli = {"rnnaccel-objdump": "from isa.cli import objdump_main as m",
           "rnnaccel-sim": "from runtime_sim.cli import main as m"}[argv[0]]
    args = [a.format(p=work / "p", i=work / "in.npz") for a in argv[1:]]
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-c", f"import sys; {cli}; m(sys.argv[1:])", *args], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=SUBPROCESS_SECONDS, check=False,
                              cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"{argv[0]}: error: cannot write standard output: No space left on device\n"


FIFO_INPUTS = {
    "sim program": ("sim", lambda t, f: [f, "--inputs", str(t / "in.npz")], "program"),
    "sim inputs": ("sim", lambda t, f: [str(t / "p.rnna"), "--inputs", f], "inputs"),
    "objdump program": ("objdump", lambda t, f: [f], "program"),
    "as listing": ("as", lambda t, f: [f, "-o", str(t / "x.rnna")], "listing"),
    "compile model": ("compile", lambda t, f: [f, "-o", str(t / "x.rnna")], "model"),
    "compile calibration": ("compile", lambda t, f: [str(t / "m.onnx"), "-o", str(t / "x.rnna"), "--calibration",
                                                     f], "calibration"),
}


@pytest.mark.parametrize("case", FIFO_INPUTS)
def test_a_fifo_as_input_is_refused_without_blocking(work, case):
    command, argv, what = FIFO_INPUTS[case]
    fifo = work / "in.fifo"
    os.mkfifo(fifo)
    module = {"compile": "compiler.cli", "sim": "runtime_sim.cli", "objdump": "isa.cli", "as": "isa.cli"}[command]
    entry = {"objdump": "objdump_main", "as": "as_main"}.get(command, "main")
    proc = subprocess.run([sys.executable, "-c", f"import sys; from {module} import {entry} as m; m(sys.argv[1:])",
                           *argv(work, str(fifo))], capture_output=True, text=True, timeout=SUBPROCESS_SECONDS,
                          check=False, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert what in proc.stderr and "it is a FIFO, not a regular file" in proc.stderr
    assert not (work / "x.rnna").exists()


def test_version_on_every_command(capsys):
    for name, command in COMMANDS.items():
        with pytest.raises(SystemExit) as info:
            command(["--version"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"rnnaccel-{name} ") and out.split()[1][0].isdigit(), out


def test_an_output_that_is_the_models_external_data_is_refused(tmp_path, capsys):
    path, data = external_model(tmp_path)
    before = snapshot(tmp_path)
    fails("compile", [str(path), "-q", "-o", str(tmp_path / "p.rnna"), "--listing", str(tmp_path / "weights.bin")],
          capsys, "--listing " + str(tmp_path / "weights.bin") + " is the same file as the external data weights.bin")
    assert snapshot(tmp_path) == before and (tmp_path / "weights.bin").read_bytes() == data

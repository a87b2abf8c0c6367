"""rnnaccel-objdump and rnnaccel-as: listings out, identical bytes back, clean failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from isa.cli import as_main, objdump_main
from isa.cliutil import run_cli
from isa.container import save
from isa.errors import RnnaccelError
from isa.table import BY_MNEMONIC

from isa_strategies import sample_program

ROOT = Path(__file__).resolve().parent.parent


def _run(entry: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return _run_code(f"from isa.cli import {entry}; {entry}()", *args, stdin=stdin)


def _run_code(code: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, check=False)


@pytest.fixture
def program(tmp_path) -> Path:
    path = tmp_path / "p.rnna"
    save(sample_program(), path)
    return path


def test_objdump_then_as_gives_identical_bytes(tmp_path, program) -> None:
    dumped = _run("objdump_main", str(program))
    assert dumped.returncode == 0, dumped.stderr
    (tmp_path / "p.s").write_text(dumped.stdout)
    built = _run("as_main", str(tmp_path / "p.s"), "-o", str(tmp_path / "q.rnna"))
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "q.rnna").read_bytes() == program.read_bytes()


def test_objdump_to_file(tmp_path, program, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        objdump_main([str(program), "-o", str(tmp_path / "p.s")])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == ""
    assert (tmp_path / "p.s").read_text().startswith("; rnnaccel program \"kws\"")


def test_as_error_is_one_line_exit_2_and_leaves_no_file(tmp_path) -> None:
    (tmp_path / "bad.s").write_text('.program model="m"\n.target\n.memory host=1 amem=1 acc=1 wmem=1 cbm=0\n'
                                    ".code\nFROB x=1\n")
    result = _run("as_main", str(tmp_path / "bad.s"), "-o", str(tmp_path / "out.rnna"))
    assert result.returncode == 2
    assert result.stderr == (f"rnnaccel-as: error: {tmp_path / 'bad.s'}:5:1: unknown mnemonic 'FROB' "
                             f"(known: {', '.join(BY_MNEMONIC)})\n")
    assert list(tmp_path.iterdir()) == [tmp_path / "bad.s"]


def test_as_keeps_an_existing_output_on_error(tmp_path) -> None:
    (tmp_path / "bad.s").write_text("nonsense\n")
    (tmp_path / "out.rnna").write_bytes(b"old")
    result = _run("as_main", str(tmp_path / "bad.s"), "-o", str(tmp_path / "out.rnna"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (tmp_path / "out.rnna").read_bytes() == b"old"


@pytest.mark.parametrize("content, message", [
    (None, "cannot read program"),
    (b"RNNA" + bytes(20), "checksum mismatch"),
    (b"\x00" * 3, "bad magic"),
])
def test_objdump_bad_input(tmp_path, content, message) -> None:
    path = tmp_path / "p.rnna"
    if content is not None:
        path.write_bytes(content)
    result = _run("objdump_main", str(path))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("rnnaccel-objdump: error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1


def test_as_missing_source(tmp_path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        as_main([str(tmp_path / "absent.s"), "-o", str(tmp_path / "p.rnna")])
    assert exit_info.value.code == 2


def test_as_reads_stdin(tmp_path, program) -> None:
    listing = _run("objdump_main", str(program)).stdout
    result = _run("as_main", "-", "-o", str(tmp_path / "q.rnna"), stdin=listing)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "q.rnna").read_bytes() == program.read_bytes()


def test_help_mentions_round_trip() -> None:
    result = _run("as_main", "--help")
    assert result.returncode == 0 and "rnnaccel-objdump" in result.stdout


@pytest.mark.parametrize("exc, status, stderr", [
    (RnnaccelError("bad\nthing"), 2, "tool: error: bad thing\n"),
    (KeyboardInterrupt(), 130, "tool: interrupted\n"),
])
def test_run_cli_maps_exceptions(capsys, exc, status, stderr) -> None:
    def fail(argv):
        raise exc

    with pytest.raises(SystemExit) as exit_info:
        run_cli("tool", fail, [])
    assert exit_info.value.code == status
    assert capsys.readouterr().err == stderr


def test_run_cli_passes_status_and_argv() -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli("tool", len, ["a", "b", "c"])
    assert exit_info.value.code == 3


def test_broken_pipe_is_quiet() -> None:
    """`rnnaccel-objdump big.rnna | head` must not end in a traceback (in a child: it rewires fd 1)."""
    code = ("import sys; from isa.cliutil import run_cli\n"
            "def main(argv):\n    sys.stdout.write('x')\n    raise BrokenPipeError\n"
            "run_cli('tool', main)")
    result = _run_code(code)
    assert (result.returncode, result.stderr) == (1, "")

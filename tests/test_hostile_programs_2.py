"""Hostile input files, listings, targets and programs, part 2: refused with one line, quickly.

Each case is built here: a FIFO, a symlink to a device, a sparse 10 GB file, numbers of 5 000
digits (Python refuses int() of strings over 4 300 digits), nesting that exhausts the recursion
limit, a repeated memory region, and programs too large for the instruction memory.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from fuzz_targets import sections, with_meta, with_section

from compiler.cli import main as compile_main
from isa import container
from isa.assembler import MAX_LISTING_BYTES, MAX_NUMBER_CHARS, assemble
from isa.cli import as_main, objdump_main
from isa.container import MAX_PROGRAM_BYTES, to_bytes
from isa.encoding import Instruction
from isa.errors import RnnaccelError
from isa.fileio import MAX_JSON_INT_DIGITS, read_input
from isa.listing import disassemble
from isa.loops import MAX_EXECUTED, STRIDE_SLOTS
from isa.table import CODE_WORDS
from isa.target import MAX_TARGET_BYTES
from runtime_sim import Simulator
from runtime_sim.cli import main as sim_main

from hostile_inputs import code_of, endless_loop, measured_run
from isa_strategies import sample_program
from models import fc_model
from sim_helpers import I, make_program

ROOT = Path(__file__).resolve().parent.parent
HUGE = 10 * 2**30  # a sparse file of this size costs no disk space


def _sparse(path, size: int = HUGE) -> None:
    with open(path, "wb") as fh:
        fh.truncate(size)


# --- isa.fileio.read_input ----------------------------------------------------------------------

def test_read_input_reads_a_regular_file_and_follows_symlinks(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert read_input(tmp_path / "link", "data", 3) == b"abc"


@pytest.mark.parametrize("make, problem", [
    (os.mkfifo, "it is a FIFO, not a regular file"),
    (lambda p: p.symlink_to("/dev/zero"), "it is a character device, not a regular file"),
    (lambda p: p.mkdir(), "it is a directory, not a regular file"),
    (_sparse, f"it is {HUGE} bytes, larger than the limit of 100 bytes"),
    (lambda p: None, "No such file or directory"),
])
def test_read_input_refuses_before_reading(tmp_path, make, problem):
    path = tmp_path / "in"
    make(path)
    with pytest.raises(RnnaccelError) as info:
        read_input(path, "data", 100)
    assert str(info.value) == f"cannot read data {path}: {problem}"


# --- through the command lines: one line, status 2, no output file, quickly ------------------------

def _refused(main, argv: list[str], capsys, folder, seconds: float = 10) -> str:
    """Run a CLI that must refuse its input; return its one stderr line (without the newline)."""
    start = time.perf_counter()
    with pytest.raises(SystemExit) as info:
        main(argv)
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not [p.name for p in folder.iterdir() if p.name.startswith(("out", ".out"))]
    assert elapsed < seconds, f"{elapsed:.1f} s"
    return err[:-1]


def _position(text: str, needle: str, occurrence: int = 1) -> str:
    """line:column of the n-th `needle` in `text`, as the assembler counts them (from 1)."""
    at = -1
    for _ in range(occurrence):
        at = text.index(needle, at + 1)
    return f"{text.count(chr(10), 0, at) + 1}:{at - text.rfind(chr(10), 0, at)}"


# --- 1. numbers of 5 000 digits in a listing --------------------------------------------------------

DIGITS = "9" * 5000
LISTING = disassemble(sample_program())


@pytest.mark.parametrize("old, new", [
    ("n=490", f"n={DIGITS}"),  # an instruction operand
    ("x=0x00000 ", f"x=0x{'f' * 5000} "),  # a hex operand: int(, 16) has no digit limit, str() has
    ("host=502", f"host={DIGITS}"),  # a memory size
    ("shape=[1,49,10]", f"shape=[1,{DIGITS},10]"),
    ("scale=0.0123", f"scale=0.{DIGITS}"),
    ("macs=32", f"macs={DIGITS}"),  # a target parameter
    ('.table "sigmoid"\n    11', f'.table "sigmoid"\n    {DIGITS}'),  # a table value
    ('layer=1 what="matvec"', f'layer={DIGITS} what="matvec"'),  # a .loc directive
    ("000020: ", f"{'0' * 4998}20: "),  # a weight-memory row address
])
def test_as_refuses_a_number_of_5000_digits(tmp_path, capsys, old, new):
    text = LISTING.replace(old, new, 1)
    number = re.search(r"[-+0-9.xa-f]{5000,}:?", new).group()
    (tmp_path / "k.s").write_text(text)
    err = _refused(as_main, [str(tmp_path / "k.s"), "-o", str(tmp_path / "out.rnna")], capsys, tmp_path)
    assert err == (f"rnnaccel-as: error: {tmp_path / 'k.s'}:{_position(text, number)}: number "
                   f"'{number[:20]}...' is {len(number)} characters long, more than the {MAX_NUMBER_CHARS} "
                   "any field, size or address needs")


def test_a_message_quotes_a_user_literal_shortly(tmp_path, capsys):
    """An operand of 24 hex digits still fits the lexer; the field check prints it in decimal."""
    (tmp_path / "k.s").write_text(LISTING.replace("LOAD ", "Q" * 5000 + " ", 1))
    err = _refused(as_main, [str(tmp_path / "k.s"), "-o", str(tmp_path / "out.rnna")], capsys, tmp_path)
    assert f"unknown mnemonic '{'Q' * 40}...' (known: LOAD," in err and len(err) < 400
    (tmp_path / "k.s").write_text(LISTING.replace("n=490", f"n=0x{'f' * 22}", 1))
    err = _refused(as_main, [str(tmp_path / "k.s"), "-o", str(tmp_path / "out.rnna")], capsys, tmp_path)
    assert err.endswith(f"LOAD: n={(1 << 88) - 1} does not fit its 16-bit field")


# --- 2. a program's META: a 5 000-digit integer, a repeated region ---------------------------------

def _program_file(folder, blob: bytes):
    (folder / "p.rnna").write_bytes(blob)
    return str(folder / "p.rnna")


def _meta_text(blob: bytes) -> str:
    offset, length = sections(blob)[b"META"]
    return blob[offset:offset + length].decode()


@pytest.mark.parametrize("main, extra", [(objdump_main, ["-o", "out.s"]), (sim_main, ["--inputs", "in.npz"])])
def test_meta_with_a_5000_digit_integer(tmp_path, capsys, main, extra):
    blob = to_bytes(sample_program())
    text = _meta_text(blob).replace('"host":502', f'"host":{DIGITS}')
    path = _program_file(tmp_path, with_section(blob, b"META", text.encode()))
    err = _refused(main, [path, *[str(tmp_path / e) if "." in e else e for e in extra]], capsys, tmp_path)
    assert err.endswith("error: corrupted program: META section is not valid JSON (an integer of 5000 digits, "
                        f"more than {MAX_JSON_INT_DIGITS})")


def test_meta_with_a_repeated_region_is_refused_as_the_assembler_refuses_it(tmp_path, capsys):
    program = sample_program()
    weights = program.regions[0]
    twice = replace(program, regions=(weights, replace(weights, base=weights.base + len(weights.data))))
    message = "region 'weights' is unknown or repeated (regions: weights, biases)"
    with pytest.raises(RnnaccelError, match=re.escape(f"k.s:{_position(disassemble(twice), '.region weights', 2)}: "
                                                      f"{message}")):
        assemble(disassemble(twice), "k.s")
    blob = to_bytes(program)
    meta = json.loads(_meta_text(blob))
    meta["regions"].append(dict(meta["regions"][0]))
    path = _program_file(tmp_path, with_meta(blob, meta))
    err = _refused(objdump_main, [path, "-o", str(tmp_path / "out.s")], capsys, tmp_path)
    assert err == f"rnnaccel-objdump: error: {message}"


# --- 3. a target description file --------------------------------------------------------------------

def _nested(depth: int):
    return lambda path: path.write_text("[" * depth + "]" * depth)


@pytest.mark.parametrize("make, problem", [
    (lambda p: p.write_text(f'{{"macs": {DIGITS}}}'),
     f"is not valid JSON (an integer of 5000 digits, more than {MAX_JSON_INT_DIGITS})"),
    (_nested(100_000), f"it is 200000 bytes, larger than the limit of {MAX_TARGET_BYTES} bytes"),
    (_nested(30_000), "is not valid JSON (nested too deeply)"),  # within the size limit
    (_sparse, f"it is {HUGE} bytes, larger than the limit of {MAX_TARGET_BYTES} bytes"),
    (os.mkfifo, "it is a FIFO, not a regular file"),
])
def test_compile_refuses_a_hostile_target_file(tmp_path, capsys, make, problem):
    model = tmp_path / "m.onnx"
    onnx.save(fc_model(1, 4, 3), model)
    target = tmp_path / "t.json"
    make(target)
    err = _refused(compile_main, [str(model), "-o", str(tmp_path / "out.rnna"), "--target", str(target)],
                   capsys, tmp_path)
    assert err.startswith("rnnaccel-compile: error: ") and err.endswith(problem)
    assert str(target) in err


# --- 4. programs too large for the chip, and files that are no programs -------------------------------

@pytest.mark.parametrize("words", [CODE_WORDS + 1, 2 * 1024 * 1024])
def test_sim_refuses_more_code_than_instruction_memory_before_decoding(tmp_path, capsys, words):
    np.savez(tmp_path / "in.npz", x=np.zeros([1, 49, 10], np.float32))
    path = _program_file(tmp_path, with_section(to_bytes(sample_program()), b"CODE", code_of(words)))
    err = _refused(sim_main, [path, "--inputs", str(tmp_path / "in.npz"), "--outputs", str(tmp_path / "out.npz"),
                              "--trace", str(tmp_path / "out.jsonl")], capsys, tmp_path, seconds=5)
    assert err == (f"rnnaccel-sim: error: the program has {words} instructions, more than the {CODE_WORDS} "
                   "instruction memory holds")


def test_no_program_is_made_with_more_code_than_instruction_memory():
    with pytest.raises(RnnaccelError, match=f"the program has {CODE_WORDS + 1} instructions"):
        replace(sample_program(), code=(Instruction.make("VMOV", dst=0, src=0, n=1),) * (CODE_WORDS + 1))


@pytest.mark.parametrize("make, problem", [
    (lambda p: p.symlink_to("/dev/zero"), "it is a character device, not a regular file"),
    (os.mkfifo, "it is a FIFO, not a regular file"),
    (_sparse, f"it is {HUGE} bytes, larger than the limit of {MAX_PROGRAM_BYTES} bytes"),
])
@pytest.mark.parametrize("main, extra", [(objdump_main, []), (sim_main, ["--inputs", "in.npz"])])
def test_a_program_path_that_is_no_regular_file_of_bounded_size(tmp_path, capsys, make, problem, main, extra):
    path = tmp_path / "p.rnna"
    make(path)
    np.savez(tmp_path / "in.npz", x=np.zeros([1, 49, 10], np.float32))
    err = _refused(main, [str(path), *[str(tmp_path / e) if "." in e else e for e in extra]], capsys, tmp_path)
    assert err.endswith(f"error: cannot read program {path}: {problem}")


# --- 5. a listing that is no regular file -------------------------------------------------------------

@pytest.mark.parametrize("make, problem", [
    (os.mkfifo, "it is a FIFO, not a regular file"),
    (lambda p: p.symlink_to("/dev/zero"), "it is a character device, not a regular file"),
    (lambda p: p.mkdir(), "it is a directory, not a regular file"),
    (_sparse, f"it is {HUGE} bytes, larger than the limit of {MAX_LISTING_BYTES} bytes"),
])
def test_as_refuses_a_listing_that_is_no_regular_file(tmp_path, capsys, make, problem):
    make(tmp_path / "k.s")
    err = _refused(as_main, [str(tmp_path / "k.s"), "-o", str(tmp_path / "out.rnna")], capsys, tmp_path)
    assert err == f"rnnaccel-as: error: cannot read listing {tmp_path / 'k.s'}: {problem}"


def test_as_still_reads_standard_input(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(LISTING.encode())))
    with pytest.raises(SystemExit) as info:
        as_main(["-", "-o", str(tmp_path / "p.rnna")])
    assert info.value.code == 0, capsys.readouterr().err
    assert (tmp_path / "p.rnna").read_bytes() == to_bytes(sample_program())


def test_the_trace_is_kept_only_when_asked():
    program = make_program([I("LOOP", count=50, body=2, strides=0), I("VMOV", dst=0, src=8, n=4),
                            I("VMOV", dst=8, src=0, n=4)], weights=bytes(2 * STRIDE_SLOTS * 2),
                           inputs={"x": (0, (4,))}, outputs={"y": (0, (4,))})
    kept, unkept = (Simulator(program, trace=t).run({"x": np.ones(4, np.float32)}) for t in (True, False))
    assert unkept.trace is None and len(kept.trace) == 101
    assert unkept.stats == kept.stats and unkept.stats["instructions"] == 101


def test_the_largest_accepted_program_runs_in_bounded_time_and_memory(tmp_path):
    """A full instruction memory of straight-line code, through rnnaccel-sim in a fresh process."""
    small = make_program([I("VMOV", dst=0, src=64, n=1)], inputs={"x": (0, (4,))}, outputs={"y": (0, (4,))})
    path = _program_file(tmp_path, with_section(to_bytes(small), b"CODE", code_of(CODE_WORDS)))
    np.savez(tmp_path / "in.npz", x=np.zeros(4, np.float32))
    run = measured_run(["-m", "runtime_sim.cli", path, "--inputs", str(tmp_path / "in.npz"), "--stats",
                        str(tmp_path / "s.json")], ROOT)
    assert run.status == 0, run.last_line
    assert run.seconds < 60
    assert run.peak_kib < 100_000  # 54 MB; 155 MB when the trace was always kept
    assert json.loads((tmp_path / "s.json").read_text())["instructions"] == CODE_WORDS


def test_the_longest_accepted_loop_runs_in_bounded_time_and_memory(tmp_path):
    """A LOOP that executes just under the default limit, through rnnaccel-sim in a fresh process:
    about 8 s and 100 MB (the limit was 2^21 before: 163 s and 3.7 GB)."""
    container_path = tmp_path / "loop.rnna"
    container.save(endless_loop(count=MAX_EXECUTED // 255 - 1), str(container_path))
    np.savez(tmp_path / "in.npz", x=np.zeros(4, np.float32))
    run = measured_run(["-m", "runtime_sim.cli", str(container_path), "--inputs", str(tmp_path / "in.npz"),
                        "--stats", str(tmp_path / "s.json")], ROOT)
    assert run.status == 0, run.last_line
    assert run.seconds < 120
    assert run.peak_kib < 200_000
    assert json.loads((tmp_path / "s.json").read_text())["instructions"] > MAX_EXECUTED - 2 * 255


def test_max_instructions_sets_the_simulators_limit(tmp_path, capsys):
    container_path = tmp_path / "loop.rnna"
    container.save(endless_loop(count=3), str(container_path))
    np.savez(tmp_path / "in.npz", x=np.zeros(4, np.float32))
    argv = [str(container_path), "--inputs", str(tmp_path / "in.npz"), "--stats", str(tmp_path / "s.json")]
    err = _refused(sim_main, [*argv, "--max-instructions", "100"], capsys, tmp_path)
    assert "more than the limit of 100" in err and "--max-instructions" in err
    with pytest.raises(SystemExit) as info:
        sim_main([*argv, "--max-instructions", "766"])
    assert info.value.code == 0

"""Hostile and broken programs: named by offset or pc, bounded in time and memory, never a traceback.

The container's framing errors (magic, version, checksum, section bounds and overlaps) are in
test_isa_container.py; here are the ones behind a valid checksum that make the simulator
allocate or run: illegal opcodes, accesses outside a memory, endless loops, huge memory maps,
and each through the command lines (status 2, one line, no output file).
"""

from __future__ import annotations

import json
import re
import struct
import time

import numpy as np
import pytest
from fuzz_targets import reseal, sections, with_meta

from isa.assembler import assemble
from isa.cli import as_main, objdump_main
from isa.container import from_bytes, save, to_bytes
from isa.errors import RnnaccelError
from isa.listing import disassemble
from isa.loops import MAX_EXECUTED
from isa.tensors import MAX_HOST_ELEMENTS
from runtime_sim import Simulator
from runtime_sim.cli import main as sim_main

from hostile_inputs import endless_loop
from isa_strategies import sample_program
from sim_helpers import I, make_program


def _meta(blob: bytes) -> dict:
    offset, length = sections(blob)[b"META"]
    return json.loads(blob[offset:offset + length])


def test_a_loop_past_the_limit_fails_fast_naming_pc_and_limit():
    start = time.perf_counter()
    with pytest.raises(RnnaccelError, match=rf"pc 0 \(LOOP\): the program would execute at least 16711426 "
                                            rf"instructions, more than the limit of {MAX_EXECUTED}"):
        Simulator(endless_loop()).run({"x": np.zeros(4, np.float32)})
    assert time.perf_counter() - start < 2


def test_the_limit_is_a_simulator_option():
    program = endless_loop(count=3)
    assert len(Simulator(program).timing.trace) == 1 + 3 * 255
    with pytest.raises(RnnaccelError, match="more than the limit of 100"):
        _ = Simulator(program, max_instructions=100).timing


def test_illegal_opcode_names_the_pc():
    blob = bytearray(to_bytes(sample_program()))
    offset, _ = sections(bytes(blob))[b"CODE"]
    blob[offset + 16 * 2] = 0xFF  # the opcode byte of the third instruction
    with pytest.raises(RnnaccelError, match="illegal opcode 0xff at pc 2"):
        from_bytes(reseal(bytes(blob)))


def test_access_outside_a_memory_names_the_pc():
    program = make_program([I("LOAD", dst=0, src=0, n=8), I("LOAD", dst=0, src=10, n=100)], host=16)
    with pytest.raises(RnnaccelError, match=r"pc 1 \(LOAD\): host range \[10, 110\) outside host memory \(16 "):
        _ = Simulator(program).timing


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["memory"].update(host=1 << 40), f"memory map: host=1099511627776 is outside 0..{MAX_HOST_ELEMENTS}"),
    (lambda m: m["memory"].update(amem=-1), "memory map: amem=-1 is outside"),
    (lambda m: m["inputs"][0].update(shape=[1 << 20, 1 << 20]), "tensor 'x' has 1099511627776 elements"),
    (lambda m: m.update(memory=[1, 2]), "META is malformed"),
    (lambda m: m["inputs"][0].update(scale=float("inf")), "META is malformed"),
    (lambda m: m["inputs"][0].update(scale=1e300), "META is malformed"),  # int16 x scale overflows float32
    (lambda m: m["inputs"][0].update(scale=1e-300), "META is malformed"),  # x / scale overflows float64
    (lambda m: m["inputs"][0].update(slices=[[1, 0.5]], slice_axis=1), "slices [1] along axis 1 do not cover"),
    (lambda m: m["inputs"][0].update(slices=[[49, 0.5]], slice_axis=3), "slices [49] along axis 3 do not cover"),
    (lambda m: m["inputs"][0].update(slices=[[50, 0.5], [-1, 0.5]], slice_axis=1), "do not cover"),
    (lambda m: m["inputs"][0].update(slices=[[49, 1e-300]], slice_axis=1), "a slice scale is outside"),
    (lambda m: m["inputs"][0].update(slices=[[49, float("nan")]], slice_axis=1), "a slice scale is outside"),
    (lambda m: m["inputs"][0].update(slices="49x0.5", slice_axis=1), "META is malformed"),
    (lambda m: m["inputs"][0].update(slice_axis=1), "slices [] along axis 1 do not cover"),
    (lambda m: m["target"].update(weight_mem_bytes=1 << 40), "weight_mem_bytes=1099511627776 is invalid"),
])
def test_meta_that_would_make_the_simulator_allocate_too_much(edit, message):
    blob = to_bytes(sample_program())
    meta = _meta(blob)
    edit(meta)
    with pytest.raises(RnnaccelError, match=re.escape(message)):
        from_bytes(with_meta(blob, meta))


def test_listing_with_a_huge_memory_map_names_line_and_column():
    text = disassemble(sample_program()).replace(".memory host=502", ".memory host=99999999999")
    with pytest.raises(RnnaccelError, match=r"^k\.s:\d+:1: memory map: host=99999999999 is outside"):
        assemble(text, source="k.s")


# --- through the command lines ------------------------------------------------------------------

def _fails(main, argv: list[str], capsys, message: str) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err and message in err, err
    return err


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".npz", ".json", ".jsonl", ".s", ".tmp")
                  or p.name.startswith("out"))


def test_sim_cli_endless_loop_leaves_no_files(tmp_path, capsys):
    save(endless_loop(), tmp_path / "loop.rnna")
    np.savez(tmp_path / "in.npz", x=np.zeros(4, np.float32))
    outs = ["--outputs", str(tmp_path / "out.npz"), "--stats", str(tmp_path / "out.json"),
            "--trace", str(tmp_path / "out.jsonl")]
    _fails(sim_main, [str(tmp_path / "loop.rnna"), "--inputs", str(tmp_path / "in.npz"), *outs], capsys,
           f"rnnaccel-sim: error: pc 0 (LOOP): the program would execute at least 16711426 instructions, "
           f"more than the limit of {MAX_EXECUTED}")
    assert _leftovers(tmp_path) == ["in.npz"]


def test_sim_cli_access_outside_memory(tmp_path, capsys):
    save(make_program([I("LOAD", dst=0, src=10, n=100)], host=16, inputs={"x": (0, (4,))}), tmp_path / "p.rnna")
    np.savez(tmp_path / "in.npz", x=np.zeros(4, np.float32))
    _fails(sim_main, [str(tmp_path / "p.rnna"), "--inputs", str(tmp_path / "in.npz"), "--outputs",
                      str(tmp_path / "out.npz")], capsys, "pc 0 (LOAD): host range [10, 110) outside host memory")
    assert _leftovers(tmp_path) == ["in.npz"]


@pytest.mark.parametrize("corrupt, message", [
    (lambda b: b"XXXX" + b[4:], "bad magic"),
    (lambda b: reseal(b[:4] + struct.pack("<H", 7) + b[6:]), "unsupported program version 7"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "checksum mismatch"),
    (lambda b: reseal(b[:8] + b"META" + struct.pack("<II", 8, 10**6) + b[20:]), "section META at offset 8 is out"),
])
def test_objdump_cli_corrupted_program_leaves_no_listing(tmp_path, capsys, corrupt, message):
    (tmp_path / "p.rnna").write_bytes(corrupt(to_bytes(sample_program())))
    _fails(objdump_main, [str(tmp_path / "p.rnna"), "-o", str(tmp_path / "out.s")], capsys, message)
    assert _leftovers(tmp_path) == []


def test_as_cli_hostile_listing_leaves_no_program(tmp_path, capsys):
    text = disassemble(sample_program()).replace(".memory host=502", ".memory host=99999999999")
    (tmp_path / "k.s").write_text(text)
    _fails(as_main, [str(tmp_path / "k.s"), "-o", str(tmp_path / "out.rnna")], capsys, "memory map: host=")
    assert not (tmp_path / "out.rnna").exists() and not list(tmp_path.glob(".*tmp"))

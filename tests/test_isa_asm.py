"""Assembler and disassembler: exact inverses, and every assembler error says where."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings

from isa.assembler import assemble
from isa.container import Program, to_bytes
from isa.errors import RnnaccelError
from isa.listing import disassemble

from isa_strategies import programs, sample_program
from snapshot import assert_snapshot


@given(programs())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_assemble_inverts_disassemble(prog: Program) -> None:
    assert to_bytes(assemble(disassemble(prog))) == to_bytes(prog)


def test_sample_round_trip_and_listing_shape() -> None:
    prog = sample_program()
    text = disassemble(prog)
    assert to_bytes(assemble(text)) == to_bytes(prog)
    assert '.input name="x" shape=[1,49,10] scale=0.0123 host=0x0' in text
    assert re.search(r"^0003: 22[0-9a-f]{30}  VACT   dst=0x001f6 src=0x001ea n=12 table=1 up=0 +; fc L1 tile 0 matvec$",
                     text, re.MULTILINE)
    assert "\n.loc node=\"output\" layer=2 what=\"store y\"\n0004: " in text  # only what changed
    assert ".region biases base=0x001800 size=96\n001800: 00000000 " in text


def test_prefix_columns_are_ignored() -> None:
    text = disassemble(sample_program()).replace("0000: 01", "abcd: 02", 1)
    assert to_bytes(assemble(text)) == to_bytes(sample_program())


def test_a_listing_without_tables_has_none() -> None:
    text = disassemble(sample_program()).split(".table")[0]
    assert assemble(text).tables == {}


def _error(text: str) -> str:
    with pytest.raises(RnnaccelError) as info:
        assemble(text, source="k.s")
    message = str(info.value)
    assert "\n" not in message
    return message


def _edit(old: str, new: str) -> str:
    text = disassemble(sample_program())
    assert old in text
    return text.replace(old, new, 1)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize("old, new, column, message", [
    ("LOAD   dst", "LOAD   dst==", 52, "syntax error: unexpected '='"),
    ("LOAD ", "LAOD ", 41, "unknown mnemonic 'LAOD'"),
    ("n=490", "n=70000", 73, "LOAD: n=70000 does not fit its 16-bit field"),
    ("table=1", "table=16", 77, "VACT: table=16 does not fit its 4-bit field"),
    ("n=490", 'n="490"', 73, "LOAD: n must be an integer"),
    ("table=1", "table=1.5", 77, "VACT: table must be an integer"),
    ("n=490", "count=490", 73, "'count' is not an operand"),
    (" n=490", "", 41, "missing operand(s) n"),
    ("scale=0.0123", "scale=-1.0", 1, "dimensions must be positive, the scale within"),
    ("scale=0.0123", "scale=1e300", 1, "dimensions must be positive, the scale within"),
    ("scale=0.0123", "scale=1e-300", 1, "dimensions must be positive, the scale within"),
    (".memory host", ".memory hots", 9, ".memory has no key 'hots'"),
    ("macs=32", "macs=33", 1, "target: macs=33 is invalid"),
    ("001800: 00000000 ", "001800: 0000000 ", 9, "odd number of hex digits"),
    ("001800: 00000000 ", "001810: 00000000 ", 1, "row at 0x1810, expected 0x1800"),
    ("size=96", "size=97", 1, "region biases: 96 bytes given, size=97"),
    ("base=0x001800", "base=0x07ffff", 1, "lies outside the 524288-byte weight memory"),
    ('.table "tanh"', '.table  "sigmoid"', 1, "table 'sigmoid' given twice"),
])
def test_errors_name_line_and_column(old: str, new: str, column: int, message: str) -> None:
    text = _edit(old, new)
    line = _line_of(text, new.strip() or "0000:")
    got = _error(text)
    assert got.startswith(f"k.s:{line}:{column}: "), got
    assert message in got


def test_table_length_is_checked() -> None:
    got = _error(_edit(' 32757\n.table "tanh"', ' 32757 1\n.table "tanh"'))
    assert re.match(r"k\.s:\d+:1: table 'sigmoid': 258 values given, expected 257", got), got


def test_missing_directive() -> None:
    assert _error(_edit(".memory", "; .memory")).startswith("k.s:1:1: missing required directive .memory")


def test_repeated_directive() -> None:
    got = _error(_edit(".program", '.program model="a"\n.program'))
    assert re.match(r"k\.s:6:1: \.program given twice", got), got


def test_syntax_error_at_end_of_line_and_input() -> None:
    assert "unexpected end of line, expected an integer" in _error('.program model="m" size=[1,')
    assert "unexpected end of input, expected '.code'" in _error('.program model="m"')


def test_unexpected_character() -> None:
    assert re.match(r"k\.s:1:1: syntax error: unexpected character '@'", _error("@"))


def test_listing_snapshot() -> None:
    """The sample's listing, as text: a format change shows up as a reviewable diff."""
    assert_snapshot("isa_sample.s", disassemble(sample_program()))


def test_loc_keys_carry_over_from_the_previous_loc() -> None:
    text = disassemble(sample_program())
    prog = assemble(text.replace('.loc node="fc" layer=1 what="matvec"', '.loc layer=1 what="matvec"'))
    loc = prog.locs[1]
    assert (loc.node, loc.layer, loc.tile, loc.what) == ("input", 1, 0, "matvec")

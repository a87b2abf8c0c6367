"""The instruction table validates itself: malformed rows fail at import time."""

from __future__ import annotations

import dataclasses

import pytest

from isa.table import OPS, _row, _validate, evaluate


def test_shipped_table_is_valid() -> None:
    _validate(OPS)


def _with(**changes):
    return (*OPS, dataclasses.replace(OPS[0], **changes))


@pytest.mark.parametrize("rows, problem", [
    (_with(), "duplicate mnemonic"),
    (_with(mnemonic="NEW"), "duplicate opcode"),
    (_with(mnemonic="NEW", opcode=0x7F, unit="FPU"), "unknown unit"),
    (_with(mnemonic="NEW", opcode=0x100), "opcode out of range"),
    (_with(mnemonic="NEW", opcode=0x7F, cycles="n*bogus"), "unknown 'bogus'"),
])
def test_validate_rejects_bad_rows(rows, problem) -> None:
    with pytest.raises(AssertionError, match=problem):
        _validate(rows)


def test_validate_rejects_fields_that_do_not_fit() -> None:
    wide = _row("WIDE", 0x7F, "VEC", "dst:20 src:20 n:100", "", "", "1", "0", "too wide")
    with pytest.raises(AssertionError, match="fields need 148 bits"):
        _validate((*OPS, wide))


def test_validate_rejects_unknown_memory() -> None:
    bad = _row("BAD", 0x7F, "VEC", "dst:20 n:16", "", "dst@rom[n]", "1", "0", "writes rom")
    with pytest.raises(AssertionError, match="bad access"):
        _validate((*OPS, bad))


def test_signed_fields_are_declared_with_s() -> None:
    row = _row("NEW", 0x7F, "VEC", "a:4 b:s8", "", "", "1", "0", "a test row")
    assert [(f.name, f.lo, f.width, f.signed) for f in row.fields] == [("a", 8, 4, False), ("b", 12, 8, True)]


def test_evaluate_rounds_division_up() -> None:
    assert evaluate("n*act_bytes/dma_bytes_per_cycle", {"n": 5, "act_bytes": 2, "dma_bytes_per_cycle": 8}) == 2
    assert evaluate("rows*cols", {"rows": 3, "cols": 4}) == 12


def test_evaluate_sums_products_each_rounded_up() -> None:
    env = {"rows": 3, "cols": 5, "nnz": 7, "bits": 3, "split": 2}
    assert evaluate("rows*cols/8+nnz*bits/8", env) == 2 + 3  # ceil(15/8) + ceil(21/8)
    assert evaluate("cols/split+split-1", env) == 3 + 2 - 1

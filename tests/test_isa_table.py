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


def test_validate_rejects_too_many_choices() -> None:
    bad = _row("BAD", 0x7F, "VEC", "f:1=a|b|c", "", "", "1", "0", "three choices in one bit")
    with pytest.raises(AssertionError, match="too many choices"):
        _validate((*OPS, bad))


def test_evaluate_rounds_division_up() -> None:
    assert evaluate("n*act_bytes/dma_bytes_per_cycle", {"n": 5, "act_bytes": 2, "dma_bytes_per_cycle": 8}) == 2
    assert evaluate("rows*cols", {"rows": 3, "cols": 4}) == 12

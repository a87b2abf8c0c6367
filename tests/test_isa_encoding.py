"""Encoding: every op round-trips through its 128-bit word; bad words are errors naming the pc."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from isa.encoding import Instruction, decode, decode_all, encode, encode_all
from isa.errors import RnnaccelError
from isa.table import BY_MNEMONIC, OPS, WORD_BITS, WORD_BYTES

from isa_strategies import instructions


@given(instructions)
def test_encode_decode_round_trip(instr: Instruction) -> None:
    raw = encode(instr)
    assert len(raw) == WORD_BYTES
    assert decode(raw) == instr


@given(st.lists(instructions, max_size=10))
def test_encode_all_round_trip(code: list[Instruction]) -> None:
    assert decode_all(encode_all(code)) == code


def test_make_checks_operand_ranges() -> None:
    assert Instruction.make("VACT", dst=1, src=2, n=3, table=1)["table"] == 1
    with pytest.raises(RnnaccelError, match="does not fit"):
        Instruction.make("LOAD", dst=1 << 20, src=0, n=1)
    with pytest.raises(RnnaccelError, match="does not fit"):
        Instruction.make("VACT", dst=1, src=2, n=3, table=16)
    with pytest.raises(RnnaccelError, match="missing"):
        Instruction.make("LOAD", dst=1, src=0)


def test_illegal_opcode_names_pc() -> None:
    with pytest.raises(RnnaccelError, match=r"illegal opcode 0xff at pc 3"):
        decode(b"\xff" + bytes(WORD_BYTES - 1), pc=3)


def _end(op) -> int:
    return op.fields[-1].lo + op.fields[-1].width


@pytest.mark.parametrize("op", [op for op in OPS if _end(op) < WORD_BITS], ids=lambda op: op.mnemonic)
def test_stray_bits_name_pc(op) -> None:
    word = op.opcode | 1 << _end(op)
    with pytest.raises(RnnaccelError, match=f"{op.mnemonic} at pc 7 has bits set outside"):
        decode(word.to_bytes(WORD_BYTES, "little"), pc=7)


@pytest.mark.parametrize("value", [-32768, -1, 0, 32767])
def test_signed_fields_round_trip(value) -> None:
    instr = Instruction.make("VCLAMP", dst=0, src=0, n=1, lo=value, hi=-value - 1)
    assert decode(encode(instr)) == instr and instr["lo"] == value


def test_signed_field_range() -> None:
    with pytest.raises(RnnaccelError, match="does not fit"):
        Instruction.make("VCLAMP", dst=0, src=0, n=1, lo=32768, hi=0)
    assert BY_MNEMONIC["VCLAMP"].field("lo").low == -32768


def test_code_length_must_be_whole_words() -> None:
    with pytest.raises(RnnaccelError, match="not a multiple of 16"):
        decode_all(bytes(17))


def test_decode_all_counts_pcs() -> None:
    good = encode(Instruction.make("VMOV", dst=0, src=0, n=1))
    with pytest.raises(RnnaccelError, match="at pc 2"):
        decode_all(good * 2 + bytes(WORD_BYTES))

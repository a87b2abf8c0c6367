"""Instruction records and their fixed-width binary encoding, both driven by isa.table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from isa.errors import RnnaccelError
from isa.table import BY_MNEMONIC, BY_OPCODE, CONSTANTS, OPCODE_BITS, WORD_BYTES, Field, Op, evaluate


@dataclass(frozen=True)
class Instruction:
    """One decoded instruction: its table row and operand values."""

    op: Op
    args: tuple[int, ...]

    @classmethod
    def make(cls, mnemonic: str, **operands: int) -> Instruction:
        """Build from keyword operands; a field with a default may be left out."""
        op = BY_MNEMONIC[mnemonic]
        operands = {f.name: f.default for f in op.fields if f.default is not None} | operands
        missing = [f.name for f in op.fields if f.name not in operands]
        extra = set(operands) - {f.name for f in op.fields}
        if missing or extra:
            raise RnnaccelError(f"{mnemonic}: operands missing {missing} or unknown {sorted(extra)}")
        return cls(op, tuple(_operand_value(op, f, operands[f.name]) for f in op.fields))

    @property
    def mnemonic(self) -> str:
        return self.op.mnemonic

    def __getitem__(self, name: str) -> int:
        return self.args[[f.name for f in self.op.fields].index(name)]

    def operands(self) -> dict[str, int]:
        return {f.name: v for f, v in zip(self.op.fields, self.args)}

    def env(self, target_env: Mapping[str, int]) -> dict[str, int]:
        """Names an expression of the table may use: operands, target parameters, constants."""
        return {**target_env, **CONSTANTS, **self.operands()}

    def footprint(self, target_env: Mapping[str, int]) -> tuple[list, list]:
        """([memory, address, length] read, [...] written), as the trace lists them."""
        env = self.env(target_env)
        ranges = [[[a.memory, env[a.operand], evaluate(a.length, env)] for a in accs]
                  for accs in (self.op.reads, self.op.writes)]
        return ranges[0], ranges[1]


def _operand_value(op: Op, field: Field, value: int) -> int:
    if not field.low <= value <= field.high:
        raise RnnaccelError(f"{op.mnemonic}: {field.name}={value} does not fit its {field.width}-bit field")
    return int(value)


def encode(instr: Instruction) -> bytes:
    word = instr.op.opcode
    for field, value in zip(instr.op.fields, instr.args):
        word |= (value & (field.limit - 1)) << field.lo
    return word.to_bytes(WORD_BYTES, "little")


def decode(raw: bytes, pc: int = 0) -> Instruction:
    """Decode one word; unknown opcodes and stray bits are errors naming the pc."""
    word = int.from_bytes(raw, "little")
    op = BY_OPCODE.get(word & ((1 << OPCODE_BITS) - 1))
    if op is None:
        raise RnnaccelError(f"illegal opcode 0x{word & 0xFF:02x} at pc {pc}")
    args = tuple(_field_value(f, (word >> f.lo) & (f.limit - 1)) for f in op.fields)
    instr = Instruction(op, args)
    if encode(instr) != raw:
        raise RnnaccelError(f"{op.mnemonic} at pc {pc} has bits set outside its fields")
    return instr


def _field_value(field, raw: int) -> int:
    return raw - field.limit if field.signed and raw > field.high else raw


def encode_all(code: list[Instruction]) -> bytes:
    return b"".join(encode(i) for i in code)


def decode_all(blob: bytes) -> list[Instruction]:
    if len(blob) % WORD_BYTES:
        raise RnnaccelError(f"code section is {len(blob)} bytes, not a multiple of {WORD_BYTES}")
    return [decode(blob[i:i + WORD_BYTES], i // WORD_BYTES) for i in range(0, len(blob), WORD_BYTES)]

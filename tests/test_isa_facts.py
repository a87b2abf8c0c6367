"""Facts of the instruction set the compiler and simulator rely on are read from isa/, not copied:
these tests pin the compiler's view of each one to the ISA's definition."""

from __future__ import annotations

import dataclasses

import pytest

from compiler.frontend import softmax_ops
from compiler.ops import elementwise, softmax
from compiler.passes import matrices
from isa.container import MemoryMap
from isa.numerics import IDENTITY, MAX_SHIFT, MULT_BITS, quantize_multiplier
from isa.table import BY_MNEMONIC, CODEBOOK_SLOT, CONSTANTS, MEMORIES, OPS, stride
from isa.target import Target


def test_compiler_codebook_slot_is_what_mvc_reads() -> None:
    assert matrices.CODEBOOK_SLOT == CODEBOOK_SLOT
    for mnemonic in ("MVC", "MVCS"):
        (cb,) = [a for a in BY_MNEMONIC[mnemonic].reads if a.operand == "cb"]
        assert cb.memory == "cbm" and int(cb.length) == CODEBOOK_SLOT


def test_strides_are_the_table_lengths_of_one_element() -> None:
    assert stride("MVB", "bias") == CONSTANTS["acc_bytes"]
    assert stride("VRQ", "q") == stride("VRQA", "q") == 4  # an int16 multiplier and an int16 shift
    assert stride("VADD", "a") == 1


@pytest.mark.parametrize("mnemonic", [op.mnemonic for op in OPS if any(f.name == "shift" for f in op.fields)])
def test_every_shift_field_holds_max_shift(mnemonic: str) -> None:
    assert BY_MNEMONIC[mnemonic].field("shift").high == MAX_SHIFT
    assert elementwise.MAX_SHIFT == MAX_SHIFT


def test_softmax_row_limit_is_the_reductions_n_field() -> None:
    assert softmax_ops.ROW_LIMIT == BY_MNEMONIC["VRMAX"].field("n").high == (1 << 16) - 1


def test_identity_multiplier_is_shared() -> None:
    assert IDENTITY == quantize_multiplier(1.0) == (1 << (MULT_BITS - 1), MULT_BITS - 1)
    assert softmax.IDENTITY is elementwise.IDENTITY is IDENTITY


def test_memories_match_the_memory_map_and_the_target() -> None:
    assert tuple(f.name for f in dataclasses.fields(MemoryMap)) == tuple(MEMORIES)
    target = Target()
    for memory in MEMORIES.values():
        assert (memory.size is None) == (memory.parameter is None)
        if memory.size is not None:
            assert getattr(target, memory.size) > 0 and memory.parameter in target.to_dict()


def test_shortfall_names_the_memory_its_unit_and_the_parameter_that_sizes_it() -> None:
    target = Target(act_mem_bytes=1024)
    assert MEMORIES["amem"].shortfall(600, target) == \
        "600 elements of activation memory but the target has 512 (act_mem_bytes=1024)"
    assert MEMORIES["wmem"].shortfall(9, target, " at 8 bits").startswith("9 bytes of weight memory at 8 bits but")

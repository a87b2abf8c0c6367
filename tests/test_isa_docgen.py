"""docs/isa.md is generated from the table; this test fails when someone forgets to regenerate it."""

from __future__ import annotations

from isa import docgen
from isa.table import OPS


def test_docs_isa_md_is_not_stale() -> None:
    assert docgen.main(["--check"]) == 0, "docs/isa.md is stale: run `python -m isa.docgen`"


def test_every_instruction_is_documented() -> None:
    text = docgen.render()
    assert text.startswith(docgen.HEADER)
    for op in OPS:
        assert f"| `{op.mnemonic}` | `0x{op.opcode:02x}` |" in text

"""The disassembler: a Program as a listing that people read and `isa.assembler` reads back.

The listing is the exact inverse of the assembler: every byte of the container (META, code,
weight-memory regions, activation tables and the debug locations) is spelled out, so
`to_bytes(assemble(disassemble(p))) == to_bytes(p)`. Strings are JSON-quoted and floats are
printed with repr(), which is what makes that round trip exact.

A valid Program, for this purpose, has its locs sorted by pc, each within [0, len(code)]:
a `.loc` directive applies from the next instruction on.

A partitioned program's listing starts with its host part: `.partitioned` (the program's inputs,
outputs and figures), one `.hostnode` per host node, in order, and `.hostmodel`, the host graph's
ONNX bytes as hex rows. Then each island: `.island N`, with a comment naming the host node that
calls it, followed by the island's complete chip-program listing.
"""

from __future__ import annotations

import dataclasses
import json

from isa.container import LOC_KEYS, NO_LOC, Loc, Program, Region
from isa.encoding import Instruction, encode
from isa.partitioned import HostNode, PartitionedProgram, pair_texts, qualified_op
from isa.table import WORD_BYTES
from isa.tensors import StateDesc, TensorDesc

REGION_LINE_BYTES = 32
REGION_GROUP_BYTES = 4
TABLE_LINE_VALUES = 16
COMMENT_COLUMN = 104  # instruction lines are padded to this width so the trailing comments line up


def disassemble(prog: Program | PartitionedProgram) -> str:
    """The complete listing of `prog`: header, META directives, code, regions and tables; for a
    partitioned program, its host part and then each island's listing."""
    if isinstance(prog, PartitionedProgram):
        return _partitioned(prog)
    parts = [_header(prog), _meta(prog), _code(prog), *map(_region, prog.regions), _tables(prog)]
    return "\n".join(line for part in parts for line in part) + "\n"


def _partitioned(prog: PartitionedProgram) -> str:
    host = prog.host
    callers = {node.island: node for node in host.nodes if node.calls_island}
    lines = [
        f"; rnnaccel partitioned program {json.dumps(prog.model)}: listing by rnnaccel-objdump, input to rnnaccel-as",
        (f"; {len(host.nodes) - len(callers)} host nodes ({host.host_mac_ops} MACs), {len(prog.islands)} islands "
         f"({host.chip_mac_fraction:.1%} of the MACs); {host.boundary_bytes} bytes cross between host and chip "
         "per inference"),
        "",
        (f".partitioned model={json.dumps(prog.model)} inputs={_names(host.inputs)} outputs={_names(host.outputs)} "
         f"boundary_bytes={host.boundary_bytes} chip_mac_fraction={host.chip_mac_fraction!r}" + _host_state(host)),
        *map(_host_node, host.nodes),
        *_hex_rows(f".hostmodel size={len(host.model)}", host.model, 0),
    ]
    text = "\n".join(lines) + "\n"
    for index, island in enumerate(prog.islands):
        text += f"\n.island {index} ; {_call_comment(callers.get(index))}\n" + disassemble(island)
    return text


def _names(names: tuple[str, ...]) -> str:
    return "[" + ",".join(json.dumps(name) for name in names) + "]"


def _host_node(node: HostNode) -> str:
    line = (f".hostnode name={json.dumps(node.name)} op={json.dumps(node.op)} domain={json.dumps(node.domain)} "
            f"inputs={_names(node.inputs)} outputs={_names(node.outputs)} macs={node.macs}")
    return f"{line} island={node.island}" if node.calls_island else line


def _call_comment(node: HostNode | None) -> str:
    if node is None:  # only in a program that check_partitioned refuses, but a listing shows what is there
        return "called by no host node"
    return (f"called by host node {json.dumps(node.name)} ({_plain(qualified_op(node))}) with inputs "
            f"{_names(node.inputs)}, outputs {_names(node.outputs)}")


def _header(prog: Program) -> list[str]:
    t, m = prog.target, prog.memory
    return [
        f"; rnnaccel program {json.dumps(prog.model)}: listing by rnnaccel-objdump, input to rnnaccel-as",
        f"; {len(prog.code)} instructions ({len(prog.code) * WORD_BYTES} bytes of code)",
        (f"; memory: host {m.host} elements, amem {m.amem}/{t.act_elems} elements, "
         f"acc {m.acc}/{t.acc_entries} entries, wmem {m.wmem}/{t.weight_mem_bytes} bytes"),
        "",
    ]


def _meta(prog: Program) -> list[str]:
    return [
        f".program model={json.dumps(prog.model)}",
        ".target " + _pairs(prog.target.to_dict()),
        ".memory " + _pairs(dataclasses.asdict(prog.memory)),
        *(_desc(".input", d) for d in prog.inputs),
        *(_desc(".output", d) for d in prog.outputs),
        *map(_state, prog.state),
        *(f".recurrence node={json.dumps(node)} cycles={cycles}" for node, cycles in prog.recurrence),
        "",
    ]


def _pairs(values: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())


def _desc(directive: str, d: TensorDesc) -> str:
    text = f"{directive} name={json.dumps(d.name)} shape={_shape(d.shape)} scale={d.scale!r} host=0x{d.host:x}"
    return text + _slices(d)


def _shape(dims: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def _slices(d: TensorDesc | StateDesc) -> str:
    """A packed tensor's scale runs, as the assembler reads them; nothing for one scale."""
    if not d.slices:
        return ""
    runs = ",".join(f"[{count},{scale!r}]" for count, scale in d.slices)
    return f" slices=[{runs}] slice_axis={d.slice_axis}"


def _host_state(host) -> str:
    if not host.state:
        return ""
    return f" state={_names(pair_texts(host.state))} state_outputs={int(host.state_outputs)}"


def _state(s: StateDesc) -> str:
    """The fields beyond name, address and size only where they differ from the defaults."""
    text = f".state name={json.dumps(s.name)} address=0x{s.address:x} size={s.size}"
    if s.shape:
        text += f" shape={_shape(s.shape)}"
    if s.scale != 1.0:
        text += f" scale={s.scale!r}"
    return text + _slices(s) + (f" output={json.dumps(s.output)}" if s.output else "")


def _code(prog: Program) -> list[str]:
    lines, pending, previous = [".code"], list(prog.locs), NO_LOC
    for pc, instr in enumerate(prog.code):
        while pending and pending[0].pc <= pc:
            lines.append(_loc_directive(pending[0], previous))
            previous = pending.pop(0)
        lines.append(_instruction_line(pc, instr, None if previous is NO_LOC else previous))
    for loc in pending:
        lines.append(_loc_directive(loc, previous))
        previous = loc
    return lines + [""]


def _loc_directive(loc: Loc, previous: Loc) -> str:
    """Only what changed since the previous .loc: the rest carries over."""
    changed = [(key, getattr(loc, key)) for key in LOC_KEYS if getattr(loc, key) != getattr(previous, key)]
    return " ".join([".loc"] + [f"{k}={json.dumps(v)}" for k, v in changed])


def _instruction_line(pc: int, instr: Instruction, loc: Loc | None) -> str:
    text = f"{pc:04x}: {encode(instr).hex()}  {instr.mnemonic:<7}{format_operands(instr)}"
    if loc is None:
        return text
    return f"{text:<{COMMENT_COLUMN}} ; {loc_comment(loc)}"


def format_operands(instr: Instruction) -> str:
    """Operands as name=value: addresses in hex at their field's width, other values in decimal."""
    addresses = {a.operand for a in instr.op.reads + instr.op.writes}
    out = []
    for field, value in zip(instr.op.fields, instr.args):
        if field.name in addresses:
            out.append(f"{field.name}=0x{value:0{-(-field.width // 4)}x}")
        else:
            out.append(f"{field.name}={value}")
    return " ".join(out)


def loc_comment(loc: Loc) -> str:
    """'<node> L<layer> t=<step> tile <tile> <what>'; -1 and "" mean "none", so those parts are left out."""
    parts = [_plain(loc.node), f"L{loc.layer}", f"t={loc.step}", f"tile {loc.tile}", _plain(loc.what)]
    present = [True, loc.layer != -1, loc.step != -1, loc.tile != -1, bool(loc.what)]
    return " ".join(part for part, keep in zip(parts, present) if keep)


def _plain(text: str) -> str:
    """Text as is when it is safe inside a one-line comment, JSON-quoted otherwise."""
    return text if text.isascii() and text.isprintable() and text else json.dumps(text)


def _region(region: Region) -> list[str]:
    return _hex_rows(f".region {region.name} base=0x{region.base:06x} size={len(region.data)}", region.data,
                    region.base) + [""]


def _hex_rows(directive: str, data: bytes, base: int) -> list[str]:
    """`directive`, then `data` as rows of hex byte groups, each row headed by its address."""
    lines = [directive]
    for offset in range(0, len(data), REGION_LINE_BYTES):
        chunk = data[offset:offset + REGION_LINE_BYTES]
        groups = (chunk[i:i + REGION_GROUP_BYTES].hex() for i in range(0, len(chunk), REGION_GROUP_BYTES))
        lines.append(f"{base + offset:06x}: {' '.join(groups)}")
    return lines


def _tables(prog: Program) -> list[str]:
    lines = []
    for name, table in prog.tables.items():
        values = [int(v) for v in table]
        lines.append(f".table {json.dumps(name)}")
        for i in range(0, len(values), TABLE_LINE_VALUES):
            lines.append(" ".join(f"{v:6d}" for v in values[i:i + TABLE_LINE_VALUES]))
    return lines

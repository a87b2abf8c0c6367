"""The instruction set, defined once as data.

Each row of OPS is one instruction: mnemonic, opcode, functional unit, operand fields with their
widths, the memory it reads and writes, its cost, its useful MACs and its meaning. The encoder,
decoder, assembler, disassembler, simulator dispatch, timing model and docs/isa.md all read
this table; adding an instruction is one row here plus one semantics function.

Expressions (footprint lengths, cycles, MACs) are sums of products and ceiling divisions of
operand names, integers and target parameters, each product read left to right:
"rows*cols*weight_bytes", "n/vec_lanes", "rows*cols/8+nnz*bits/8". `/` rounds up, because
hardware cannot run a fraction of a cycle.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from isa.target import Target

WORD_BITS = 128
WORD_BYTES = WORD_BITS // 8
CODE_WORDS = 1 << 16  # instruction memory, in words (1 MiB); see docs/isa.md, Limits
OPCODE_BITS = 8

UNITS = ("DMA", "MAC", "VEC", "DEC", "SEQ")
UNIT_LATENCY = {"DMA": "dma_latency", "MAC": "mac_latency", "VEC": "vec_latency", "DEC": "mac_latency", "SEQ": "0"}
CODEBOOK_SLOT = 16  # codebook entries MVC and MVCS read at `cb`: room for a 4-bit codebook


@dataclass(frozen=True)
class Memory:
    """One memory of the chip: how messages name it, what its addresses count, what docs/isa.md
    says it holds, the Target attribute giving its size and the Target parameter that sets it
    (both None for host memory, which each program sizes)."""

    title: str
    unit: str
    meaning: str
    size: str | None = None
    parameter: str | None = None

    def shortfall(self, need: int, target: Target, detail: str = "") -> str:
        """How a refusal for want of this memory ends, alike wherever the compiler finds it:
        '8192 entries of accumulator memory but the target has 4096 (acc_entries=4096)'."""
        return (f"{need} {self.unit} of {self.title}{detail} but the target has {getattr(target, self.size)} "
                f"({self.parameter}={getattr(target, self.parameter)})")


MEMORIES: Mapping[str, Memory] = {
    "host": Memory("host memory", "elements",
                   "host memory, in activation elements (per inference: inputs, then outputs)"),
    "amem": Memory("activation memory", "elements", "on-chip activation memory, in activation elements",
                   "act_elems", "act_mem_bytes"),
    "acc": Memory("accumulator memory", "entries", "accumulator memory, in accumulator entries",
                  "acc_entries", "acc_entries"),
    "wmem": Memory("weight memory", "bytes", "on-chip weight memory, in bytes", "weight_mem_bytes", "weight_mem_bytes"),
    "cbm": Memory("codebook memory", "entries", "the decompression engine's codebook memory, in entries of weight_bits",
                  "codebook_entries", "codebook_entries"),
}


@dataclass(frozen=True)
class Field:
    """One operand: `width` bits starting at bit `lo` of the instruction word.

    A signed field holds a two's-complement value; a field with a default may be left out when
    an instruction is written (Instruction.make, the assembler).
    """

    name: str
    lo: int
    width: int
    signed: bool = False
    default: int | None = None

    @property
    def limit(self) -> int:
        return 1 << self.width

    @property
    def low(self) -> int:
        return -(self.limit >> 1) if self.signed else 0

    @property
    def high(self) -> int:
        """The largest value the field holds (inclusive)."""
        return (self.limit >> 1) - 1 if self.signed else self.limit - 1


@dataclass(frozen=True)
class Access:
    """A memory range an instruction reads or writes: [operand, operand + length)."""

    operand: str
    memory: str
    length: str


@dataclass(frozen=True)
class Op:
    mnemonic: str
    opcode: int
    unit: str
    fields: tuple[Field, ...]
    reads: tuple[Access, ...]
    writes: tuple[Access, ...]
    cycles: str
    macs: str
    meaning: str

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)


def _row(mnemonic, opcode, unit, fields, reads, writes, cycles, macs, meaning) -> Op:
    return Op(mnemonic, opcode, unit, _fields(fields), _accesses(reads), _accesses(writes), cycles, macs, meaning)


def _fields(spec: str) -> tuple[Field, ...]:
    """'dst:20 lo:s16 split:4=1' -> fields after the opcode, in order ('s': signed, '=': default)."""
    out, lo = [], OPCODE_BITS
    for item in spec.split():
        name, rest = item.split(":")
        width, _, default = rest.partition("=")
        bits = int(width.removeprefix("s"))
        out.append(Field(name, lo, bits, width.startswith("s"), int(default) if default else None))
        lo += bits
    return tuple(out)


def _accesses(spec: str) -> tuple[Access, ...]:
    """'x@amem[cols] w@wmem[rows*cols*weight_bytes]' -> accesses."""
    return tuple(Access(*re.fullmatch(r"(\w+)@(\w+)\[([\w*/+-]+)\]", item).groups()) for item in spec.split())


# K split over `split` lane groups: ceil(cols/split) cycles, then the groups' partial sums meet
# in split - 1 more adder cycles
SPLIT_CYCLES = "cols/split+split-1"

DEPTHWISE_FIELDS = "acc:16 w:24 x:20 rows:9 taps:8 step:16"
DEPTHWISE_READS = "w@wmem[rows*taps*weight_bytes] x@amem[taps*step+rows-step]"

OPS: tuple[Op, ...] = (
    _row("LOAD", 0x01, "DMA", "dst:20 src:24 n:16", "src@host[n]", "dst@amem[n]",
         "n*act_bytes/dma_bytes_per_cycle", "0", "copy n activations from host memory into activation memory"),
    _row("STORE", 0x02, "DMA", "dst:24 src:20 n:16", "src@amem[n]", "dst@host[n]",
         "n*act_bytes/dma_bytes_per_cycle", "0", "copy n activations from activation memory to host memory"),
    _row("LDC", 0x03, "DMA", "dst:20 src:24 n:16", "src@wmem[n*act_bytes]", "dst@amem[n]",
         "n*act_bytes/dma_bytes_per_cycle", "0", "copy n constant activations from weight memory to activation memory"),
    _row("MV", 0x10, "MAC", "acc:16 w:24 x:20 rows:9 cols:16 split:4=1",
         "w@wmem[rows*cols*weight_bytes] x@amem[cols]", "acc@acc[rows]", SPLIT_CYCLES, "rows*cols",
         "acc[r] = sum_k W[k,r] * x[k] for r < rows: rows x split lanes, each column range on its own lanes"),
    _row("MVB", 0x11, "MAC", "acc:16 w:24 x:20 rows:9 cols:16 split:4=1 bias:24",
         "w@wmem[rows*cols*weight_bytes] x@amem[cols] bias@wmem[rows*acc_bytes]", "acc@acc[rows]",
         SPLIT_CYCLES, "rows*cols", "acc[r] = bias[r] + sum_k W[k,r] * x[k]: MV with the accumulators preloaded"),
    _row("MVA", 0x12, "MAC", "acc:16 w:24 x:20 rows:9 cols:16 split:4=1",
         "w@wmem[rows*cols*weight_bytes] x@amem[cols] acc@acc[rows]", "acc@acc[rows]",
         SPLIT_CYCLES, "rows*cols", "acc[r] += sum_k W[k,r] * x[k]: MV continuing an accumulation"),
    _row("MVC", 0x13, "MAC", "acc:16 w:24 x:20 rows:9 cols:16 split:4=1 cb:12 bits:3",
         f"w@wmem[rows*cols*bits/8] x@amem[cols] cb@cbm[{CODEBOOK_SLOT}]", "acc@acc[rows]", SPLIT_CYCLES,
         "rows*cols",
         "MV through the decompression engine: W[k,r] = codebook[cb + index], `bits`-bit indices streamed from w"),
    _row("MVCS", 0x14, "MAC", "acc:16 w:24 x:20 rows:9 cols:16 split:4=1 cb:12 bits:3 nnz:16",
         f"w@wmem[rows*cols/8+nnz*bits/8] x@amem[cols] cb@cbm[{CODEBOOK_SLOT}]", "acc@acc[rows]", SPLIT_CYCLES,
         "rows*cols",
         "MVC of a pruned matrix: at w a bitmap (bit i set: weight i kept), then the `nnz` kept weights' "
         "indices; W[k,r] = codebook[cb + index] where kept, else 0"),
    # depthwise: each lane multiplies its own channel, so a cycle reads a run of `rows` activations
    _row("MVDB", 0x15, "MAC", DEPTHWISE_FIELDS + " bias:24",
         f"{DEPTHWISE_READS} bias@wmem[rows*acc_bytes]", "acc@acc[rows]", "taps", "rows*taps",
         "acc[r] = bias[r] + sum_t W[t,r] * x[t*step + r] for r < rows: lane r reads channel r of each tap, "
         "one tap per cycle"),
    _row("MVDA", 0x16, "MAC", DEPTHWISE_FIELDS, f"{DEPTHWISE_READS} acc@acc[rows]", "acc@acc[rows]", "taps",
         "rows*taps", "acc[r] += sum_t W[t,r] * x[t*step + r]: MVDB continuing an accumulation"),
    _row("VRQ", 0x20, "VEC", "dst:20 src:16 n:16 q:24", "src@acc[n] q@wmem[n*4]", "dst@amem[n]",
         "n/vec_lanes", "0", "dst[i] = requantize(acc[i], mult[i], shift[i]) with per-element (mult, shift) at q"),
    _row("VRQA", 0x21, "VEC", "dst:20 src:16 n:16 q:24 add:20",
         "src@acc[n] q@wmem[n*4] add@amem[n]", "dst@amem[n]", "n/vec_lanes", "0",
         "dst[i] = sat(round(acc[i] * mult[i] >> shift[i]) + add[i]): requantise and add"),
    _row("VRQC", 0x2A, "VEC", "dst:20 src:16 n:16 q:24 bias:24 bshift:4",
         "src@acc[n] q@wmem[4] bias@wmem[n*weight_bytes]", "dst@amem[n]", "n/vec_lanes", "0",
         "dst[i] = sat(round(acc[i] * mult >> shift) + (bias[i] << bshift)): one (mult, shift), weight_bits biases"),
    _row("VRQAC", 0x2B, "VEC", "dst:20 src:16 n:16 q:24 add:20", "src@acc[n] q@wmem[4] add@amem[n]", "dst@amem[n]",
         "n/vec_lanes", "0", "dst[i] = sat(round(acc[i] * mult >> shift) + add[i]): VRQA with one (mult, shift)"),
    _row("VACT", 0x22, "VEC", "dst:20 src:20 n:16 table:4 up:4=0", "src@amem[n]", "dst@amem[n]", "n/vec_lanes", "0",
         "dst[i] = T(sat(src[i] << up)) with the program's activation table number `table`: Q3.12 in (a value "
         "with 12 - up fraction bits is shifted into it, saturating), Q0.15 out"),
    _row("VRELU", 0x27, "VEC", "dst:20 src:20 n:16", "src@amem[n]", "dst@amem[n]", "n/vec_lanes", "0",
         "dst[i] = max(src[i], 0)"),
    _row("VSUB", 0x28, "VEC", "dst:20 a:20 b:20 n:16", "a@amem[n] b@amem[n]", "dst@amem[n]",
         "n/vec_lanes", "0", "dst[i] = sat(a[i] - b[i])"),
    _row("VCLAMP", 0x29, "VEC", "dst:20 src:20 n:16 lo:s16 hi:s16", "src@amem[n]", "dst@amem[n]",
         "n/vec_lanes", "0", "dst[i] = min(max(src[i], lo), hi)"),
    _row("VMUL", 0x23, "VEC", "dst:20 a:20 b:20 n:16 shift:6", "a@amem[n] b@amem[n]", "dst@amem[n]",
         "n/vec_lanes", "0", "dst[i] = sat(round(a[i] * b[i] >> shift))"),
    _row("VADD", 0x24, "VEC", "dst:20 a:20 b:20 n:16", "a@amem[n] b@amem[n]", "dst@amem[n]",
         "n/vec_lanes", "0", "dst[i] = sat(a[i] + b[i])"),
    _row("VSCALE", 0x25, "VEC", "dst:20 src:20 n:16 mult:16 shift:6", "src@amem[n]", "dst@amem[n]",
         "n/vec_lanes", "0", "dst[i] = sat(round(src[i] * mult >> shift)): change an activation's scale"),
    _row("VMOV", 0x26, "VEC", "dst:20 src:20 n:16", "src@amem[n]", "dst@amem[n]",
         "n/vec_lanes", "0", "dst[i] = src[i]"),
    # reductions and their companions (softmax); a reduction's lane tree sits inside vec_latency
    _row("VRMAX", 0x38, "VEC", "dst:20 src:20 n:16", "src@amem[n]", "dst@amem[1]", "n/vec_lanes", "0",
         "dst[0] = max(src[0:n])"),
    _row("VSUBS", 0x39, "VEC", "dst:20 a:20 s:20 n:16", "a@amem[n] s@amem[1]", "dst@amem[n]",
         "n/vec_lanes", "0", "dst[i] = sat(a[i] - s[0]): subtract a broadcast scalar"),
    _row("VRSUM", 0x3A, "VEC", "dst:16 src:20 n:16", "src@amem[n]", "dst@acc[1]", "n/vec_lanes", "0",
         "acc[dst] = sum(src[0:n]), exact: the vector unit writes one accumulator entry"),
    _row("VNORM", 0x3B, "VEC", "dst:20 src:20 n:16 s:16", "src@amem[n] s@acc[1]", "dst@amem[n]",
         "n/vec_lanes", "0", "dst[i] = sat(round(src[i] * 2^15 / acc[s])): divide by a sum, rounding half up"),
    _row("VLOG", 0x3C, "VEC", "dst:20 src:16 table:4", "src@acc[1]", "dst@amem[1]", "1", "0",
         "dst[0] = ln(acc[src] / 2^15) in Q4.11: normalise, then the program's mantissa table number `table`"),
    _row("VRSS", 0x3D, "VEC", "dst:16 src:20 n:16 add:30", "src@amem[n]", "dst@acc[1]", "n/vec_lanes", "0",
         "acc[dst] = round(sqrt(sum(src[0:n]^2) + add)), exact, half up: a row's root sum of squares "
         "(plus an epsilon) for VNORM to divide by"),
    _row("VPOW", 0x3E, "VEC", "dst:20 src:20 n:16 table:4 pow:s4 mult:16 shift:6 off:s24", "src@amem[n]",
         "dst@amem[n]", "n/vec_lanes", "0",
         "dst[i] = src[i]^(pow/2), or ln(src[i]) for pow = 0, at the output's scale: normalise src[i] = m * 4^h "
         "(m in [1, 4)), the program's mantissa table number `table` on m (plus `off`, and h ln 4 for the log), "
         "times mult * 2^(pow*(h - 7) - shift)"),
    _row("CBLOAD", 0x30, "DEC", "dst:12 src:24 n:8", "src@wmem[n*weight_bytes]", "dst@cbm[n]",
         "n*weight_bytes/dma_bytes_per_cycle", "0", "load n codebook entries from weight memory into codebook memory"),
    _row("LOOP", 0x3F, "SEQ", "count:16 body:12 strides:24", "strides@wmem[body*16]", "", "0", "0",
         "repeat the next `body` instructions `count` times, advancing their fields by the strides at `strides`"),
)

BY_MNEMONIC: Mapping[str, Op] = {op.mnemonic: op for op in OPS}
BY_OPCODE: Mapping[int, Op] = {op.opcode: op for op in OPS}

CONSTANTS = {"act_bytes": 2, "acc_bytes": 4}  # fixed by the numerics contract


OPERATORS = {"*": lambda a, b: a * b, "/": lambda a, b: -(-a // b), "+": lambda a, b: a + b,
             "-": lambda a, b: a - b}


def evaluate(expr: str, env: Mapping[str, int]) -> int:
    """Evaluate a table expression: a sum of products, each product read left to right with '*'
    and ceiling '/' over names and integers ("rows*cols/8+nnz*bits/8" is
    ceil(rows*cols/8) + ceil(nnz*bits/8); "cols/split+split-1" is ((cols/split)+split)-1)."""
    total = 0
    for sign, factors in _parsed(expr):
        value = 1
        for operator, token in factors:
            value = OPERATORS[operator](value, _term(token, env))
        total = OPERATORS[sign](total, value)
    return total


@functools.cache
def stride(mnemonic: str, operand: str) -> int:
    """How far `operand`'s range moves per element of the instruction's count (`n`, or `rows`):
    its length expression at a count of one, so code addressing part of a vector reads an
    element's size from the table instead of spelling it out."""
    op = BY_MNEMONIC[mnemonic]
    length = next(a.length for a in op.reads + op.writes if a.operand == operand)
    return evaluate(length, {**CONSTANTS, "n": 1, "rows": 1})


@functools.cache
def _parsed(expr: str) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """`expr` as (sign, ((operator, operand), ...)) per product, '+' and '*' in front of the first:
    parsed once per distinct expression, because the simulator evaluates millions of them."""
    return tuple((sign, _operations(product, r"([*/])", "*")) for sign, product in _operations(expr, r"([+-])", "+"))


def _operations(expr: str, operators: str, first: str) -> tuple[tuple[str, str], ...]:
    """Split `expr` at `operators`: ((first, part0), (op1, part1), ...)."""
    parts = re.split(operators, expr)
    return tuple(zip([first, *parts[1::2]], parts[0::2]))


def _term(token: str, env: Mapping[str, int]) -> int:
    return int(token) if token.isdigit() else int(env[token])


def _validate(ops: tuple[Op, ...]) -> None:
    """Reject a malformed table at import time, not at run time (rows passed in so tests can)."""
    assert len({op.mnemonic for op in ops}) == len(ops), "duplicate mnemonic"
    assert len({op.opcode for op in ops}) == len(ops), "duplicate opcode"
    target_names = {"weight_bytes", "vec_lanes", "dma_bytes_per_cycle", *CONSTANTS}
    for op in ops:
        assert op.unit in UNITS, f"{op.mnemonic}: unknown unit {op.unit}"
        assert 0 < op.opcode < 1 << OPCODE_BITS, f"{op.mnemonic}: opcode out of range"
        names = {f.name for f in op.fields}
        assert len(names) == len(op.fields), f"{op.mnemonic}: duplicate field"
        end = op.fields[-1].lo + op.fields[-1].width if op.fields else OPCODE_BITS
        assert end <= WORD_BITS, f"{op.mnemonic}: fields need {end} bits"
        for acc in op.reads + op.writes:
            assert acc.operand in names and acc.memory in MEMORIES, f"{op.mnemonic}: bad access {acc}"
        for expr in [op.cycles, op.macs] + [a.length for a in op.reads + op.writes]:
            for token in re.split(r"[*/+-]", expr):
                assert token.isdigit() or token in names | target_names, f"{op.mnemonic}: unknown '{token}'"


_validate(OPS)

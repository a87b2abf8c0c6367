"""Hardware loops: the sequencer's expansion of LOOP into the instructions the units execute.

`LOOP count=N body=B strides=S` repeats the B instructions after it N times. In iteration i
(from 0) every field of body instruction j is advanced by i times its stride; the strides sit in
weight memory at S, STRIDE_SLOTS signed 16-bit values per body instruction, one per field in the
table's order (slots past an instruction's last field are zero; fields past the last slot, such as
MVCS's `nnz`, a property of the weights, never advance). So a loop over timesteps costs the same
code whatever the number of steps. Loops do not nest.

A LOOP of count 65535 over a 255-instruction body is 16.7 million executed instructions, which no
real program needs and which would take the simulator hours and gigabytes; so the expansion is
bounded by MAX_EXECUTED (callers may pass their own `limit`) and checked before it is built.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from isa.container import Program
from isa.encoding import Instruction
from isa.errors import RnnaccelError

STRIDE_SLOTS = 8
# Executed instructions per inference, by default: 1.6x a 500-step LSTM of 256 units (160 k), and
# what the simulator runs in about 15 s of one core (rnnaccel-sim --max-instructions raises it).
MAX_EXECUTED = 1 << 18


def expand(code: tuple[Instruction, ...], read: Callable[[int, int], bytes],
           limit: int = MAX_EXECUTED) -> list[tuple[int, Instruction]]:
    """The executed instruction stream as (pc, instruction) pairs; `read(address, n)` reads wmem.

    A stream longer than `limit` is refused, naming the LOOP that crosses it, before it is built.
    """
    stream, pc = [], 0
    while pc < len(code):
        instr = code[pc]
        stream.append((pc, instr))
        if instr.mnemonic != "LOOP":
            pc += 1
            continue
        body = _body(code, pc)
        _check_limit(pc, len(stream) + instr["count"] * len(body) + len(code) - pc - 1 - len(body), limit)
        strides = np.frombuffer(read(instr["strides"], len(body) * STRIDE_SLOTS * 2), "<i2").reshape(len(body), -1)
        for i in range(instr["count"]):
            stream.extend((pc + 1 + j, _advanced(op, strides[j], i, pc + 1 + j)) for j, op in enumerate(body))
        pc += 1 + len(body)
    return stream


def expand_program(program: Program, limit: int = MAX_EXECUTED) -> list[tuple[int, Instruction]]:
    image = _image(program)
    return expand(program.code, lambda address, n: _read(image, address, n), limit)


def _check_limit(pc: int, total: int, limit: int) -> None:
    """`total`: the stream's length so far, this loop's iterations and the straight code after it."""
    if total > limit:
        raise RnnaccelError(f"pc {pc} (LOOP): the program would execute at least {total} instructions, more than "
                            f"the limit of {limit} (a loop that runs too long; rnnaccel-sim --max-instructions N, or "
                            "Simulator(program, max_instructions=N), raises the limit)")


def _read(image: bytearray, address: int, n: int) -> bytes:
    if address + n > len(image):
        raise RnnaccelError(f"LOOP strides at wmem {address} run past weight memory")
    return bytes(image[address:address + n])


def _body(code: tuple[Instruction, ...], pc: int) -> tuple[Instruction, ...]:
    loop = code[pc]
    body = code[pc + 1:pc + 1 + loop["body"]]
    if len(body) != loop["body"] or not body:
        raise RnnaccelError(f"pc {pc} (LOOP): a body of {loop['body']} instructions does not fit the program")
    if any(op.mnemonic == "LOOP" for op in body):
        raise RnnaccelError(f"pc {pc} (LOOP): loops do not nest")
    return body


def _advanced(op: Instruction, strides: np.ndarray, i: int, pc: int) -> Instruction:
    args = tuple(v + i * int(s) for v, s in zip(op.args, strides)) + op.args[len(strides):]
    for field, value in zip(op.op.fields, args):
        if not field.low <= value <= field.high:
            raise RnnaccelError(f"pc {pc} ({op.mnemonic}): loop iteration {i} takes {field.name} to {value}, "
                                f"outside its {field.width}-bit field")
    return Instruction(op.op, args)


def counted(program: Program, steady: Callable[[Instruction, np.ndarray], bool]) -> list[tuple[int, Instruction, int]]:
    """The executed stream as (pc, instruction, times): a loop-body instruction for which
    `steady(instruction, its strides)` holds stands once for all its iterations, so a caller whose
    figures do not read the fields that advance pays per instruction of code, not per iteration;
    the others are expanded as `expand` does. No limit applies (the compiler's report counts this
    way): the stream is not built, only what changes the figures is expanded."""
    image = _image(program)
    code, out, pc = program.code, [], 0
    while pc < len(code):
        instr = code[pc]
        out.append((pc, instr, 1))
        if instr.mnemonic != "LOOP":
            pc += 1
            continue
        body = _body(code, pc)
        strides = np.frombuffer(_read(image, instr["strides"], len(body) * STRIDE_SLOTS * 2), "<i2").reshape(
            len(body), -1)
        for j, op in enumerate(body):
            at = pc + 1 + j
            if steady(op, strides[j]):
                _advanced(op, strides[j], instr["count"] - 1, at)  # the last iteration in its fields, as expand checks
                out.append((at, op, instr["count"]))
            else:
                out.extend((at, _advanced(op, strides[j], i, at), 1) for i in range(instr["count"]))
        pc += 1 + len(body)
    return out


def _image(program: Program) -> bytearray:
    image = bytearray(program.target.weight_mem_bytes)
    for region in program.regions:
        image[region.base:region.base + len(region.data)] = region.data
    return image

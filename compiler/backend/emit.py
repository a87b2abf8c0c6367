"""The backend: resolve addresses, encode instructions and build the program container."""

from __future__ import annotations

import numpy as np

from compiler.kernel import IOTensor, Kernel, MOp, Ref, StateTensor
from compiler.passes.allocate import REGIONS, memory_used
from isa.container import Loc, MemoryMap, Program, Region
from isa.encoding import Instruction
from isa.numerics import activation_table
from isa.table import MEMORIES
from isa.target import Target
from isa.tensors import StateDesc, TensorDesc


def emit(kernel: Kernel, target: Target, model: str) -> Program:
    addr = kernel.addresses
    code = tuple(instruction(op, addr) for op in kernel.ops)
    return Program(
        target=target,
        model=model,
        inputs=tuple(_desc(t, addr) for t in kernel.inputs),
        outputs=tuple(_desc(t, addr) for t in kernel.outputs),
        memory=MemoryMap(**{m: memory_used(kernel, addr, m) for m in MEMORIES}),
        code=code,
        regions=tuple(r for r in (_region(kernel, name) for name in REGIONS) if r.data),
        tables={name: activation_table(name) for name in kernel.tables},
        locs=_locs(kernel.ops),
        state=tuple(_state(t, addr) for t in kernel.state),
    )


def instruction(op: MOp, addr: dict[str, int]) -> Instruction:
    """The encoded instruction of `op`, its buffers at `addr`."""
    operands = {k: addr[v.buffer] + v.offset if isinstance(v, Ref) else v for k, v in op.operands.items()}
    return Instruction.make(op.mnemonic, **operands)


def _desc(tensor: IOTensor, addr: dict[str, int]) -> TensorDesc:
    axis, slices = tensor.packing or (0, ())
    return TensorDesc(tensor.name, tuple(tensor.shape), float(tensor.scale), addr[tensor.host.buffer], slices, axis)


def _state(state: StateTensor, addr: dict[str, int]) -> StateDesc:
    axis, slices = state.packing or (0, ())
    size = int(np.prod(state.shape, dtype=np.int64))
    return StateDesc(state.name, addr[state.place.buffer] + state.place.offset, size, tuple(state.shape),
                     float(state.scale), slices, axis, state.output)


def _region(kernel: Kernel, name: str) -> Region:
    """One weight-memory region's initial image, from its first buffer's base to its last byte."""
    buffers = [b for b in kernel.buffers.values() if b.memory == "wmem" and b.region == name]
    if not buffers:
        return Region(name, 0, b"")
    base = min(kernel.addresses[b.name] for b in buffers)
    image = bytearray(max(kernel.addresses[b.name] + b.size for b in buffers) - base)
    for buf in buffers:
        start = kernel.addresses[buf.name] - base
        image[start:start + buf.size] = buf.data
    return Region(name, base, bytes(image))


def _locs(ops: tuple[MOp, ...]) -> tuple[Loc, ...]:
    locs: list[Loc] = []
    for pc, op in enumerate(ops):
        w = op.where
        if not locs or (locs[-1].node, locs[-1].layer, locs[-1].step, locs[-1].tile, locs[-1].what) != (
                w.node, w.layer, w.step, w.tile, w.what):
            locs.append(Loc(pc, w.node, w.layer, w.step, w.tile, w.what))
    return tuple(locs)

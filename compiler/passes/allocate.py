"""Memory allocation: a base address for every buffer, or a clear error when it cannot fit.

Weight memory is laid out once for the whole program: the `weights` region first, then the
`biases` region (biases, requantisation parameters, constants), each buffer 4-byte aligned.
Activation and accumulator buffers live from the first op that touches them to the last, and
buffers whose lives do not overlap share space (first fit). The chip's scoreboard orders a
reuse after the last read of the previous occupant, so sharing is always safe. A persistent
buffer (streaming state) lives through the whole program: it shares with nothing.
"""

from __future__ import annotations

import heapq

from compiler.kernel import Buffer, Kernel, Ref
from isa.errors import RnnaccelError
from isa.table import MEMORIES
from isa.target import Target

REGIONS = ("weights", "biases")
HOST_LIMIT = 1 << 24


def allocate(kernel: Kernel, target: Target) -> Kernel:
    lives = _lifetimes(kernel)
    addresses: dict[str, int] = {}
    addresses.update(_place_weights(kernel.buffers.values()))
    for memory in ("amem", "acc", "cbm"):
        addresses.update(_first_fit([b for b in kernel.buffers.values() if b.memory == memory], lives))
    addresses.update(_sequential([b for b in kernel.buffers.values() if b.memory == "host"], 1))
    _check_capacity(kernel, addresses, target)
    return kernel.replace(addresses=addresses)


def memory_used(kernel: Kernel, addresses: dict[str, int], memory: str) -> int:
    return max((addresses[b.name] + b.size for b in kernel.buffers.values() if b.memory == memory), default=0)


def _lifetimes(kernel: Kernel) -> dict[str, tuple[int, int]]:
    """First and last op touching each buffer; a buffer used in a LOOP body lives through all of
    it, because every iteration comes back to it."""
    lives: dict[str, tuple[int, int]] = {}
    for index, op in enumerate(kernel.ops):
        for value in op.operands.values():
            if isinstance(value, Ref):
                first, _ = lives.get(value.buffer, (index, index))
                lives[value.buffer] = (first, index)
    for index, op in enumerate(kernel.ops):
        if op.mnemonic == "LOOP":
            end = index + op.operands["body"]
            for name, (first, last) in lives.items():
                if first <= end and last > index:
                    lives[name] = (min(first, index), max(last, end))
    for buf in kernel.buffers.values():
        if buf.persistent:
            lives[buf.name] = (0, len(kernel.ops))
    return lives


def _place_weights(buffers) -> dict[str, int]:
    ordered = [b for region in REGIONS for b in buffers if b.memory == "wmem" and b.region == region]
    return _sequential(ordered, 4)


def _sequential(buffers: list[Buffer], align: int) -> dict[str, int]:
    out, top = {}, 0
    for buf in buffers:
        out[buf.name] = top
        top += -(-buf.size // align) * align
    return out


def _first_fit(buffers: list[Buffer], lives: dict[str, tuple[int, int]]) -> dict[str, int]:
    """Place each buffer at the lowest address free for its whole life.

    Buffers come in order of birth, so a placed buffer overlaps the next one's life exactly when
    it has not died before that birth: the dead leave a heap ordered by death, and each buffer
    is compared only with the live ones (a few, in a chain), not with everything placed."""
    live: list[tuple[int, int, int, int]] = []  # heap of (last op, order, start, end)
    out = {}
    for order, buf in enumerate(sorted(buffers, key=lambda b: (lives.get(b.name, (0, 0))[0], -b.size))):
        first, last = lives.get(buf.name, (0, 0))
        while live and live[0][0] < first:
            heapq.heappop(live)
        address = 0
        for start, end in sorted((start, end) for _, _, start, end in live):
            if address + buf.size <= start:
                break
            address = max(address, end)
        out[buf.name] = address
        heapq.heappush(live, (last, order, address, address + buf.size))
    return out


def _check_capacity(kernel: Kernel, addresses: dict[str, int], target: Target) -> None:
    for name, memory in MEMORIES.items():
        if memory.size is None:
            continue
        need = memory_used(kernel, addresses, name)
        if need > getattr(target, memory.size):
            raise RnnaccelError(f"the model needs {memory.shortfall(need, target)}")
    if memory_used(kernel, addresses, "host") > HOST_LIMIT:
        host = MEMORIES["host"]
        raise RnnaccelError(f"the model's inputs and outputs exceed {HOST_LIMIT} {host.unit} of {host.title}")

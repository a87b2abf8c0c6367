"""One reader and writer for both kinds of program file: a chip program (`isa.container`,
container version 1) and a partitioned program (`isa.partcontainer`, version 2).

Tools that accept either call these; the version in the file's header picks the codec, so a
chip-only program keeps its version-1 bytes exactly.
"""

from __future__ import annotations

from isa import container, partcontainer
from isa.container import MAX_PROGRAM_BYTES, PARTITIONED_VERSION, Program, container_version
from isa.fileio import read_input
from isa.outputs import write_atomic
from isa.partitioned import PartitionedProgram

AnyProgram = Program | PartitionedProgram


def to_bytes(prog: AnyProgram) -> bytes:
    if isinstance(prog, PartitionedProgram):
        return partcontainer.to_bytes(prog)
    return container.to_bytes(prog)


def from_bytes(blob: bytes) -> AnyProgram:
    if container_version(blob) == PARTITIONED_VERSION:
        return partcontainer.from_bytes(blob)
    return container.from_bytes(blob)


def save(prog: AnyProgram, path: str) -> None:
    write_atomic(path, to_bytes(prog))


def load(path: str) -> AnyProgram:
    return from_bytes(read_input(path, "program", MAX_PROGRAM_BYTES))

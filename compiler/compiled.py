"""What a compile gives back: the program, the report, and what the golden reference runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from compiler.frontend.partition import Island, Partition
from compiler.ir import Graph
from isa.container import Program
from isa.partitioned import PartitionedProgram


@dataclass(frozen=True)
class Compiled:
    graph: Graph | None  # quantised (and tiled): what the golden reference runs; None when partitioned
    program: Program | PartitionedProgram
    report: dict
    sources: tuple[Path, ...] = ()  # the files the model was read from: the model, then its external data
    islands: tuple[CompiledIsland, ...] = ()  # a partitioned program's islands, each compiled as a model
    partition: Partition | None = None  # where every node runs (also for a model all on the chip)


@dataclass(frozen=True)
class CompiledIsland:
    island: Island
    model: onnx.ModelProto  # the island's own ONNX model, as the chip pipeline compiled it
    compiled: Compiled

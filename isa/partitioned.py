"""A partitioned program: chip islands and the host part that calls them (docs/partitioning.md).

A model whose every node runs on the chip compiles to one `Program` (container version 1). A
model with host nodes compiles to a `PartitionedProgram`: one `Program` per island, and a
`HostPart`, the rest of the ONNX graph with each island replaced by a call node
(`ISLAND_OP` in `ISLAND_DOMAIN`, integer attribute `index`). The host part travels twice: as
serialised ONNX bytes, which runtime_sim runs, and as a node table, which tools that do not read
ONNX (isa/ stays free of onnx) print and check.

The contract between the compiler, which writes this, and the runtime, which runs it:
- `HostPart.model` is an ONNX ModelProto. Its graph inputs are the program's inputs (the model's
  graph inputs after --const), its graph outputs the model's outputs, and its nodes, in
  topological order, are the host nodes plus one call node per island. Its initialisers are the
  host nodes' constants; its opset imports are the model's plus `ISLAND_DOMAIN` version 1.
- A call node's inputs and outputs are, in order, the names of its island program's inputs and
  outputs (TensorDesc.name): tensors cross the boundary as float32, quantised with the island's
  input scales on the way in and dequantised with its output scales on the way out.
- `nodes` lists the same nodes in the same order; a call node has `island` set to its index.
"""

from __future__ import annotations

from dataclasses import dataclass

from isa.container import Program

ISLAND_OP, ISLAND_DOMAIN = "Island", "rnnaccel"
NO_ISLAND = -1


@dataclass(frozen=True)
class HostNode:
    """One node of the host graph: a host operator, or the call of an island."""

    name: str
    op: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    macs: int = 0  # estimated multiply-accumulates per inference (0 for an island call: the chip's count)
    island: int = NO_ISLAND  # the island this node calls, or NO_ISLAND for a host operator

    @property
    def calls_island(self) -> bool:
        return self.island != NO_ISLAND


@dataclass(frozen=True)
class HostPart:
    """The host's share of a partitioned model, with the figures the compiler estimated for it."""

    model: bytes  # the host graph, a serialised ONNX ModelProto (see the module docstring)
    nodes: tuple[HostNode, ...]  # the same graph's nodes, in order
    inputs: tuple[str, ...]  # the program's inputs, in order
    outputs: tuple[str, ...]  # the program's outputs, in order
    boundary_bytes: int  # bytes crossing between host and chip per inference (float32 tensors)
    chip_mac_fraction: float  # the chip's share of the model's MACs

    @property
    def host_mac_ops(self) -> int:
        return sum(n.macs for n in self.nodes if not n.calls_island)


@dataclass(frozen=True)
class PartitionedProgram:
    model: str
    islands: tuple[Program, ...]
    host: HostPart

"""A partitioned program: chip islands and the host part that calls them (docs/partitioning.md).

A model whose every node runs on the chip compiles to one `Program` (container version 1). A
model with host nodes compiles to a `PartitionedProgram` (container version 2, isa.partcontainer;
isa.programfile reads and writes both): one `Program` per island, and a
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

`check_partitioned` checks what can be checked without reading ONNX: every island called exactly
once, by a call node whose inputs and outputs are the island's, and a node table that produces
each tensor once and every program output. The container (isa.partcontainer, version 2) and the
assembler refuse a program that fails it.
"""

from __future__ import annotations

from dataclasses import dataclass

from isa.container import Program
from isa.errors import RnnaccelError, quoted

ISLAND_OP, ISLAND_DOMAIN = "Island", "rnnaccel"
NO_ISLAND = -1
# The container names island sections I000..I999; the partition planner makes a few islands.
MAX_ISLANDS = 1000


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
    # State pairs the host carries from run to run of a streaming program: (host graph input,
    # host graph output), neither among the program's inputs, the output among its outputs only
    # when `state_outputs`. (State an island keeps on chip is that island's Program.state.)
    state: tuple[tuple[str, str], ...] = ()
    state_outputs: bool = False

    @property
    def host_mac_ops(self) -> int:
        return sum(n.macs for n in self.nodes if not n.calls_island)


@dataclass(frozen=True)
class PartitionedProgram:
    model: str
    islands: tuple[Program, ...]
    host: HostPart


def check_partitioned(prog: PartitionedProgram) -> None:
    """Raise RnnaccelError naming the first inconsistency between the host part and the islands."""
    count = len(prog.islands)
    if not 1 <= count <= MAX_ISLANDS:
        raise RnnaccelError(f"a partitioned program has 1 to {MAX_ISLANDS} islands, not {count}")
    host = prog.host
    if host.boundary_bytes < 0 or not 0.0 <= host.chip_mac_fraction <= 1.0:
        raise RnnaccelError(f"boundary_bytes={host.boundary_bytes} must be non-negative and "
                            f"chip_mac_fraction={host.chip_mac_fraction!r} within [0, 1]")
    callers: dict[int, HostNode] = {}
    for node in host.nodes:
        _check_node(node, count)
        if node.calls_island:
            _check_call(node, prog.islands[node.island], callers.get(node.island))
            callers[node.island] = node
    uncalled = [i for i in range(count) if i not in callers]
    if uncalled:
        raise RnnaccelError(f"island {uncalled[0]} is never called by a host node")
    _check_tensors(host)


def _check_node(node: HostNode, islands: int) -> None:
    """A call node is an ISLAND_OP of ISLAND_DOMAIN with an island that exists; no other node is."""
    name = quoted(node.name)
    if node.macs < 0:
        raise RnnaccelError(f"host node {name} has macs={node.macs}, less than 0")
    if node.island != NO_ISLAND and not 0 <= node.island < islands:
        raise RnnaccelError(f"host node {name} calls island {node.island}, but the program has {islands} "
                            f"island(s)")
    if node.calls_island != ((node.op, node.domain) == (ISLAND_OP, ISLAND_DOMAIN)):
        raise RnnaccelError(f"host node {name} ({qualified_op(node)}): only an {ISLAND_DOMAIN}.{ISLAND_OP} "
                            f"node calls an island, and it must name one")


def _check_call(node: HostNode, island: Program, caller: HostNode | None) -> None:
    if caller is not None:
        raise RnnaccelError(f"island {node.island} is called twice, by host nodes {quoted(caller.name)} and "
                            f"{quoted(node.name)}")
    for what, passed, names in (("inputs", node.inputs, island.inputs), ("outputs", node.outputs, island.outputs)):
        expected = tuple(d.name for d in names)
        if passed != expected:
            raise RnnaccelError(f"host node {quoted(node.name)} passes {what} {_names(passed)} to island "
                                f"{node.island}, whose {what} are {_names(expected)}")


def _check_tensors(host: HostPart) -> None:
    """Each tensor produced once (by a node or as a program input), each program output produced."""
    made: set[str] = set()
    kept = [name for name, _ in host.state]
    for tensor in [*host.inputs, *kept] + [t for node in host.nodes for t in node.outputs if t]:
        if tensor in made:
            raise RnnaccelError(f"tensor {quoted(tensor)} is produced twice in the host part")
        made.add(tensor)
    if len(set(host.outputs)) < len(host.outputs):
        raise RnnaccelError(f"the host part lists an output twice: {_names(host.outputs)}")
    missing = [t for t in (*host.outputs, *(out for _, out in host.state)) if t not in made]
    if missing:
        raise RnnaccelError(f"program output {quoted(missing[0])} is produced by no host node")


def pair_texts(pairs: tuple[tuple[str, str], ...]) -> list[str]:
    """State pairs as the container and the listing write them: 'input=output' each."""
    return [f"{name}={output}" for name, output in pairs]


def parse_pairs(texts: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = tuple(tuple(text.split("=", 1)) for text in texts)
    if any(len(pair) != 2 or not all(pair) for pair in pairs):
        raise RnnaccelError(f"state pairs {_names(tuple(texts))} are not all 'input=output'")
    return pairs


def qualified_op(node: HostNode) -> str:
    """The node's operator as 'domain.op', or 'op' in the default ONNX domain."""
    return f"{node.domain}.{node.op}" if node.domain else node.op


def _names(names: tuple[str, ...]) -> str:
    return quoted(", ".join(names), 80) if names else "none"

"""The partition plan: which ONNX nodes run on the chip and which on the host, and the islands.

Placement is a pass of its own, after capability and capacity (docs/partitioning.md):

1. capability: each node is judged by its operator's constraints (capability.py). A node the
   chip can take is converted, so later nodes see its shapes and constants; a node it cannot
   take stays on the host, and its outputs get the shapes ONNX shape inference gives them, so
   the nodes after it are judged too instead of being written off as its dependants.
2. capacity: a capable node whose weights, accumulators or input sequence alone cannot fit the
   target's memories (limits.node_capacity_problem) stays on the host, and says why.
3. folding: a node whose inputs are all constants is computed at compile time (shape arithmetic
   around recurrent layers); it is "folded", neither chip nor host work, and forms no island. A
   node no graph output depends on (a branch's leftovers after --const) is "dead": neither too.
4. islands: the chip nodes are grouped into the largest connected, convex islands (islands.py),
   each a chip program; the tensors crossing an island's edge are its inputs and outputs. An
   island that only moves data (Transpose, Reshape, ...: no arithmetic) is not worth the trip to
   the chip and back, so its nodes go back to the host.

`plan_partition` refuses a model with a malformed node or with nothing for the chip;
`place_nodes` only reports, for `--check`.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import onnx

from compiler.frontend.capability import node_view, unsupported_reasons
from compiler.frontend.islands import form_islands
from compiler.frontend.limits import node_capacity_problem
from compiler.frontend.macs import chip_macs, host_macs
from compiler.frontend.onnx_import import (
    Builder,
    convert_view,
    declared_dims,
    node_name,
    start_import,
    with_input_shapes,
)
from compiler.ops import OPS
from compiler.passes.compress import Compression
from isa.errors import RnnaccelError
from isa.target import Target

CHIP, HOST, FOLDED, DEAD = "chip", "host", "folded", "dead"
CAPABILITY, CAPACITY, MALFORMED = "capability", "capacity", "malformed"  # why a node is on the host
UNRUNNABLE = "unrunnable"  # a host node neither ONNX Runtime nor the reference evaluator runs: refused
MOVES_ONLY = "moves only"  # a chip node sent back to the host: its island would only move data
MOVES_ONLY_REASON = "its island would only move data between host and chip (no arithmetic on the chip)"
HOST_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")  # what both ONNX Runtime and onnx's reference evaluator run
ORT_DOMAIN = "com.microsoft"  # ONNX Runtime's contrib operators: the chip converts some, the host none
SHOWN = 3  # host nodes a refusal names before "and N more"
BOUNDARY_ELEMENT_BYTES = 4  # tensors cross between host and chip as float32 (the chip's ints stay inside)


@dataclass(frozen=True)
class Placement:
    """One ONNX node's place; a host node's `reasons` say why it is not on the chip, `why` which kind."""

    name: str
    op_type: str
    index: int  # the position in the graph (names need not be unique)
    place: str
    reasons: tuple[str, ...] = ()
    why: str = ""
    macs: int = 0
    arithmetic: bool = False  # a chip node that computes (not only a layout op moving data)


@dataclass(frozen=True)
class Island:
    """A convex, connected group of chip nodes: one chip program."""

    nodes: tuple[str, ...]  # in graph order
    indices: tuple[int, ...]  # their positions in the graph
    inputs: tuple[str, ...]  # tensors made outside it (host nodes, graph inputs) that it reads
    outputs: tuple[str, ...]  # tensors it makes that the host, another island or the graph reads
    macs: int


@dataclass(frozen=True)
class Partition:
    placements: tuple[Placement, ...]  # every node, in graph order
    islands: tuple[Island, ...]
    boundary_bytes: int  # elements of every island input and output, as float32 (x4)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict, compare=False)  # every tensor's known shape
    types: dict[str, int] = field(default_factory=dict, compare=False)  # element types (onnx.TensorProto)

    @property
    def needs_host(self) -> bool:
        return any(p.place == HOST for p in self.placements)

    def of(self, place: str) -> list[Placement]:
        return [p for p in self.placements if p.place == place]

    @property
    def host_ops(self) -> dict[str, int]:
        """ONNX operator -> how many of its nodes run on the host."""
        return dict(Counter(p.op_type for p in self.of(HOST)))

    @property
    def chip_mac_fraction(self) -> float:
        """The chip's share of all MACs (host ones estimated); 1.0 for a model without MACs on the host."""
        chip, total = sum(p.macs for p in self.of(CHIP)), sum(p.macs for p in self.placements)
        return chip / total if total else float(bool(self.islands))


def plan_partition(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]] | None = None,
                   target: Target | None = None, streaming: bool = False) -> Partition:
    """The plan for a checked model; RnnaccelError (one line) for a malformed node or no chip work."""
    return checked(place_nodes(model, shapes, target, streaming))


def checked(plan: Partition) -> Partition:
    """The plan, if it can be compiled: no malformed node, no host node nothing can run, and some
    work for the chip; else RnnaccelError, one line."""
    broken = next((p for p in plan.placements if p.why in (MALFORMED, UNRUNNABLE)), None)
    if broken:
        raise RnnaccelError(f"node '{broken.name}' ({broken.op_type}): {broken.reasons[-1]}")
    if not plan.islands:
        raise RnnaccelError(f"nothing in this model runs on the chip: {host_list(plan, SHOWN)}")
    return plan


def host_list(plan: Partition, shown: int | None = None) -> str:
    """'2 nodes stay on the host: node 'a' (Conv): reason; node 'b' (Pad): reason' (the first `shown`)."""
    host = plan.of(HOST)
    listed = "; ".join(f"node '{p.name}' ({p.op_type}): {p.reasons[0]}" for p in host[:shown])
    more = f"; and {len(host) - shown} more" if shown is not None and len(host) > shown else ""
    return f"{len(host)} node{'s stay' if len(host) != 1 else ' stays'} on the host: {listed}{more}"


def place_nodes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]] | None = None,
                target: Target | None = None, streaming: bool = False,
                compression: Compression | None = None) -> Partition:
    """Every node placed, the islands formed; nothing is refused (a model may have no island)."""
    return placed_and_converted(model, shapes, target, streaming, compression)[0]


def placed_and_converted(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]] | None = None,
                         target: Target | None = None, streaming: bool = False,
                         compression: Compression | None = None) -> tuple[Partition, Builder]:
    """The plan, and the importer's state after converting every chip node: when no node stays on
    the host, that is the whole import, so a caller need not import the model again. Capacity
    judges weights as `compression` will store them."""
    inferred, types = inferred_values(model, shapes)
    builder, host_made = start_import(model, shapes), set()
    fits = partial(node_capacity_problem, target=target or Target(), streaming=streaming, compression=compression)
    placements = tuple(_place(builder, node, index, inferred, host_made, fits)
                       for index, node in enumerate(model.graph.node))
    live = live_nodes(model)
    placements = tuple(p if p.index in live else dataclasses.replace(p, place=DEAD, macs=0) for p in placements)
    sizes = {**inferred, **builder.shapes}
    islands = _islands(model, placements, set(builder.consts), sizes)
    idle = {i for island in islands if not any(placements[i].arithmetic for i in island.indices)
            for i in island.indices}
    if idle and any(p.place == HOST for p in placements):  # a model all on the chip crosses nothing
        placements = tuple(_moved_back(p) if p.index in idle else p for p in placements)
        islands = _islands(model, placements, set(builder.consts), sizes)
    crossing = sum(_size(sizes.get(t)) for i in islands for t in (*i.inputs, *i.outputs))
    return Partition(placements, islands, crossing * BOUNDARY_ELEMENT_BYTES, sizes, types), builder


def inferred_values(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]] | None
                    ) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """Every tensor's static shape and element type as ONNX shape inference finds them (with data
    propagation, so a Reshape's target shape computed from a Shape is known). If inference fails
    outright, no shapes and the types the model declares: the importer's checks still apply."""
    fixed = with_input_shapes(model, shapes) if shapes else model
    try:
        fixed = onnx.shape_inference.infer_shapes(fixed, strict_mode=False, data_prop=True)
        found = {}
    except Exception:  # noqa: BLE001  (inference raises several types)
        fixed, found = model, None
    values = (*fixed.graph.input, *fixed.graph.value_info, *fixed.graph.output)
    types = {v.name: v.type.tensor_type.elem_type for v in values if v.type.tensor_type.elem_type}
    if found is None:
        return {}, types
    for value in values[len(fixed.graph.input):]:
        dims = declared_dims(value)
        if dims is not None and None not in dims:
            found[value.name] = tuple(dims)
    return found, types


def _place(builder: Builder, node: onnx.NodeProto, index: int, inferred: dict[str, tuple[int, ...]],
           host_made: set[str], fits: Callable[..., str | None]) -> Placement:
    """Judge and (if the chip takes it) convert one node; a host node's outputs get inferred shapes."""
    name, before = node_name(node, index), len(builder.nodes)
    why, reasons = _judge(builder, node, name, host_made)
    emitted = builder.nodes[before:]
    if not why:
        if not emitted and all(o in builder.consts for o in node.output if o):
            return Placement(name, node.op_type, index, FOLDED)
        problem = next(filter(None, (fits(n, builder.shapes) for n in emitted)), None)
        if problem is None:
            return Placement(name, node.op_type, index, CHIP, macs=sum(chip_macs(n, builder.shapes) for n in emitted),
                             arithmetic=any(OPS[n.op].kind != "layout" for n in emitted))
        del builder.nodes[before:]
        why, reasons = CAPACITY, [f"does not fit the target: {problem}"]
    if why != MALFORMED and not _host_runs(node):
        why, reasons = UNRUNNABLE, [*reasons, _unrunnable(node)]
    builder.shapes.update((o, inferred[o]) for o in node.output if o in inferred)
    host_made.update(o for o in node.output if o)
    macs = host_macs(node.op_type, [_shape(builder, inferred, t) for t in node.input],
                     [_shape(builder, inferred, t) for t in node.output])
    return Placement(name, node.op_type, index, HOST, tuple(reasons), why, macs)


def _judge(builder: Builder, node: onnx.NodeProto, name: str, host_made: set[str]) -> tuple[str, list[str]]:
    """("", []) when the chip takes the node (then it is converted), else why not. An input no node
    made is an undefined one, and node_view says so."""
    unknown = [t for t in node.input if t and t not in builder.consts and t not in builder.shapes]
    if unknown and all(t in host_made for t in unknown):
        return CAPABILITY, [f"the shape of '{unknown[0]}', made on the host, is not known statically"]
    try:
        view = node_view(builder, node)
        reasons = unsupported_reasons(view)
        if reasons:
            return CAPABILITY, reasons
        convert_view(builder, node, name, view)
        return "", []
    except RnnaccelError as exc:
        return MALFORMED, [str(exc)]


def node_reads(node: onnx.NodeProto) -> Iterator[str]:
    """Every tensor a node reads: its inputs, and the outer-scope names its subgraphs use."""
    yield from (t for t in node.input if t)
    for attr in node.attribute:
        for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
            made = {t for n in sub.node for t in n.output} | {v.name for v in sub.input} | \
                   {i.name for i in sub.initializer}
            yield from (t for n in sub.node for t in node_reads(n) if t not in made)


def live_nodes(model: onnx.ModelProto) -> set[int]:
    """The nodes some graph output depends on; the rest (a branch's leftovers after --const) are dead."""
    needed, live = {o.name for o in model.graph.output}, set()
    for index in reversed(range(len(model.graph.node))):
        node = model.graph.node[index]
        if any(t in needed for t in node.output):
            live.add(index)
            needed.update(node_reads(node))
    return live


def _host_runs(node: onnx.NodeProto) -> bool:
    """Whether the host can run the node: a standard operator both float runtimes implement."""
    domain = "" if node.domain == "ai.onnx" else node.domain
    return domain in HOST_DOMAINS and onnx.defs.has(node.op_type, domain)


def _unrunnable(node: onnx.NodeProto) -> str:
    """Why the host cannot run the node. ONNX Runtime does run its own contrib operators, but the
    host part must also run where only onnx's reference evaluator is installed, which does not."""
    if node.domain == ORT_DOMAIN:
        return (f"the host runs standard ONNX operators only, and '{ORT_DOMAIN}.{node.op_type}' is an ONNX "
                "Runtime contrib operator, which onnx's reference evaluator does not run")
    return f"neither ONNX Runtime nor onnx's reference evaluator runs {_qualified(node)} on the host"


def _qualified(node: onnx.NodeProto) -> str:
    return f"operator '{node.domain}.{node.op_type}' (custom domain)" if node.domain not in HOST_DOMAINS \
        else f"unknown operator '{node.op_type}'"


def _moved_back(placement: Placement) -> Placement:
    """A chip node of an island that only moves data, sent to the host."""
    return dataclasses.replace(placement, place=HOST, reasons=(MOVES_ONLY_REASON,), why=MOVES_ONLY, macs=0)


def _shape(builder: Builder, inferred: dict, tensor: str) -> tuple[int, ...] | None:
    if not tensor:
        return None
    return builder.shape(tensor) if tensor in builder.consts or tensor in builder.shapes else inferred.get(tensor)


def _size(shape: tuple[int, ...] | None) -> int:
    return math.prod(shape) if shape is not None else 0


def _islands(model: onnx.ModelProto, placements: tuple[Placement, ...], consts: set[str],
             sizes: dict) -> tuple[Island, ...]:
    """The convex islands of the chip nodes, with the tensors that cross their edges."""
    nodes = list(model.graph.node)
    made = {o: i for i, n in enumerate(nodes) for o in n.output if o and o not in consts}
    producers = {i: [made[t] for t in node_reads(n) if t in made] for i, n in enumerate(nodes)}
    chip = {p.index for p in placements if p.place == CHIP}
    live = [p.index for p in placements if p.place not in (FOLDED, DEAD)]
    readers: dict[str, set[int]] = {}
    for i in live:
        for t in node_reads(nodes[i]):  # an If's branches read names of the graph around them
            readers.setdefault(t, set()).add(i)
    graph_outputs = {o.name for o in model.graph.output}
    islands = []
    for group in form_islands(live, chip, producers):
        members = set(group)
        reads = [t for i in group for t in nodes[i].input if t and t not in consts and made.get(t) not in members]
        makes = [t for i in group for t in nodes[i].output
                 if t and (t in graph_outputs or readers.get(t, set()) - members)]
        islands.append(Island(tuple(placements[i].name for i in group), tuple(group), tuple(dict.fromkeys(reads)),
                              tuple(dict.fromkeys(makes)), sum(placements[i].macs for i in group)))
    return tuple(islands)

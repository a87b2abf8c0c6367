"""Container version 2: a partitioned program (isa.partitioned) in one checksummed file.

The framing is version 1's (isa.container.seal and read_sections): magic, version 2, section
table, payloads, CRC-32. The sections, in this order:

    PART   canonical JSON: format, model, islands (how many), inputs and outputs (the program's),
           boundary_bytes, chip_mac_fraction, and nodes, the host node table (name, op, domain,
           inputs, outputs, macs, island); a streaming program whose host carries state also has
           state ("input=output" per pair) and state_outputs
    HOST   the host graph, a serialised ONNX ModelProto: opaque bytes here (isa/ never reads ONNX)
    I000, I001, ...   each island's complete version-1 container, its own checksum included

The outer checksum covers everything, the host graph too. A file holds at most
container.MAX_PROGRAM_BYTES (256 MiB), each island at most MAX_CHIP_PROGRAM_BYTES (64 MiB).
Loading checks the framing, PART's every key and type, each island as a chip program, and then
the host part against the islands (partitioned.check_partitioned); it names the first problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from isa import container
from isa.container import (
    MAX_PROGRAM_BYTES,
    PARTITIONED_VERSION,
    canonical_json,
    check_version,
    parse_json,
    read_sections,
    seal,
)
from isa.errors import RnnaccelError
from isa.partitioned import (
    MAX_ISLANDS,
    HostNode,
    HostPart,
    PartitionedProgram,
    check_partitioned,
    pair_texts,
    parse_pairs,
)

PART_FORMAT = "rnnaccel-partitioned"
_CORRUPTED = "corrupted program: "
_ISLAND_TAG = re.compile(rb"I[0-9]{3}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


Kind = tuple[str, Callable[[object], bool]]
_STRING: Kind = ("a string", lambda v: isinstance(v, str))
_INT: Kind = ("an integer", _is_int)
_NUMBER: Kind = ("a number", lambda v: _is_int(v) or isinstance(v, float))
_STRINGS: Kind = ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v))
_LIST: Kind = ("a list", lambda v: isinstance(v, list))
_PART_KEYS = {"format": _STRING, "model": _STRING, "islands": _INT, "inputs": _STRINGS, "outputs": _STRINGS,
              "boundary_bytes": _INT, "chip_mac_fraction": _NUMBER, "nodes": _LIST}
_BOOL: Kind = ("true or false", lambda v: isinstance(v, bool))
_STATE_KEYS = {"state": _STRINGS, "state_outputs": _BOOL}  # present only when the host carries state
_NODE_KEYS = {"name": _STRING, "op": _STRING, "domain": _STRING, "inputs": _STRINGS, "outputs": _STRINGS,
              "macs": _INT, "island": _INT}


def island_tag(index: int) -> bytes:
    return b"I%03d" % index


def to_bytes(prog: PartitionedProgram) -> bytes:
    """The version-2 container; refuses (RnnaccelError) a program that loading would refuse."""
    check_partitioned(prog)
    islands = [(island_tag(i), container.to_bytes(island)) for i, island in enumerate(prog.islands)]
    return seal(PARTITIONED_VERSION, [(b"PART", canonical_json(_part(prog))), (b"HOST", prog.host.model), *islands])


def from_bytes(blob: bytes) -> PartitionedProgram:
    check_version(blob, PARTITIONED_VERSION)
    if len(blob) > MAX_PROGRAM_BYTES:
        raise RnnaccelError(f"{_CORRUPTED}{len(blob)} bytes, more than the limit of {MAX_PROGRAM_BYTES}")
    sections = read_sections(blob, lambda tag: tag in (b"PART", b"HOST") or bool(_ISLAND_TAG.fullmatch(tag)),
                             (b"PART", b"HOST"))
    raw = parse_json(sections[b"PART"], "PART")
    part = _typed(raw, _PART_KEYS | (_STATE_KEYS if "state" in raw else {}), "PART")
    if part["format"] != PART_FORMAT or not 1 <= part["islands"] <= MAX_ISLANDS:
        raise RnnaccelError(f"{_CORRUPTED}PART does not describe a partitioned program of 1 to {MAX_ISLANDS} islands")
    nodes = tuple(_node(_typed(n, _NODE_KEYS, f"PART node {i}")) for i, n in enumerate(part["nodes"]))
    islands = _islands(sections, part["islands"])
    try:
        prog = PartitionedProgram(part["model"], islands, HostPart(
            model=sections[b"HOST"], nodes=nodes, inputs=tuple(part["inputs"]), outputs=tuple(part["outputs"]),
            boundary_bytes=part["boundary_bytes"], chip_mac_fraction=float(part["chip_mac_fraction"]),
            state=parse_pairs(part.get("state", [])), state_outputs=part.get("state_outputs", False)))
        check_partitioned(prog)
    except RnnaccelError as exc:
        raise RnnaccelError(f"{_CORRUPTED}{exc}") from None
    return prog


def _part(prog: PartitionedProgram) -> dict:
    host = prog.host
    return {
        "format": PART_FORMAT,
        "model": prog.model,
        "islands": len(prog.islands),
        "inputs": list(host.inputs),
        "outputs": list(host.outputs),
        "boundary_bytes": host.boundary_bytes,
        "chip_mac_fraction": host.chip_mac_fraction,
        "nodes": [{"name": n.name, "op": n.op, "domain": n.domain, "inputs": list(n.inputs),
                   "outputs": list(n.outputs), "macs": n.macs, "island": n.island} for n in host.nodes],
        **({"state": pair_texts(host.state), "state_outputs": host.state_outputs} if host.state else {}),
    }


def _typed(obj: object, spec: dict[str, Kind], what: str) -> dict:
    """`obj` if it is a JSON object with exactly `spec`'s keys, each value of its kind."""
    if not isinstance(obj, dict) or set(obj) != set(spec):
        raise RnnaccelError(f"{_CORRUPTED}{what} is not an object with the keys {', '.join(spec)}")
    for key, (kind, is_kind) in spec.items():
        if not is_kind(obj[key]):
            raise RnnaccelError(f"{_CORRUPTED}{what}: {key} must be {kind}")
    return obj


def _node(n: dict) -> HostNode:
    return HostNode(n["name"], n["op"], n["domain"], tuple(n["inputs"]), tuple(n["outputs"]), n["macs"], n["island"])


def _islands(sections: dict[bytes, bytes], count: int) -> tuple:
    """Each island section as a chip program; no island section beyond `count`."""
    tags = [island_tag(i) for i in range(count)]
    extra = sorted(t for t in sections if _ISLAND_TAG.fullmatch(t) and t not in tags)
    if extra:
        raise RnnaccelError(f"{_CORRUPTED}section {extra[0].decode()} is an island PART does not list "
                            f"(it lists {count})")
    missing = [t.decode() for t in tags if t not in sections]
    if missing:
        raise RnnaccelError(f"{_CORRUPTED}missing section(s) {', '.join(missing)}")
    return tuple(_island(sections[tag], i) for i, tag in enumerate(tags))


def _island(blob: bytes, index: int) -> container.Program:
    try:
        return container.from_bytes(blob)
    except RnnaccelError as exc:
        problem = str(exc).removeprefix(_CORRUPTED)
        raise RnnaccelError(f"{_CORRUPTED}island {index} (section {island_tag(index).decode()}): {problem}") from None

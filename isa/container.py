"""The program container: a versioned, self-describing, checksummed file (`.rnna`).

Layout, all little-endian, the same framing for every version (`seal`, `read_sections`):

    magic "RNNA" | u16 version | u16 section count
    section table: (4-byte tag, u32 offset, u32 length) per section
    section payloads
    u32 CRC-32 of every byte before it

Version 1 is a chip program, this module's codec. Version 2 is a partitioned program
(isa.partcontainer): its host part and one complete version-1 container per island, under one
outer checksum; isa.programfile reads and writes both.

Version 1 sections: META (canonical JSON: target, I/O descriptors, memory map, weight-memory regions,
table names), CODE (instruction words), WGHT and BIAS (weight-memory images placed at the
addresses META gives), TABL (the vector unit's activation tables, int16) and DBUG (JSON:
which ONNX node, layer, timestep and tile each instruction belongs to).
Loading validates every part and names the first problem it finds.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from isa.encoding import Instruction, decode_all, encode_all
from isa.errors import RnnaccelError, quoted, shortened
from isa.fileio import loads_json, read_input
from isa.numerics import TABLE_SEGMENTS
from isa.outputs import write_atomic
from isa.table import CODE_WORDS, WORD_BYTES
from isa.target import Target
from isa.tensors import MAX_HOST_ELEMENTS, MAX_SCALE, MIN_SCALE, StateDesc, TensorDesc

MAGIC = b"RNNA"
VERSION = 1
PARTITIONED_VERSION = 2
_VERSION_KINDS = {VERSION: "a chip program", PARTITIONED_VERSION: "a partitioned program"}
REGION_SECTIONS = {"weights": b"WGHT", "biases": b"BIAS"}
SECTION_ORDER = (b"META", b"CODE", b"WGHT", b"BIAS", b"TABL", b"DBUG")
_HEADER = struct.Struct("<4sHH")
_ENTRY = struct.Struct("<4sII")
MAX_MEMORY_UNITS = 1 << 24
# A chip program holds at most both weight-memory images (16 MiB each at most, Target), a full
# instruction memory and its debug locations: 64 MiB is more than any of them.
MAX_CHIP_PROGRAM_BYTES = 64 << 20
# A program file of either version: a partitioned program holds several islands (each a chip
# program, most of them far below the limit above) and the host graph's ONNX bytes. A larger
# file is refused before it is read.
MAX_PROGRAM_BYTES = 256 << 20


@dataclass(frozen=True)
class Region:
    """Bytes of weight memory initialised when the program is loaded."""

    name: str
    base: int
    data: bytes


@dataclass(frozen=True)
class Loc:
    """Where instructions from `pc` on come from; holds until the next Loc."""

    pc: int
    node: str
    layer: int
    step: int
    tile: int
    what: str


LOC_KEYS = ("node", "layer", "step", "tile", "what")
NO_LOC = Loc(0, "", -1, -1, -1, "")  # what a listing's first .loc carries over from


@dataclass(frozen=True)
class MemoryMap:
    """How much of each memory the program uses (host memory is per inference)."""

    host: int
    amem: int
    acc: int
    wmem: int
    cbm: int

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            limit = MAX_HOST_ELEMENTS if name == "host" else MAX_MEMORY_UNITS
            if not isinstance(value, (int, np.integer)) or not 0 <= value <= limit:
                raise RnnaccelError(f"memory map: {name}={value!r} is outside 0..{limit}")


@dataclass(frozen=True)
class Program:
    target: Target
    model: str
    inputs: tuple[TensorDesc, ...]
    outputs: tuple[TensorDesc, ...]
    memory: MemoryMap
    code: tuple[Instruction, ...]
    regions: tuple[Region, ...]
    tables: dict[str, np.ndarray] = field(default_factory=dict, compare=False)
    locs: tuple[Loc, ...] = ()
    state: tuple[StateDesc, ...] = ()
    recurrence: tuple[tuple[str, int], ...] = ()  # (node, cycles): each recurrent layer's bound (isa.bounds)

    def __post_init__(self) -> None:
        check_code_size(len(self.code))

    @property
    def streaming(self) -> bool:
        return bool(self.state)


def to_bytes(prog: Program) -> bytes:
    sections = {
        b"META": canonical_json(_meta(prog)),
        b"CODE": encode_all(list(prog.code)),
        **{REGION_SECTIONS[r.name]: r.data for r in prog.regions},
        b"TABL": b"".join(table.astype("<i2").tobytes() for table in prog.tables.values()),
        b"DBUG": canonical_json(_debug(prog)),
    }
    return seal(VERSION, [(tag, sections[tag]) for tag in SECTION_ORDER if tag in sections])


def from_bytes(blob: bytes) -> Program:
    check_version(blob, VERSION)
    if len(blob) > MAX_CHIP_PROGRAM_BYTES:
        raise RnnaccelError(f"corrupted program: a chip program of {len(blob)} bytes, more than the limit of "
                            f"{MAX_CHIP_PROGRAM_BYTES}")
    sections = read_sections(blob, SECTION_ORDER.__contains__, (b"META", b"CODE", b"TABL"))
    meta = parse_json(sections[b"META"], "META")
    try:
        return _program(meta, sections)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise RnnaccelError(f"corrupted program: META is malformed ({type(exc).__name__}: {shortened(exc, 80)})"
                            ) from None


def save(prog: Program, path: str) -> None:
    write_atomic(path, to_bytes(prog))


def load(path: str) -> Program:
    return from_bytes(read_input(path, "program", MAX_PROGRAM_BYTES))


def check_code_size(words: int) -> None:
    """Refuse code that would not fit the chip's instruction memory (isa.table.CODE_WORDS)."""
    if words > CODE_WORDS:
        raise RnnaccelError(f"the program has {words} instructions, more than the {CODE_WORDS} "
                            f"instruction memory holds")


def check_region_name(name: str, seen: list[str]) -> None:
    """A region is one of REGION_SECTIONS, at most once: the loader and the assembler agree."""
    if name not in REGION_SECTIONS or name in seen:
        raise RnnaccelError(f"region {quoted(name)} is unknown or repeated (regions: {', '.join(REGION_SECTIONS)})")


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _meta(prog: Program) -> dict:
    return {
        "format": "rnnaccel-program",
        "model": prog.model,
        "target": prog.target.to_dict(),
        "inputs": [_desc_json(d) for d in prog.inputs],
        "outputs": [_desc_json(d) for d in prog.outputs],
        "memory": vars(prog.memory),
        "regions": [{"name": r.name, "base": r.base, "size": len(r.data)} for r in prog.regions],
        "tables": {"names": list(prog.tables), "segments": TABLE_SEGMENTS},
        **({"state": [_state_json(s) for s in prog.state]} if prog.state else {}),
        **({"recurrence": dict(prog.recurrence)} if prog.recurrence else {}),
    }


def _desc_json(d: TensorDesc) -> dict:
    """The slices only when there are some: every unpacked program stays byte for byte as it was."""
    packed = {"slices": [list(run) for run in d.slices], "slice_axis": d.slice_axis} if d.slices else {}
    return {"name": d.name, "shape": list(d.shape), "scale": d.scale, "host": d.host, **packed}


def _state_json(s: StateDesc) -> dict:
    """Like _desc_json: the fields a state has beyond its place only when it has them."""
    return {k: list(map(list, v)) if k == "slices" else list(v) if k == "shape" else v
            for k, v in vars(s).items() if k in ("name", "address", "size") or v != _STATE_DEFAULTS[k]}


_STATE_DEFAULTS = {f: StateDesc.__dataclass_fields__[f].default for f in ("shape", "scale", "slices", "slice_axis",
                                                                        "output")}


def _debug(prog: Program) -> dict:
    nodes = sorted({loc.node for loc in prog.locs})
    number = {node: i for i, node in enumerate(nodes)}  # not nodes.index: quadratic in a long chain
    locs = [[loc.pc, number[loc.node], loc.layer, loc.step, loc.tile, loc.what] for loc in prog.locs]
    return {"nodes": nodes, "locs": locs}


def seal(version: int, sections: list[tuple[bytes, bytes]]) -> bytes:
    """The container framing around `sections` (tag, payload), in the order given."""
    offset = _HEADER.size + _ENTRY.size * len(sections)
    head = [_HEADER.pack(MAGIC, version, len(sections))]
    for tag, payload in sections:
        head.append(_ENTRY.pack(tag, offset, len(payload)))
        offset += len(payload)
    body = b"".join(head) + b"".join(p for _, p in sections)
    return body + struct.pack("<I", zlib.crc32(body))


def container_version(blob: bytes) -> int:
    """The version of a container whose magic and checksum are right: which codec reads it."""
    if len(blob) < _HEADER.size + 4 or blob[:4] != MAGIC:
        raise RnnaccelError("not an rnnaccel program: bad magic (expected 'RNNA')")
    body, (crc,) = blob[:-4], struct.unpack("<I", blob[-4:])
    if zlib.crc32(body) != crc:
        raise RnnaccelError("corrupted program: checksum mismatch (file truncated or modified)")
    _, version, _ = _HEADER.unpack_from(body)
    if version not in _VERSION_KINDS:
        raise RnnaccelError(f"unsupported program version {version} (this toolchain reads "
                            f"{' and '.join(map(str, _VERSION_KINDS))})")
    return version


def check_version(blob: bytes, expected: int) -> None:
    """Refuse a container of another version, saying what it is (a tool that reads only chip
    programs, given a partitioned one, says so instead of calling it corrupted)."""
    version = container_version(blob)
    if version != expected:
        raise RnnaccelError(f"expected {_VERSION_KINDS[expected]} (container version {expected}), found "
                            f"{_VERSION_KINDS[version]} (container version {version})")


def read_sections(blob: bytes, known: Callable[[bytes], bool], required: tuple[bytes, ...]) -> dict[bytes, bytes]:
    """The payloads of a container that `check_version` accepted, by tag: each tag `known` and
    present once, each section inside the file and apart from the others, every `required` tag there."""
    body = blob[:-4]
    _, _, count = _HEADER.unpack_from(body)
    table_end = _HEADER.size + _ENTRY.size * count
    if table_end > len(body):
        raise RnnaccelError("corrupted program: section table runs past the end of the file")
    out, spans = {}, []
    for i in range(count):
        tag, offset, length = _ENTRY.unpack_from(body, _HEADER.size + i * _ENTRY.size)
        name = ascii(tag)[2:-1]  # printable even when the tag is garbage
        if not known(tag) or tag in out:
            raise RnnaccelError(f"corrupted program: unknown or repeated section '{name}'")
        if offset < table_end or offset + length > len(body):
            raise RnnaccelError(f"corrupted program: section {name} at offset {offset} is out of bounds")
        if any(offset < end and start < offset + length for start, end in spans):
            raise RnnaccelError(f"corrupted program: section {name} at offset {offset} overlaps another")
        spans.append((offset, offset + length))
        out[tag] = body[offset:offset + length]
    missing = [t.decode() for t in required if t not in out]
    if missing:
        raise RnnaccelError(f"corrupted program: missing section(s) {', '.join(missing)}")
    return out


def parse_json(raw: bytes, name: str) -> dict:
    try:
        obj = loads_json(raw)
    except ValueError as exc:
        raise RnnaccelError(f"corrupted program: {name} section is not valid JSON ({shortened(exc, 80)})") from None
    if not isinstance(obj, dict):
        raise RnnaccelError(f"corrupted program: {name} section is not a JSON object")
    return obj


def _program(meta: dict, sections: dict[bytes, bytes]) -> Program:
    if meta["format"] != "rnnaccel-program":
        raise RnnaccelError("corrupted program: META does not describe an rnnaccel program")
    target = Target.from_dict(meta["target"])
    check_code_size(len(sections[b"CODE"]) // WORD_BYTES)
    regions: list[Region] = []
    for r in meta["regions"]:
        check_region_name(r["name"], [seen.name for seen in regions])
        regions.append(_region(r, sections, target))
    return Program(
        target=target,
        model=str(meta["model"]),
        inputs=tuple(_desc(d) for d in meta["inputs"]),
        outputs=tuple(_desc(d) for d in meta["outputs"]),
        memory=MemoryMap(**{k: int(v) for k, v in meta["memory"].items()}),
        code=tuple(decode_all(sections[b"CODE"])),
        regions=tuple(regions),
        tables=_tables(sections[b"TABL"], meta["tables"]),
        locs=_locs(sections.get(b"DBUG")),
        state=tuple(_state(s) for s in meta.get("state", [])),
        recurrence=_recurrence(meta.get("recurrence", {})),
    )


def _recurrence(bounds: object) -> tuple[tuple[str, int], ...]:
    """META's recurrence bounds: node name -> cycles (absent in a program without recurrent layers)."""
    if not isinstance(bounds, dict) or not all(isinstance(k, str) and type(v) is int and v >= 0
                                               for k, v in bounds.items()):
        raise RnnaccelError("corrupted program: META's recurrence is not a map of node names to cycle counts")
    return tuple(bounds.items())


def _desc(d: dict) -> TensorDesc:
    shape = tuple(int(s) for s in d["shape"])
    if any(s <= 0 for s in shape) or not MIN_SCALE <= float(d["scale"]) <= MAX_SCALE or int(d["host"]) < 0:
        raise ValueError(f"bad descriptor for {d['name']}")
    slices = tuple((int(n), float(scale)) for n, scale in d.get("slices", []))
    return TensorDesc(str(d["name"]), shape, float(d["scale"]), int(d["host"]), slices, int(d.get("slice_axis", 0)))


def _state(s: dict) -> StateDesc:
    address, size = int(s["address"]), int(s["size"])
    if address < 0 or not 0 < size <= MAX_MEMORY_UNITS:
        raise ValueError(f"bad state {s['name']}")
    slices = tuple((int(n), float(scale)) for n, scale in s.get("slices", []))
    return StateDesc(str(s["name"]), address, size, tuple(int(d) for d in s.get("shape", [])),
                     float(s.get("scale", 1.0)), slices, int(s.get("slice_axis", 0)), str(s.get("output", "")))


def _region(r: dict, sections: dict[bytes, bytes], target: Target) -> Region:
    tag = REGION_SECTIONS[r["name"]]
    data = sections.get(tag)
    if data is None or len(data) != r["size"]:
        raise RnnaccelError(f"corrupted program: region {r['name']} does not match section {tag.decode()}")
    if r["base"] < 0 or r["base"] + len(data) > target.weight_mem_bytes:
        raise RnnaccelError(f"corrupted program: region {r['name']} lies outside weight memory")
    return Region(r["name"], int(r["base"]), data)


def _tables(raw: bytes, spec: dict) -> dict[str, np.ndarray]:
    """The vector unit's tables, in the order VACT numbers them."""
    names, size = [str(n) for n in spec["names"]], (TABLE_SEGMENTS + 1) * 2
    if int(spec["segments"]) != TABLE_SEGMENTS or len(set(names)) != len(names):
        raise RnnaccelError("corrupted program: META describes the tables wrongly")
    if len(raw) != size * len(names):
        raise RnnaccelError("corrupted program: TABL section has the wrong size")
    return {name: np.frombuffer(raw[i * size:(i + 1) * size], "<i2").astype(np.int64) for i, name in enumerate(names)}


def _locs(raw: bytes | None) -> tuple[Loc, ...]:
    if raw is None:
        return ()
    dbg = parse_json(raw, "DBUG")
    try:
        return tuple(Loc(int(pc), str(dbg["nodes"][n]), int(layer), int(step), int(tile), str(what))
                     for pc, n, layer, step, tile, what in dbg["locs"])
    except (KeyError, TypeError, ValueError, IndexError, OverflowError):
        raise RnnaccelError("corrupted program: DBUG section is malformed") from None

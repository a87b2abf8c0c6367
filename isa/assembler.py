"""The assembler: an rnnaccel listing (see isa.listing) back into a Program.

asm.lark gives the shape of each line; this module gives it meaning, looking mnemonics and
operand names up in isa.table. The address and encoding columns in front of an instruction are
accepted and ignored: the operands alone define it, so a listing may be edited by hand without
re-encoding anything. Every error is an RnnaccelError reading `source:line:column: problem`.
A partitioned program's listing (host part, then `.island N` and each island's listing) gives a
PartitionedProgram, checked as the container checks it (isa.partitioned.check_partitioned).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from isa.container import LOC_KEYS, NO_LOC, Loc, MemoryMap, Program, Region, check_code_size, check_region_name
from isa.encoding import Instruction, _operand_value
from isa.errors import RnnaccelError, quoted
from isa.numerics import ACT_MAX, ACT_MIN, TABLE_SEGMENTS
from isa.partitioned import NO_ISLAND, HostNode, HostPart, PartitionedProgram, check_partitioned, parse_pairs
from isa.table import BY_MNEMONIC, MEMORIES, Op
from isa.target import Target
from isa.tensors import MAX_SCALE, MIN_SCALE, StateDesc, TensorDesc

# The listing of the largest program the chip holds: two 16 MiB weight-memory regions at 2.5
# characters a byte (isa.listing), a full instruction memory with its locations; a larger file is
# refused before it is read.
MAX_LISTING_BYTES = 128 << 20
# No field, size or address needs a longer number (2^64 has 20 digits, 0x plus 16 in hex); a longer
# one is refused as the lexer meets it, before int() (which refuses over 4 300 digits) or a
# message (which would quote all of it) sees it.
MAX_NUMBER_CHARS = 24
_NUMBER_TERMINALS = ("INT", "HEXINT", "FLOAT", "ADDRESS")


class _LongNumber(Exception):
    """Raised by the lexer on a numeric token of more than MAX_NUMBER_CHARS characters."""

    def __init__(self, token: Token) -> None:
        super().__init__(token)
        self.token = token


def _bounded_number(token: Token) -> Token:
    if len(token) > MAX_NUMBER_CHARS:
        raise _LongNumber(token)
    return token


# lark's strict mode needs the optional `interegular` package to check terminal collisions.
_PARSER = Lark.open("asm.lark", rel_to=__file__, parser="lalr", propagate_positions=True,
                    strict=importlib.util.find_spec("interegular") is not None,
                    lexer_callbacks=dict.fromkeys(_NUMBER_TERMINALS, _bounded_number))

_TERMINAL_NAMES = {"_NL": "end of line", "NAME": "a name", "INT": "an integer", "HEXINT": "a hex number",
                   "FLOAT": "a float", "STRING": "a quoted string", "HEX": "hex bytes", "$END": "end of input",
                   "PREFIX": "an address", "ADDRESS": "an address", "META_DIRECTIVE": "a directive"}

T = TypeVar("T")


@dataclass(frozen=True)
class Runs:
    """A packed tensor's slices as the listing writes them, [[count, scale], ...]: its own kind, so
    that no other key (a shape) accepts them."""

    runs: tuple[tuple[int, float], ...]


_DESC_OPTIONAL = ("slices", "slice_axis")  # only a packed tensor has them (isa.tensors.TensorDesc)
_STATE_OPTIONAL = ("shape", "scale", *_DESC_OPTIONAL, "output")  # isa.tensors.StateDesc's defaults

_DIRECTIVE_KEYS = {
    ".program": {"model": str},
    ".memory": dict.fromkeys(MEMORIES, int),
    ".input": {"name": str, "shape": tuple, "scale": float, "host": int, "slices": Runs, "slice_axis": int},
    ".output": {"name": str, "shape": tuple, "scale": float, "host": int, "slices": Runs, "slice_axis": int},
    ".state": {"name": str, "address": int, "size": int, "shape": tuple, "scale": float, "slices": Runs,
               "slice_axis": int, "output": str},
    ".recurrence": {"node": str, "cycles": int},
    ".loc": {"node": str, "layer": int, "step": int, "tile": int, "what": str},
    ".region": {"base": int, "size": int},
    ".partitioned": {"model": str, "inputs": list, "outputs": list, "boundary_bytes": int, "chip_mac_fraction": float,
                     "state": list, "state_outputs": int},
    ".hostnode": {"name": str, "op": str, "domain": str, "inputs": list, "outputs": list, "macs": int, "island": int},
    ".hostmodel": {"size": int},
}


@dataclass(frozen=True)
class Arg:
    """One `name=value` with the position of its name, for error messages."""

    name: str
    value: object
    line: int
    column: int


def assemble(text: str, source: str = "<input>") -> Program | PartitionedProgram:
    """Parse a listing into a Program or a PartitionedProgram; raise RnnaccelError naming
    source:line:column on any problem."""
    try:
        tree = _PARSER.parse(text + "\n")
    except UnexpectedInput as exc:
        raise RnnaccelError(f"{source}:{exc.line}:{exc.column}: {_describe(exc)}") from None
    except _LongNumber as exc:
        token = exc.token
        raise RnnaccelError(f"{source}:{token.line}:{token.column}: number {quoted(token, 20)} is {len(token)} "
                            f"characters long, more than the {MAX_NUMBER_CHARS} any field, size or address needs"
                            ) from None
    (top,) = tree.children
    builder = _Builder(source)
    return builder.program(top) if top.data == "chip" else builder.partitioned(top)


def _describe(exc: UnexpectedInput) -> str:
    if isinstance(exc, UnexpectedCharacters):
        return f"syntax error: unexpected character {exc.char!r}"
    if isinstance(exc, UnexpectedToken):
        found = _TERMINAL_NAMES[exc.token.type] if exc.token.type in ("_NL", "$END") else quoted(exc.token)
        expected = sorted(_terminal_name(t) for t in exc.expected)
        return f"syntax error: unexpected {found}, expected {' or '.join(expected)}"
    return "syntax error"


def _terminal_name(name: str) -> str:
    if name in _TERMINAL_NAMES:
        return _TERMINAL_NAMES[name]
    pattern = _PARSER.get_terminal(name).pattern
    return repr(pattern.value) if pattern.type == "str" else name.lower()


class _Builder:
    """Walks the parse tree in order, checking each line against the ISA table."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, where: Tree | Token | Arg | None, message: str) -> RnnaccelError:
        meta = getattr(where, "meta", where)
        line, column = (meta.line, meta.column) if meta is not None else (1, 1)
        return RnnaccelError(f"{self.source}:{line}:{column}: {message}")

    def program(self, tree: Tree) -> Program:
        meta = self.meta([t for t in tree.children if t.data == "meta"])
        code_tree = next(t for t in tree.children if t.data == "code")
        code, locs = self.code(code_tree)
        regions = self.regions([t for t in tree.children if t.data == "region"], meta["target"])
        tables = self.tables([t for t in tree.children if t.data == "table"])
        return Program(**meta, code=tuple(code), regions=tuple(regions), tables=tables, locs=tuple(locs))

    def partitioned(self, tree: Tree) -> PartitionedProgram:
        part_line, *rest = tree.children
        part = self.keys(part_line, self.args(part_line.children), ".partitioned", optional=("state", "state_outputs"))
        model = next(t for t in rest if t.data == "hostmodel")
        islands = [t for t in rest if t.data == "island"]
        nodes = tuple(self.host_node(t) for t in rest if t.data == "hostnode")
        host = HostPart(model=self.host_model(model), nodes=nodes,
                        inputs=tuple(part["inputs"]), outputs=tuple(part["outputs"]),
                        boundary_bytes=part["boundary_bytes"], chip_mac_fraction=part["chip_mac_fraction"],
                        state=self.located(part_line, parse_pairs, part.get("state", [])),
                        state_outputs=bool(part.get("state_outputs", 0)))
        prog = PartitionedProgram(part["model"], tuple(self.island(t, i) for i, t in enumerate(islands)), host)
        self.located(part_line, check_partitioned, prog)
        return prog

    def host_node(self, line: Tree) -> HostNode:
        v = self.keys(line, self.args(line.children), ".hostnode", optional=("island",))
        return HostNode(v["name"], v["op"], v["domain"], tuple(v["inputs"]), tuple(v["outputs"]), v["macs"],
                        v.get("island", NO_ISLAND))

    def host_model(self, tree: Tree) -> bytes:
        """The host graph's bytes: hex rows from address 0, like a weight-memory region's."""
        spec = self.keys(tree, self.args([c for c in tree.children if c.data == "arg"]), ".hostmodel")
        rows = [c for c in tree.children if c.data == "row"]
        return self.region_bytes(tree, ".hostmodel", {"base": 0, "size": spec["size"]}, rows)

    def island(self, tree: Tree, index: int) -> Program:
        number, chip = tree.children
        if int(number) != index:
            raise self.error(number, f".island {number}: expected island {index} (islands are numbered from 0, "
                                     "in order)")
        return self.program(chip)

    # --- directives ---------------------------------------------------------------------------

    def meta(self, lines: list[Tree]) -> dict:
        """The META directives: .program, .target and .memory exactly once, any .input/.output/.state/
        .recurrence."""
        found: dict[str, list[tuple[Tree, list[Arg]]]] = defaultdict(list)
        for line in lines:
            found[str(line.children[0])].append((line, self.args(line.children[1:])))
        for name in (".program", ".target", ".memory"):
            if not found[name]:
                raise self.error(None, f"missing required directive {name}")
            if len(found[name]) > 1:
                raise self.error(found[name][1][0], f"{name} given twice")
        (program, *_), (target, *_), (memory, *_) = (found[n] for n in (".program", ".target", ".memory"))
        return {
            "model": self.keys(*program, ".program")["model"],
            "target": self.target(*target),
            "memory": self.located(memory[0], MemoryMap, **self.keys(*memory, ".memory")),
            "inputs": tuple(self.desc(*line, ".input") for line in found[".input"]),
            "outputs": tuple(self.desc(*line, ".output") for line in found[".output"]),
            "state": tuple(self.state(*line) for line in found[".state"]),
            "recurrence": tuple(sorted(self.recurrence(*line) for line in found[".recurrence"])),
        }

    def recurrence(self, line: Tree, args: list[Arg]) -> tuple[str, int]:
        v = self.keys(line, args, ".recurrence")
        if v["cycles"] < 0:
            raise self.error(line, f".recurrence {quoted(v['node'])}: cycles must be non-negative, got {v['cycles']}")
        return v["node"], v["cycles"]

    def target(self, line: Tree, args: list[Arg]) -> Target:
        for arg in args:
            if not isinstance(arg.value, int):
                raise self.error(arg, f".target: {arg.name} must be an integer")
        try:
            return Target.from_dict({a.name: a.value for a in args})
        except RnnaccelError as exc:
            raise self.error(line, str(exc)) from None

    def desc(self, line: Tree, args: list[Arg], name: str) -> TensorDesc:
        v = self.keys(line, args, name, optional=_DESC_OPTIONAL)
        if any(d <= 0 for d in v["shape"]) or not (MIN_SCALE <= v["scale"] <= MAX_SCALE) or v["host"] < 0:
            raise self.error(line, f"{name} {quoted(v['name'])}: dimensions must be positive, "
                                   "the scale within [2^-64, 2^64] and the host address non-negative")
        return self.located(line, TensorDesc, v["name"], v["shape"], v["scale"], v["host"],
                            v.get("slices", Runs(())).runs, v.get("slice_axis", 0))

    def state(self, line: Tree, args: list[Arg]) -> StateDesc:
        v = self.keys(line, args, ".state", optional=_STATE_OPTIONAL)
        if v["address"] < 0 or v["size"] <= 0 or any(d <= 0 for d in v.get("shape", ())):
            raise self.error(line, f".state {quoted(v['name'])}: address non-negative and size positive, "
                                   "as are its dimensions")
        return self.located(line, StateDesc, v["name"], v["address"], v["size"], v.get("shape", ()),
                            v.get("scale", 1.0), v.get("slices", Runs(())).runs, v.get("slice_axis", 0),
                            v.get("output", ""))

    def located(self, where: Tree, make: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Build a record; the record's own validation errors get this line's position."""
        try:
            return make(*args, **kwargs)
        except RnnaccelError as exc:
            raise self.error(where, str(exc)) from None

    def args(self, children: list) -> list[Arg]:
        out = []
        for arg in children:
            key, value = arg.children
            out.append(Arg(str(key), _value(value), key.line, key.column))
        return out

    def keys(self, where: Tree, args: list[Arg], directive: str, optional: Collection[str] = ()) -> dict:
        """Check a directive's keys against _DIRECTIVE_KEYS: each at most once (exactly once unless
        `optional`), of the right kind."""
        spec, values = _DIRECTIVE_KEYS[directive], {}
        for arg in args:
            kind = spec.get(arg.name)
            if kind is None:
                raise self.error(arg, f"{directive} has no key {quoted(arg.name)} (keys: {', '.join(spec)})")
            if arg.name in values:
                raise self.error(arg, f"{directive}: {arg.name} given twice")
            values[arg.name] = self.kind(arg, kind, directive)
        missing = [k for k in spec if k not in values and k not in optional]
        if missing:
            raise self.error(where, f"{directive} is missing {', '.join(missing)}")
        return values

    def kind(self, arg: Arg, kind: type, directive: str) -> object:
        value = arg.value
        if kind is float and isinstance(value, int):
            return float(value)
        if kind is list and value == ():  # "[]" parses as an empty shape, and is an empty list of names too
            return []
        if not isinstance(value, kind):
            raise self.error(arg, f"{directive}: {arg.name} must be {_KIND_NAMES[kind]}")
        return value

    # --- code ---------------------------------------------------------------------------------

    def code(self, tree: Tree) -> tuple[list[Instruction], list[Loc]]:
        code: list[Instruction] = []
        locs: list[Loc] = []
        for line in tree.children:
            if line.data == "loc":
                changed = self.keys(line, self.args(line.children), ".loc", optional=LOC_KEYS)
                locs.append(dataclasses.replace(locs[-1] if locs else NO_LOC, pc=len(code), **changed))
            else:
                code.append(self.instruction(line))
                self.located(line, check_code_size, len(code))
        return code, locs

    def instruction(self, line: Tree) -> Instruction:
        children = [c for c in line.children if not (isinstance(c, Token) and c.type == "PREFIX")]
        mnemonic, args = children[0], self.args(children[1:])
        op = BY_MNEMONIC.get(str(mnemonic).upper())
        if op is None:
            raise self.error(mnemonic, f"unknown mnemonic {quoted(mnemonic)} (known: {', '.join(BY_MNEMONIC)})")
        names = [f.name for f in op.fields]
        operands: dict[str, int] = {}
        for arg in args:
            if arg.name not in names or arg.name in operands:
                problem = "given twice" if arg.name in operands else "is not an operand"
                raise self.error(arg, f"{op.mnemonic}: {quoted(arg.name)} {problem} (operands: {' '.join(names)})")
            operands[arg.name] = self.operand(op, arg)
        missing = [f.name for f in op.fields if f.name not in operands and f.default is None]
        if missing:
            raise self.error(mnemonic, f"{op.mnemonic}: missing operand(s) {' '.join(missing)}")
        return Instruction.make(op.mnemonic, **operands)

    def operand(self, op: Op, arg: Arg) -> int:
        if not isinstance(arg.value, int):
            raise self.error(arg, f"{op.mnemonic}: {arg.name} must be an integer")
        try:
            return _operand_value(op, op.field(arg.name), arg.value)
        except RnnaccelError as exc:
            raise self.error(arg, str(exc)) from None

    # --- weight memory and tables -------------------------------------------------------------

    def regions(self, trees: list[Tree], target: Target) -> list[Region]:
        out: list[Region] = []
        for tree in trees:
            name = str(tree.children[0])
            self.located(tree, check_region_name, name, [r.name for r in out])
            rows = [c for c in tree.children[1:] if c.data == "row"]
            spec = self.keys(tree, self.args([c for c in tree.children[1:] if c.data == "arg"]), ".region")
            if spec["base"] < 0 or spec["base"] + spec["size"] > target.weight_mem_bytes:
                raise self.error(tree, f"region {name} [{spec['base']:#x}, +{spec['size']}) lies outside "
                                       f"the {target.weight_mem_bytes}-byte weight memory")
            out.append(Region(name, spec["base"], self.region_bytes(tree, f"region {name}", spec, rows)))
        return out

    def region_bytes(self, tree: Tree, what: str, spec: dict, rows: list[Tree]) -> bytes:
        """Concatenate the hex rows; each row's address must be where the previous one ended."""
        chunks, end = [], spec["base"]
        for row in rows:
            address = int(str(row.children[0])[:-1], 16)
            if address != end:
                raise self.error(row, f"{what}: row at {address:#x}, expected {end:#x}")
            for group in row.children[1:]:
                if len(group) % 2:
                    raise self.error(group, f"{what}: odd number of hex digits in {quoted(group)}")
                chunks.append(bytes.fromhex(str(group)))
                end += len(chunks[-1])
        if end - spec["base"] != spec["size"]:
            raise self.error(tree, f"{what}: {end - spec['base']} bytes given, size={spec['size']}")
        return b"".join(chunks)

    def tables(self, trees: list[Tree]) -> dict[str, np.ndarray]:
        """The tables in the order given, which is the order VACT numbers them."""
        out = {}
        for tree in trees:
            name = json.loads(str(tree.children[0]))
            if name in out:
                raise self.error(tree, f"table {quoted(name)} given twice")
            out[name] = self.table_values(tree, name)
        return out

    def table_values(self, tree: Tree, name: str) -> np.ndarray:
        tokens = [t for row in tree.children[1:] for t in row.children]
        for token in tokens:
            if not ACT_MIN <= int(token) <= ACT_MAX:
                raise self.error(token, f"table {quoted(name)}: {token} does not fit 16 bits")
        if len(tokens) != TABLE_SEGMENTS + 1:
            raise self.error(tree, f"table {quoted(name)}: {len(tokens)} values given, expected {TABLE_SEGMENTS + 1}")
        return np.array([int(t) for t in tokens], dtype=np.int64)


_KIND_NAMES = {int: "an integer", float: "a number", str: "a quoted string", tuple: "a shape like [1,49,10]",
               list: 'a list of quoted strings like ["x","y"]', Runs: "slices like [[1,0.5],[3,0.25]]"}


def _value(tree: Tree) -> object:
    """A parsed value: int, float, str (quoted strings and bare names alike), a shape tuple, a
    list of names or a packed tensor's runs."""
    kind, tokens = tree.data, tree.children
    if kind == "shape":
        return tuple(int(t) for t in tokens)
    if kind == "names":
        return [json.loads(str(t)) for t in tokens]
    if kind == "runs":
        return Runs(tuple((int(run.children[0]), float(run.children[1])) for run in tokens))
    text = str(tokens[0])
    convert = {"int": int, "hexint": lambda s: int(s, 16), "float": float, "string": json.loads, "name": str}
    return convert[kind](text)

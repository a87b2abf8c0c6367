"""Fuzz targets: hostile inputs for the container loader, the simulator, the assembler and the frontend
(whole model files, and attribute values).

Each target takes one input and must either accept it or raise RnnaccelError with a non-empty
message (the command lines print it on one line; the assembler's starts `source:line:column:`).
Any other exception is a bug. Each comes with a hypothesis strategy that mutates real inputs (a compiled looped
LSTM, the sample program, their listings, small ONNX models), because purely random bytes
rarely get past a checksum or a parser. `tests/test_fuzz_smoke.py` runs a few hundred inputs in
the test suite; `make fuzz` (`python -m tests.fuzz`) runs them for minutes.
"""

from __future__ import annotations

import io
import json
import re
import struct
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnx
from hypothesis import strategies as st

from compiler.pipeline import compile_model
from isa.assembler import assemble
from isa.container import from_bytes, to_bytes
from isa.errors import RnnaccelError
from isa.fileio import read_npz
from isa.listing import disassemble
from isa.target import Target
from runtime_sim import Simulator

from isa_strategies import sample_program
from models import fc_model, lstm_model, recurrent_model
from test_opsets import opset_model

FUZZ_MAX_INSTRUCTIONS = 20_000  # executed instructions per fuzzed program: keeps each input fast
_ENTRY = struct.Struct("<4sII")
_ASM_ERROR = re.compile(r"^<fuzz>:\d+:\d+: \S")


@dataclass(frozen=True)
class FuzzTarget:
    name: str
    inputs: st.SearchStrategy
    run: Callable[[object], None]


def expect_clean(fn: Callable[[], object], pattern: re.Pattern | None = None) -> bool:
    """Run fn; True if it succeeded, False if it raised a well-formed RnnaccelError. Else raise."""
    try:
        fn()
    except RnnaccelError as exc:
        message = " ".join(str(exc).split())  # what run_cli prints: names from the input may hold newlines
        assert message, "an empty message"
        assert pattern is None or pattern.match(message), f"no source:line:column: {message!r}"
        return False
    return True


# --- seeds: real inputs to mutate ---------------------------------------------------------------

@cache
def seed_blobs() -> tuple[bytes, ...]:
    """The sample program and a compiled LSTM with a hardware loop, as containers."""
    model = lstm_model(6, 1, 4, 8, outputs=("Y_h",))
    calib = {"X": np.random.default_rng(0).standard_normal((2, 6, 1, 4)).astype(np.float32)}
    compiled = compile_model(model, Target(macs=8), calib).program
    return to_bytes(sample_program()), to_bytes(compiled)


@cache
def seed_listings() -> tuple[str, ...]:
    return tuple(disassemble(from_bytes(blob)) for blob in seed_blobs())


@cache
def seed_models() -> tuple[bytes, ...]:
    return fc_model(1, 4, 3).SerializeToString(), lstm_model(3, 1, 2, 4).SerializeToString()


# --- the container and the simulator ------------------------------------------------------------

def reseal(body: bytes) -> bytes:
    """Replace the trailing CRC so mutations reach the checks behind the checksum."""
    return body[:-4] + struct.pack("<I", zlib.crc32(body[:-4]))


def sections(blob: bytes) -> dict[bytes, tuple[int, int]]:
    count = struct.unpack_from("<H", blob, 6)[0]
    entries = (_ENTRY.unpack_from(blob, 8 + i * _ENTRY.size) for i in range(count))
    return {tag: (offset, length) for tag, offset, length in entries}


def with_meta(blob: bytes, meta: object) -> bytes:
    """The container with its META section replaced by `meta` as JSON."""
    return with_section(blob, b"META", json.dumps(meta).encode())


def with_section(blob: bytes, tag: bytes, payload: bytes) -> bytes:
    """The container with one section's payload replaced: later sections move, the table and
    the CRC are rebuilt."""
    table = sections(blob)
    offset, length = table[tag]
    body = blob[:offset] + payload + blob[offset + length:-4]
    delta, out = len(payload) - length, bytearray(body)
    for i, (name, (off, size)) in enumerate(table.items()):
        new_off = off + delta if off > offset else off
        _ENTRY.pack_into(out, 8 + i * _ENTRY.size, name, new_off, len(payload) if name == tag else size)
    return reseal(bytes(out) + b"\0\0\0\0")


json_values = st.recursive(st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats()
                           | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def _json_paths(obj: object, path: tuple = ()) -> list[tuple]:
    children = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    return [path] + [p for key, value in children for p in _json_paths(value, (*path, key))]


@st.composite
def meta_mutation(draw, blob: bytes) -> bytes:
    offset, length = sections(blob)[b"META"]
    meta = json.loads(blob[offset:offset + length])
    path = draw(st.sampled_from(_json_paths(meta)[1:]))
    node = meta
    for key in path[:-1]:
        node = node[key]
    if draw(st.booleans()):
        node[path[-1]] = draw(json_values)
    elif isinstance(node, dict):
        del node[path[-1]]
    else:
        node.pop(path[-1])
    return with_meta(blob, meta)


@st.composite
def byte_mutation(draw, blob: bytes) -> bytes:
    """A few bytes overwritten, anywhere or inside CODE (instructions), then resealed (mostly)."""
    out = bytearray(blob)
    start, length = sections(blob)[b"CODE"] if draw(st.booleans()) else (0, len(blob) - 4)
    for _ in range(draw(st.integers(1, 8))):
        out[start + draw(st.integers(0, max(length - 1, 0)))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(out))) if draw(st.integers(0, 9)) == 0 else len(out)
    return reseal(bytes(out[:cut])) if draw(st.integers(0, 9)) else bytes(out[:cut])


def container_inputs() -> st.SearchStrategy[bytes]:
    seeds = st.sampled_from(range(len(seed_blobs()))).map(lambda i: seed_blobs()[i])
    return st.one_of(st.binary(max_size=256), seeds.flatmap(byte_mutation), seeds.flatmap(meta_mutation))


def run_container(blob: bytes) -> None:
    """Load; if that succeeds, plan and run one inference of zeros."""
    program = None

    def load() -> None:
        nonlocal program
        program = from_bytes(blob)

    if expect_clean(load):
        sim = Simulator(program, max_instructions=FUZZ_MAX_INSTRUCTIONS)
        expect_clean(lambda: sim.run({d.name: np.zeros(d.shape, np.float32) for d in program.inputs}))


# --- the assembler ------------------------------------------------------------------------------

_TOKENS = [".program", ".target", ".memory", ".input", ".output", ".code", ".loc", ".region", ".table",
           "LOOP", "MV", "VACT", "LOAD", "x=", "n=", "=", "[", "]", ",", '"', "0x", "1.5e3", "-7", "0000:",
           ";", "\n", " ", "\t", "\r", "weights", "\\u00", "1" * 30]
random_text = st.lists(st.sampled_from(_TOKENS) | st.text(max_size=3), max_size=40).map("".join)


@st.composite
def listing_mutation(draw, text: str) -> str:
    """Lines deleted, duplicated or swapped, and characters replaced: a hand-edited listing gone wrong."""
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "char", "token"]))
        if kind == "delete" and len(lines) > 1:
            del lines[i]
        elif kind == "duplicate":
            lines.insert(j, lines[i])
        elif kind == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        else:
            at = draw(st.integers(0, len(lines[i])))
            new = draw(st.text(max_size=2) if kind == "char" else st.sampled_from(_TOKENS))
            lines[i] = lines[i][:at] + new + lines[i][at + (kind == "char"):]
    return "".join(lines)


def assembler_inputs() -> st.SearchStrategy[str]:
    seeds = st.sampled_from(range(len(seed_listings()))).map(lambda i: seed_listings()[i])
    return st.one_of(random_text, seeds.flatmap(listing_mutation))


def run_assembler(text: str) -> None:
    """Assemble; a program that assembles must also survive the container round trip."""
    program = None

    def build() -> None:
        nonlocal program
        program = assemble(text, source="<fuzz>")

    if expect_clean(build, _ASM_ERROR):
        expect_clean(lambda: from_bytes(to_bytes(program)))


# --- the ONNX frontend --------------------------------------------------------------------------

@st.composite
def model_mutation(draw, blob: bytes) -> bytes:
    out = bytearray(blob)
    for _ in range(draw(st.integers(1, 6))):
        out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
    return bytes(out[:draw(st.integers(1, len(out)))] if draw(st.integers(0, 4)) == 0 else out)


def model_inputs() -> st.SearchStrategy[bytes]:
    seeds = st.sampled_from(range(len(seed_models()))).map(lambda i: seed_models()[i])
    return seeds.flatmap(model_mutation)


def run_model(blob: bytes) -> None:
    """Compile the bytes as a model file (a small calibration keeps it quick)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        path.write_bytes(blob)
        expect_clean(lambda: compile_model(path, calibration=_calibration(blob)))


def _calibration(blob: bytes) -> dict[str, np.ndarray] | None:
    """Two samples per input when the model parses (else the compile fails first anyway)."""
    try:
        graph = onnx.load_from_string(blob).graph
    except Exception:  # noqa: BLE001  (the compile reports it properly)
        return None
    inits = {i.name for i in graph.initializer}
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.input if v.name not in inits}
    if any(d <= 0 or d > 64 for dims in shapes.values() for d in dims):
        return None
    return {name: np.zeros((2, *dims), np.float32) for name, dims in shapes.items()}


# --- ONNX attributes ------------------------------------------------------------------------------

_A = onnx.AttributeProto
_INT64 = (-(1 << 63), (1 << 63) - 1)  # protobuf refuses any larger int: int64's extremes are the most a file holds
hostile_floats = st.sampled_from([float("nan"), float("inf"), float("-inf"), 0.0, -1.0, 3.4e38, 1e-45]) | st.floats()
hostile_ints = st.sampled_from([0, -1, 2, *_INT64, 1 << 31, 1 << 62]) | st.integers(*_INT64)
hostile_texts = st.sampled_from([b"\xff\xfe", b"\xc3(", b"", b"forward\x00", b"Tanh" * 1000]) | st.binary(max_size=12)
ATTRIBUTE_VALUES = {_A.FLOAT: hostile_floats, _A.INT: hostile_ints, _A.STRING: hostile_texts,
                    _A.FLOATS: st.lists(hostile_floats, max_size=4), _A.INTS: st.lists(hostile_ints, max_size=4),
                    _A.STRINGS: st.lists(hostile_texts, max_size=4)}


@cache
def seed_attribute_models() -> tuple[bytes, ...]:
    """Small real models whose nodes have attributes: Gemm, HardSigmoid, the recurrent layers, and
    the layout operators of opset 9 (Squeeze axes, Slice starts and ends as attributes)."""
    models = (fc_model(1, 4, 3, activation="HardSigmoid"), lstm_model(3, 1, 2, 4),
              recurrent_model("GRU", 3, 2, 2, 4, direction="bidirectional", seq_lens=[3, 1], clip=2.0),
              recurrent_model("RNN", 3, 1, 2, 4, activations=["Relu"]), opset_model("LSTM", 9))
    return tuple(m.SerializeToString() for m in models)


@st.composite
def attribute_mutation(draw, blob: bytes) -> bytes:
    """One to three attributes set to hostile values, mostly of the type the operator's schema gives
    them (so that they pass onnx.checker and reach the frontend), sometimes of another type."""
    model = onnx.load_from_string(blob)
    opset = model.opset_import[0].version
    schemas = {n.op_type: onnx.defs.get_schema(n.op_type, opset).attributes for n in model.graph.node}
    nodes = [n for n in model.graph.node if schemas[n.op_type]]
    for _ in range(draw(st.integers(1, 3))):
        node = draw(st.sampled_from(nodes))
        name = draw(st.sampled_from(sorted(schemas[node.op_type])))
        kind = schemas[node.op_type][name].type if draw(st.integers(0, 3)) else draw(st.sampled_from(
            sorted(ATTRIBUTE_VALUES)))
        for old in [a for a in node.attribute if a.name == name]:
            node.attribute.remove(old)
        node.attribute.append(onnx.helper.make_attribute(name, draw(ATTRIBUTE_VALUES[kind]), attr_type=kind))
    return model.SerializeToString()


def attribute_inputs() -> st.SearchStrategy[bytes]:
    seeds = st.sampled_from(range(len(seed_attribute_models()))).map(lambda i: seed_attribute_models()[i])
    return seeds.flatmap(attribute_mutation)


# --- .npz data files -----------------------------------------------------------------------------

_DESCRS = ["'<f4'", "'<f8'", "'<i8'", "'|b1'", "'<c8'", "'|O'", "'|S5'", "'<U3'", "'>f4'", "'<f16'", "'V8'",
           "[('a', '<f4')]", "'<M8[s]'", "'bogus'", "7", "None"]
_SHAPES = ["(6, 1, 4)", "(1, 6, 1, 4)", "(24,)", "()", "(0, 6, 1, 4)", "(1099511627776,)", "(-1,)",
           "(" + "9" * 5000 + ",)", "((1,),)", "(6, 1, 4", "[6, 1, 4]", "(2.5,)", "(1 << 40,)", "'x'"]


@st.composite
def npy_payload(draw) -> bytes:
    """An .npy member with a drawn header (dtype, order, shape) and data of about the right length."""
    descr, order = draw(st.sampled_from(_DESCRS)), draw(st.sampled_from(["False", "True", "1"]))
    header = f"{{'descr': {descr}, 'fortran_order': {order}, 'shape': {draw(st.sampled_from(_SHAPES))}, }}"
    if draw(st.booleans()):
        header = header.replace(draw(st.sampled_from(["'descr'", "'shape'", "'fortran_order'", ", }"])), "")
    padded = header.ljust(((len(header) + 11) // 64 + 1) * 64 - 11) + "\n"
    version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0), (9, 9)]))
    width = "<H" if version == (1, 0) else "<I"
    length = struct.pack(width, len(padded))
    return np.lib.format.magic(*version) + length + padded.encode("latin1") + bytes(draw(st.integers(0, 200)))


@st.composite
def npz_file(draw) -> bytes:
    """A zip of drawn .npy members (well-formed or not), sometimes with bytes overwritten or cut."""
    buf = io.BytesIO()
    good = np.zeros((6, 1, 4), np.float32)
    with zipfile.ZipFile(buf, "w", draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))) as archive, \
            warnings.catch_warnings(action="ignore", category=UserWarning):  # a repeated name is one of the cases
        for name in draw(st.lists(st.sampled_from(["X.npy", "X", "y.npy", "a/b.npy", "X.npy"]), max_size=3)):
            payload = draw(npy_payload()) if draw(st.integers(0, 3)) else _npy_bytes(good)
            archive.writestr(name, payload)
    out = bytearray(buf.getvalue())
    for _ in range(draw(st.integers(0, 3))):
        out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
    return bytes(out[:draw(st.integers(0, len(out)))] if draw(st.integers(0, 5)) == 0 else out)


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def run_npz(blob: bytes) -> None:
    """Read the bytes as an inputs file; if that succeeds, run the compiled LSTM on it."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "inputs.npz"
        path.write_bytes(blob)
        arrays: dict[str, np.ndarray] = {}
        if expect_clean(lambda: arrays.update(read_npz(path))):
            sim = Simulator(from_bytes(seed_blobs()[1]), max_instructions=FUZZ_MAX_INSTRUCTIONS)
            expect_clean(lambda: sim.run(arrays))


# deferred: the seeds are compiled on first use, not at import
TARGETS = {t.name: t for t in (FuzzTarget("container", st.deferred(container_inputs), run_container),
                               FuzzTarget("assembler", st.deferred(assembler_inputs), run_assembler),
                               FuzzTarget("onnx", st.deferred(model_inputs), run_model),
                               FuzzTarget("attributes", st.deferred(attribute_inputs), run_model),
                               FuzzTarget("npz", st.deferred(npz_file), run_npz))}

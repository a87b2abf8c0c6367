"""Hostile inputs built in code: the cases of the hostile-input tests that other tests and
bench/hostile.py share (broken archives, endless loops, long chains, external data)."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from isa.encoding import Instruction, encode_all
from isa.loops import STRIDE_SLOTS

from models import fc_model
from sim_helpers import I, make_program


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def one_member_zip(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("x.npy", payload)
    return buf.getvalue()


def zip_member(name: str, data: bytes, inflated: int, crc: int) -> bytes:
    """A one-member zip of raw deflate `data` that claims to inflate to `inflated` bytes (no zip64: < 4 GiB)."""
    entry = name.encode()
    local = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(data), inflated, len(entry), 0)
    central = struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(data), inflated, len(entry),
                          0, 0, 0, 0, 0, 0)
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(entry), len(local) + len(entry)
                      + len(data), 0)
    return local + entry + data + central + entry + end


def zip_bomb(inflated: int) -> bytes:
    """An .npz whose one array honestly claims `inflated` bytes of zeros and whose file is a few MB:
    the same compressed block of zeros repeated (each ends in a full flush, so they concatenate)."""
    chunk, pack = 1 << 24, zlib.compressobj(9, zlib.DEFLATED, -15)
    header = npy_header((inflated // 4,))
    head = pack.compress(header) + pack.flush(zlib.Z_FULL_FLUSH)
    block = pack.compress(bytes(chunk)) + pack.flush(zlib.Z_FULL_FLUSH)
    data = head + block * (inflated // chunk) + pack.flush()
    return zip_member("x.npy", data, len(header) + inflated, 0)


def chain_model(length: int, ops: tuple[str, ...]) -> onnx.ModelProto:
    """x -> ops[0] -> ops[1] -> ... (cycling) -> y, `length` nodes; "Add" adds a shared constant."""
    nodes, previous = [], "x"
    for index in range(length):
        out, op = ("y" if index == length - 1 else f"t{index}"), ops[index % len(ops)]
        nodes.append(helper.make_node(op, [previous, "c"] if op == "Add" else [previous], [out]))
        previous = out
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(np.full((1, 4), 0.01, np.float32), "c")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def code_of(words: int) -> bytes:
    return encode_all([Instruction.make("VMOV", dst=0, src=0, n=1)]) * words


def endless_loop(count: int = 65535) -> object:
    """LOOP count=65535 over a 255-instruction body: 16.7 million executed instructions."""
    body = [I("VMOV", dst=0, src=0, n=1)] * 255
    return make_program([I("LOOP", count=count, body=255, strides=0), *body],
                        weights=bytes(255 * STRIDE_SLOTS * 2), inputs={"x": (0, (4,))}, outputs={"y": (0, (4,))})


def point_to_file(tensor: onnx.TensorProto, entries: dict) -> None:
    """Make `tensor` external, with `entries` (location, offset, length) as the file reference."""
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    for key, value in entries.items():
        tensor.external_data.add(key=key, value=str(value))
    tensor.data_location = TensorProto.EXTERNAL


def external_model(folder, location: str = "weights.bin", **fields) -> tuple:
    """fc_model's weight matrix moved to `folder/location` (unless it is a path elsewhere)."""
    model = fc_model(1, 4, 3)
    tensor = model.graph.initializer[0]
    data = tensor.raw_data or numpy_helper.to_array(tensor).tobytes()
    target = folder / location
    if not os.path.isabs(location) and ".." not in location:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    point_to_file(tensor, {"location": location, **fields})
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path, data


# A small parent process runs the command and reports its children's peak resident memory: the
# command's own ru_maxrss would count the memory of the process it was forked from.
_MEASURE = ("import resource, subprocess, sys, time\n"
            "start = time.perf_counter()\n"
            "try:\n"
            "    done = subprocess.run(sys.argv[2:], capture_output=True, text=True, timeout=float(sys.argv[1]))\n"
            "    status, last = done.returncode, (done.stderr.strip().splitlines() or [''])[-1]\n"
            "except subprocess.TimeoutExpired:\n"
            "    status, last = 'killed', 'still running after the time limit'\n"
            "print(status, time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, last)")


@dataclass(frozen=True)
class Measured:
    """How a command ended: its exit status ('killed' past the time limit), wall time, peak memory
    and the last line of its standard error."""

    status: int | str
    seconds: float
    peak_kib: int
    last_line: str


def measured_run(args: list[str], cwd: str | Path, timeout: float = 600, env: dict | None = None) -> Measured:
    """`python ARGS...` in a fresh process from `cwd`, measured."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(timeout), sys.executable, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=True)
    status, seconds, kib, last = done.stdout.split(" ", 3)
    return Measured(int(status) if status.lstrip("-").isdigit() else status, float(seconds), int(kib), last.strip())

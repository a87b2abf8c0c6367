"""Integration vectors: one inference's memory images as Verilog `$readmemh` files.

A hardware engineer checks an RTL model of the chip against the simulator with these: load the
initial images, write the quantised input, run, and compare every layer's output and the final
outputs word for word. Each file holds one contiguous range of one memory: a `//` header naming
what it is and its address range, an `@ADDR` line (hex word address, so `$readmemh(file, mem)`
puts the words where they belong), then one word per line in hex, two's complement at the
memory's word width. `manifest.json` lists every file with its memory, base, width and count.

Files (names in the manifest):

- `input_*`: each input as the runtime writes it, quantised, into host memory;
- `layer*_`: per ONNX node (the program's debug locations name the node of every pc), the
  activation-memory words that the node wrote and a *different* node then read, with the value
  each address held when it was last read that way. That is exactly what flows between layers
  (a recurrent layer's final hidden state, not its gate temporaries); an address the producer
  rewrites between two reads keeps only the later value;
- `output_*`: each output in host memory after the run;
- `wmem_*`: the weight-memory regions, in bytes, as loaded; `cbm*`: codebook memory after the
  program's CBLOADs (only if it has any); `table_*`: the vector unit's activation tables;
- `island<k>/`: a partitioned program's islands, each with all of the above, beside a manifest
  listing them.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from isa import numerics
from isa.container import Program
from isa.loops import expand_program
from runtime_sim.machine import Machine
from runtime_sim.semantics import Step
from runtime_sim.simulator import Result, Simulator, check_inputs

if TYPE_CHECKING:
    from runtime_sim.partitioned import PartitionedSimulator

TABLE_BITS = 16  # TABL stores int16 entries


@dataclass(frozen=True)
class Image:
    """One contiguous range of one memory, and what it holds."""

    file: str
    kind: str
    what: str
    memory: str
    base: int
    bits: int
    values: np.ndarray


def readmemh(image: Image) -> str:
    """The `$readmemh` text of `image`: header comments, `@base`, one hex word per line."""
    mask, digits = (1 << image.bits) - 1, (image.bits + 3) // 4
    end = image.base + len(image.values)
    words = "".join(f"{int(v) & mask:0{digits}x}\n" for v in image.values)
    return (f"// {image.what}\n// {image.memory}[{image.base}:{end}), {len(image.values)} words of "
            f"{image.bits} bits, hex, two's complement\n@{image.base:x}\n{words}")


def manifest(program: Program, images: list[Image]) -> str:
    files = [{"file": i.file, "kind": i.kind, "what": i.what, "memory": i.memory, "base": i.base,
              "bits": i.bits, "count": len(i.values)} for i in images]
    return json.dumps({"model": program.model, "files": files}, indent=2) + "\n"


def vectors(sim: Simulator, inputs: Mapping[str, np.ndarray]) -> list[Image]:
    """Run one inference of `inputs` step by step and collect every image the module doc lists."""
    program, bits = sim.program, sim.program.target.act_bits
    arrays = check_inputs(program.inputs, inputs, batch=False)
    m = sim.machine(1)
    images = []
    for d in program.inputs:
        m.write_host(d, numerics.quantize(arrays[d.name], d.scales()))
        images.append(Image(f"input_{_safe(d.name)}.hex", "input", f"input '{d.name}' {list(d.shape)}, "
                            f"quantised (scale {d.scale!r})", "host", d.host, bits, _host(m, d.host, d.size)))
    images += _layers(sim, m)
    images += [Image(f"output_{_safe(d.name)}.hex", "output", f"output '{d.name}' {list(d.shape)} "
                     f"(scale {d.scale!r})", "host", d.host, bits, _host(m, d.host, d.size)) for d in program.outputs]
    return images + _initial(sim, m)


def _host(m: Machine, base: int, size: int) -> np.ndarray:
    return m.host[0, base:base + size].astype(np.int64)


def _layers(sim: Simulator, m: Machine) -> list[Image]:
    """Execute the program on `m`, snapshotting amem words as other nodes read them."""
    program = sim.program
    names = _node_order(program)
    node_at = _node_at(program, names)
    writer = np.full(m.amem.shape[1], -1)
    seen: dict[int, dict[int, int]] = {}
    stream = expand_program(program, sim.max_instructions)
    for (pc, instr), record in zip(stream, sim.timing.trace):
        node = node_at(pc)
        for mem, a, n in record["reads"]:
            if mem == "amem":
                _snapshot(m, writer, a, n, node, seen)
        Step.of(pc, instr)(m)
        for mem, a, n in record["writes"]:
            if mem == "amem":
                writer[a:a + n] = node
    return [img for index in sorted(seen) for img in _layer_images(program, index, names[index], seen[index])]


def _snapshot(m: Machine, writer: np.ndarray, a: int, n: int, reader: int, seen: dict) -> None:
    src = writer[a:a + n]
    for producer in np.unique(src[(src >= 0) & (src != reader)]):
        addrs = np.nonzero(src == producer)[0] + a
        seen.setdefault(int(producer), {}).update(zip(addrs.tolist(), m.amem[0, addrs].tolist()))


def _node_order(program: Program) -> list[str]:
    """The ONNX node names in order of first appearance in the code."""
    return list(dict.fromkeys(loc.node for loc in program.locs))


def _node_at(program: Program, names: list[str]) -> Callable[[int], int]:
    """pc -> index into `names` of the node it belongs to (-1: before any location)."""
    starts = [loc.pc for loc in program.locs]
    index = {name: i for i, name in enumerate(names)}

    def node(pc: int) -> int:
        at = bisect.bisect_right(starts, pc) - 1
        return index[program.locs[at].node] if at >= 0 else -1

    return node


def _layer_images(program: Program, index: int, name: str, words: dict[int, int]) -> list[Image]:
    runs = list(_runs(sorted(words)))
    images = []
    for k, (lo, hi) in enumerate(runs):
        suffix, part = (f"_{k}", f", part {k + 1} of {len(runs)}") if len(runs) > 1 else ("", "")
        values = np.array([words[a] for a in range(lo, hi)], np.int64)
        images.append(Image(f"layer{index:02d}_{_safe(name)}{suffix}.hex", "layer",
                            f"output of node '{name}' as the next node read it{part}", "amem", lo,
                            program.target.act_bits, values))
    return images


def _runs(addresses: list[int]) -> Iterator[tuple[int, int]]:
    """Contiguous [lo, hi) runs of sorted addresses."""
    start = prev = addresses[0]
    for a in addresses[1:]:
        if a != prev + 1:
            yield start, prev + 1
            start = a
        prev = a
    yield start, prev + 1


def _initial(sim: Simulator, m: Machine) -> list[Image]:
    """What the chip holds before the first inference: weight memory, codebooks, tables."""
    program = sim.program
    images = [Image(f"wmem_{r.name}.hex", "initial", f"weight memory region '{r.name}'", "wmem", r.base, 8,
                    np.frombuffer(r.data, np.uint8).astype(np.int64)) for r in program.regions]
    written = sorted({a for rec in sim.timing.trace for mem, lo, n in rec["writes"] if mem == "cbm"
                      for a in range(lo, lo + n)})
    runs = list(_runs(written)) if written else []
    images += [Image(f"cbm{'_' + str(k) if len(runs) > 1 else ''}.hex", "initial", "codebook memory after CBLOAD",
                     "cbm", lo, program.target.weight_bits, m.cbm[lo:hi].astype(np.int64))
               for k, (lo, hi) in enumerate(runs)]
    images += [Image(f"table_{_safe(name)}.hex", "initial", f"activation table {i} '{name}' of the vector unit",
                     f"table{i}", 0, TABLE_BITS, table.astype(np.int64))
               for i, (name, table) in enumerate(program.tables.items())]
    return images


def _safe(name: str) -> str:
    """A file-name fragment for an ONNX name ('/rnn/LSTM' -> 'rnn_LSTM')."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_") or "unnamed"


def vector_files(program: Program, images: list[Image]) -> dict[str, str]:
    """The folder --dump-vectors writes: one $readmemh file per image, and the manifest."""
    return {**{image.file: readmemh(image) for image in images}, "manifest.json": manifest(program, images)}


def vector_folder(sim: Simulator | PartitionedSimulator, inputs: Mapping[str, np.ndarray], result: Result) -> dict:
    """--dump-vectors' folder; a partitioned run's has each island's files in `island<k>/`, fed
    the floats the host handed that island, and a top-level manifest listing the islands."""
    if not result.islands:
        return vector_files(sim.program, vectors(sim, inputs))
    files, listed = {}, []
    for run in result.islands:
        island, folder = sim.islands[run.index], f"island{run.index}"
        files.update({f"{folder}/{name}": text
                      for name, text in vector_files(island.program, vectors(island, run.inputs)).items()})
        listed.append({"island": run.index, "folder": folder, "model": island.program.model})
    return {**files, "manifest.json": json.dumps({"model": sim.program.model, "islands": listed}, indent=2) + "\n"}

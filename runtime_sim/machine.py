"""The simulated chip's state: its memories, their layouts, and the bounds every access obeys.

Memories (names as in isa.table.MEMORIES):

- `host`: host memory of one inference, in activation elements (int16). The runtime writes the
  quantised inputs at each input descriptor's `host` address and reads the outputs back.
- `amem`: on-chip activation memory, `target.act_elems` int16 elements.
- `acc`: the accumulators, `target.acc_entries` entries. The accumulator keeps 16 guard bits
  inside; saturation to `acc_bits` happens when it is read out (numerics.requantize). They are
  held as float64, which represents every integer below 2**53 exactly, so every value the
  48-bit accumulator can hold: the matrix products (float64 matmul) store into them and the
  requantisation (float64 too) reads them without a conversion either way, two passes fewer per
  product in a batch; the instructions that need integers convert what they read.
- `wmem`: weight memory, `target.weight_mem_bytes` bytes, initialised from Program.regions when
  the program is loaded and shared by every inference. No instruction writes it (checked below),
  which is why decoded weights, biases and requantisation parameters can be cached.
- `cbm`: the decompression engine's codebook memory, `target.codebook_entries` weight values,
  written by CBLOAD from weight memory: the same for every inference, so it has no batch axis.
- the vector unit's private activation tables (Program.tables' values, numbered in order).
  Every int16 input of a table (after VACT's shift and saturation) maps to one output, so each
  (table, shift) pair used is expanded once into a 65536-entry lookup (Tables.lookup).

Every per-inference array is indexed [sample, address]: independent inferences run together,
so one instruction costs one numpy operation whatever the batch size. Each is held sample-last,
the transpose of an [address, sample] array, so the elements at an address range of every
sample are one contiguous block: an instruction's operands are then one run for numpy's loops
(not one short run per sample), a gathered operand is a copy of whole address rows, and a
matrix-vector product's (rows, samples) result is what BLAS writes into the accumulators.

Layouts in weight memory, all little-endian:
- MV-family weights at `w`, k-major then row: W[k, r] at w + (k*rows + r) * weight_bytes,
  signed int8 or int16 per target.weight_bits (depthwise MVDB/MVDA: a tap t for k);
- MVB and MVDB biases: int32 at bias + 4r;
- VRQ/VRQA parameters at q: for element i an int16 multiplier at q+4i and an int16 shift at q+4i+2;
  VRQC/VRQAC read one such pair for all elements;
- MVC index streams: `bits`-bit codebook indices in the order MV's weights would be, packed as
  isa.bitstream says; VRQC biases and CBLOAD codebook entries are weight_bits values;
- MVCS streams: a bitmap of the rows*cols weights in the same order (a 1-bit stream, bit set:
  kept), then, from the next byte, the kept weights' indices as an MVC stream of `nnz` indices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from isa import numerics
from isa.bitstream import packed_bytes, unpack_indices
from isa.container import Program
from isa.encoding import Instruction
from isa.errors import RnnaccelError
from isa.numerics import MAX_SHIFT
from isa.table import MEMORIES, OPS
from isa.target import Target
from isa.tensors import TensorDesc

assert all(a.memory != "wmem" for op in OPS for a in op.writes), "wmem is read-only: decoded data is cached"


def memory_sizes(program: Program) -> dict[str, int]:
    """Each memory's size: the target's, or for host memory the program's own."""
    return {name: getattr(program.target, m.size) if m.size else getattr(program.memory, name)
            for name, m in MEMORIES.items()}


def outside(mem: str, lo: int, hi: int, sizes: dict[str, int]) -> str:
    """The message for a range [lo, hi) that does not fit memory `mem`."""
    return f"{mem} range [{lo}, {hi}) outside {MEMORIES[mem].title} ({sizes[mem]} {MEMORIES[mem].unit})"


def check_instruction(pc: int, instr: Instruction, ranges: list, sizes: dict[str, int], target: Target) -> None:
    """Reject an access outside its memory and a matrix-vector op wider than the MAC array."""
    where = f"pc {pc} ({instr.mnemonic})"
    for mem, addr, length in ranges:
        if addr + length > sizes[mem]:
            raise RnnaccelError(f"{where}: {outside(mem, addr, addr + length, sizes)}")
    if instr.op.unit == "MAC":
        rows, split = instr["rows"], instr.operands().get("split", 1)  # depthwise ops have no split
        if split < 1 or rows * split > target.macs:
            raise RnnaccelError(f"{where}: {rows} rows x split {split} do not fit the {target.macs} MAC lanes")


def check_descriptors(program: Program, sizes: dict[str, int]) -> None:
    """Inputs and outputs must lie inside the program's host memory, streaming state inside
    activation memory."""
    places = [(f"input '{d.name}'", "host", d.host, d.size) for d in program.inputs]
    places += [(f"output '{d.name}'", "host", d.host, d.size) for d in program.outputs]
    places += [(f"state '{s.name}'", "amem", s.address, s.size) for s in program.state]
    for what, mem, address, size in places:
        if address + size > sizes[mem]:
            raise RnnaccelError(f"corrupted program: {what} at {outside(mem, address, address + size, sizes)}")


class WeightMemory:
    """The weight-memory image and cached decodings of what instructions read from it."""

    def __init__(self, program: Program) -> None:
        image = np.zeros(program.target.weight_mem_bytes, dtype=np.uint8)
        for region in program.regions:
            image[region.base:region.base + len(region.data)] = np.frombuffer(region.data, np.uint8)
        self.image = image
        self.weight_dtype = np.dtype(f"<i{program.target.weight_bytes}")
        self.matrix = lru_cache(maxsize=None)(self._matrix)
        self.indices = lru_cache(maxsize=None)(self._indices)
        self.sparse = lru_cache(maxsize=None)(self._sparse)
        self.biases = lru_cache(maxsize=None)(self._biases)
        self.requant = lru_cache(maxsize=None)(self._requant)

    def _view(self, addr: int, count: int, dtype: np.dtype | str) -> np.ndarray:
        dtype = np.dtype(dtype)
        return self.image[addr:addr + count * dtype.itemsize].view(dtype)

    def _matrix(self, w: int, rows: int, cols: int) -> np.ndarray:
        """W as a float64 (cols, rows) matrix, so x @ W is one BLAS call."""
        return self._view(w, rows * cols, self.weight_dtype).reshape(cols, rows).astype(np.float64)

    def _indices(self, w: int, count: int, bits: int) -> np.ndarray:
        return unpack_indices(self.image[w:w + packed_bytes(count, bits)], count, bits)

    def _sparse(self, w: int, count: int, bits: int, nnz: int, pc: int) -> tuple[np.ndarray, np.ndarray]:
        """(kept, indices) of a pruned stream: the bitmap of `count` weights, then the kept ones'
        indices; a bitmap that keeps other than `nnz` weights is a corrupted program."""
        kept = self._indices(w, count, 1).astype(bool)
        if int(kept.sum()) != nnz:
            raise RnnaccelError(f"pc {pc}: the bitmap at wmem {w} keeps {int(kept.sum())} weights, "
                                f"the instruction says {nnz}")
        return kept, self._indices(w + packed_bytes(count, 1), nnz, bits)

    def values(self, addr: int, n: int) -> np.ndarray:
        """n weight_bits values: codebook entries and compressed layers' biases."""
        return self._view(addr, n, self.weight_dtype).astype(np.int64)

    def _biases(self, addr: int, rows: int) -> np.ndarray:
        return self._view(addr, rows, "<i4").astype(np.int64)

    def constants(self, addr: int, n: int) -> np.ndarray:
        return self._view(addr, n, "<i2").astype(np.int64)

    def _requant(self, q: int, n: int, pc: int) -> tuple[np.ndarray, np.ndarray]:
        """(mult, shift) per element; a shift outside 0..MAX_SHIFT is a corrupted program."""
        pairs = self._view(q, 2 * n, "<i2").astype(np.int64).reshape(n, 2)
        bad = (pairs[:, 1] < 0) | (pairs[:, 1] > MAX_SHIFT)
        if bad.any():
            i = int(np.argmax(bad))
            raise RnnaccelError(f"pc {pc}: requantisation shift {pairs[i, 1]} at wmem {q + 4 * i + 2} "
                                f"is outside 0..{MAX_SHIFT}")
        return pairs[:, 0], pairs[:, 1]


class Tables:
    """The program's activation tables, numbered in order, and their full expansions.

    numerics.table_lookup interpolates; VACT applies it to every element of every inference.
    Its result for each of the 65536 possible int16 activations is computed once per (table,
    shift), so one VACT is a single gather with the very values the interpolation gives.
    """

    def __init__(self, tables: list[np.ndarray]) -> None:
        self.tables = tables
        self.lookup = lru_cache(maxsize=None)(self._lookup)
        self.joined = lru_cache(maxsize=None)(self._joined)

    def __len__(self) -> int:
        return len(self.tables)

    def __getitem__(self, number: int) -> np.ndarray:
        return self.tables[number]

    def _lookup(self, number: int, up: int) -> np.ndarray:
        """table(sat_act(x << up)) for every int16 x, at x's bits read as uint16 (x, or 65536 + x
        below 0): indexing with the activations' uint16 view needs no conversion or bounds check."""
        x = np.arange(numerics.ACT_MIN, numerics.ACT_MAX + 1, dtype=np.int64)
        out = numerics.table_lookup(self.tables[number], numerics.sat_act(np.left_shift(x, up)))
        return np.roll(out.astype(np.int16), -numerics.ACT_MIN)

    def _joined(self, numbers: tuple[int, ...], up: int) -> tuple[np.ndarray, np.ndarray]:
        """The expansions of the tables `numbers` names (one per element) end to end, and each
        element's offset into them: one gather serves elements of different tables."""
        used = sorted(set(numbers))
        size = numerics.ACT_MAX - numerics.ACT_MIN + 1
        offsets = np.array([used.index(n) * size for n in numbers], np.int32)
        return np.concatenate([self.lookup(n, up) for n in used]), offsets

    def runs(self, numbers: tuple[int, ...], up: int) -> tuple[tuple[np.ndarray, int, int], ...]:
        """(expansion, start, stop) for each run of elements, `numbers` naming their tables, that
        read one table: a batch reads a run's block of memory with one take, offsets unneeded."""
        edges = [i for i in range(len(numbers)) if i == 0 or numbers[i] != numbers[i - 1]] + [len(numbers)]
        return tuple((self.lookup(numbers[a], up), a, b) for a, b in zip(edges, edges[1:]))


@dataclass
class Machine:
    """One batch of inferences: per-inference memories plus the shared weight memory and tables."""

    host: np.ndarray
    amem: np.ndarray
    acc: np.ndarray
    cbm: np.ndarray
    wmem: WeightMemory
    tables: Tables = field(default_factory=lambda: Tables([]))

    @classmethod
    def empty(cls, batch: int, extents: dict[str, int], wmem: WeightMemory, tables: Tables) -> Machine:
        """Zeroed memories, each only as long as the program ever touches (`extents`), sample-last."""
        return cls(host=_sample_last(extents["host"], batch, np.int16),
                   amem=_sample_last(extents["amem"], batch, np.int16),
                   acc=_sample_last(extents["acc"], batch, np.float64), cbm=np.zeros(extents["cbm"], np.int64),
                   wmem=wmem, tables=tables)

    def write_host(self, desc: TensorDesc, values: np.ndarray) -> None:
        self.host[:, desc.host:desc.host + desc.size] = values.reshape(len(values), desc.size)

    def read_host(self, desc: TensorDesc) -> np.ndarray:
        flat = self.host[:, desc.host:desc.host + desc.size].astype(np.int64)
        return flat.reshape((len(flat),) + desc.shape)


def _sample_last(size: int, batch: int, dtype: type) -> np.ndarray:
    """A zeroed [sample, address] memory whose samples are adjacent in memory (see the module doc).
    One sample's is the same bytes either way, and as a (1, size) array numpy's indexing and loops
    take it a few percent faster than as a transposed (size, 1) one (a warm single run)."""
    return np.zeros((1, size), dtype) if batch == 1 else np.zeros((size, batch), dtype).T

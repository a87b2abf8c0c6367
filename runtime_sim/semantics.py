"""What each instruction does to the machine state: one function per ISA row, bit-exact.

Functions are registered with `@semantics("MNEMONIC")`; the dispatch table is checked against
isa.table.OPS at import, so an instruction without semantics (or semantics without an
instruction) fails at once. All arithmetic goes through isa.numerics, the one definition the
compiler's layer-level reference shares. Timing lives in runtime_sim.timing: these functions
run in program order, which the scoreboard makes equivalent to the timed execution.

Matrix-vector products use float64 matmul, stored into the float64 accumulators (machine.py):
every partial sum is an integer below 2**47 (int16 x int16 products, at most 65535 columns), so
it is exact, and so is adding a 32-bit bias to it or accumulating it below 2**53.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from isa import numerics
from isa.encoding import Instruction
from isa.errors import RnnaccelError
from isa.table import BY_MNEMONIC
from runtime_sim.machine import Machine


@dataclass(frozen=True, slots=True)
class Step:
    """One instruction ready to execute: its pc, record, operands by name and semantics; or a
    fused step (runtime_sim.fusion), one instruction standing for independent `members` of the
    same kind, its operands' elements gathered from all of theirs."""

    pc: int
    instr: Instruction
    args: dict[str, int]
    execute: Callable[[Machine, Step], None]
    members: tuple[Step, ...] = ()
    places: dict | None = None  # a fused step's: operands' gathered elements, joined decodings
    prepared: dict = field(default_factory=dict, compare=False)  # see `once`

    @classmethod
    def of(cls, pc: int, instr: Instruction) -> Step:
        return cls(pc, instr, instr.operands(), SEMANTICS[instr.mnemonic])

    def __call__(self, m: Machine) -> None:
        self.execute(m, self)

    def at(self, name: str, length: str | int) -> slice | np.ndarray:
        """The elements operand `name` addresses: `length` (a field or a number) from its address,
        or a fused step's gathered indices."""
        if self.places is not None and name in self.places:
            return self.places[name]
        start = self.args[name]
        return slice(start, start + (length if isinstance(length, int) else self.args[length]))

    def decoded(self, m: Machine, what: str, decode: Callable[[Step], object], axis: int = 0):
        """decode(step) of what the instruction reads from weight memory; for a fused step, its
        members' results joined along `axis` (each part of a tuple result), once per weight memory."""
        if not self.members:
            return decode(self)
        key = (what, m.wmem)
        if key not in self.places:
            parts = [decode(one) for one in self.members]
            joined = (tuple(np.concatenate(p, axis=axis) for p in zip(*parts)) if isinstance(parts[0], tuple)
                      else np.concatenate(parts, axis=axis))
            self.places[key] = joined
        return self.places[key]


    def once(self, m: Machine, what: str, make: Callable[[], object]):
        """make() on the first call for this weight memory, the same object after: what a
        step derives from weight memory (never written) is the same on every run."""
        key = (what, m.wmem)
        if key not in self.prepared:
            self.prepared[key] = make()
        return self.prepared[key]


SEMANTICS: dict[str, Callable[[Machine, Step], None]] = {}


def semantics(mnemonic: str) -> Callable:
    """Register the decorated function as the meaning of `mnemonic`."""
    def register(fn: Callable[[Machine, Step], None]) -> Callable[[Machine, Step], None]:
        assert mnemonic in BY_MNEMONIC, f"semantics for unknown instruction {mnemonic}"
        assert mnemonic not in SEMANTICS, f"two semantics for {mnemonic}"
        SEMANTICS[mnemonic] = fn
        return fn
    return register


def _matrix(m: Machine, s: Step) -> np.ndarray:
    """W as float64 (cols, rows); a fused step's members' side by side."""
    return s.decoded(m, "matrix", lambda one: m.wmem.matrix(one.args["w"], one.args["rows"], one.args["cols"]), axis=1)


def _dot(m: Machine, s: Step, out: np.ndarray | None) -> np.ndarray:
    """sum_k W[k, r] * x[k] for every sample and row (B, rows), into `out` if given: float64
    holding exact integers, the accumulators' own type, so BLAS writes them in place. Computed
    as W^T x^T, the memories' own sample-last order (machine.Machine), which BLAS writes into."""
    x = m.amem[:, s.at("x", "cols")].T.astype(np.float64)
    return _matmul_sample_last(_matrix(m, s), x, out)


def _biased_dot(m: Machine, s: Step, out: np.ndarray | None) -> np.ndarray:
    """_dot plus the bias, in the same BLAS call: the bias is one more row of W, read against a
    column of ones appended to x. Adding it to the product and storing the sum were two passes
    over (B, rows) each, the larger part of an MVB whose x is short (an input projection)."""
    w = s.once(m, "biased matrix", lambda: np.vstack([_matrix(m, s), _bias(m, s)]))
    x = m.amem[:, s.at("x", "cols")].T
    extended = np.empty((len(x) + 1, x.shape[1]))
    extended[:-1] = x
    extended[-1] = 1.0
    return _matmul_sample_last(w, extended, out)


def _matmul_sample_last(w: np.ndarray, x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """(w^T x)^T for w (cols, rows) and x (cols, B): (B, rows), into `out` if given; x^T w for
    one sample (a warm run), whose (1, rows) is contiguous as it is, the cheaper call."""
    if x.shape[1] == 1:
        return np.matmul(x.T, w, out=out)
    return np.matmul(w.T, x, out=None if out is None else out.T).T


@semantics("LOAD")
def _load(m: Machine, s: Step) -> None:
    m.amem[:, s.at("dst", "n")] = m.host[:, s.at("src", "n")]


@semantics("STORE")
def _store(m: Machine, s: Step) -> None:
    m.host[:, s.at("dst", "n")] = m.amem[:, s.at("src", "n")]


@semantics("LDC")
def _ldc(m: Machine, s: Step) -> None:
    a = s.args
    m.amem[:, s.at("dst", "n")] = m.wmem.constants(a["src"], a["n"])


def _depthwise(m: Machine, s: Step, out: np.ndarray | None) -> np.ndarray:
    """sum_t W[t, r] * x[t*step + r] for every sample and lane r (B, rows), into `out` if given:
    lane r reads its own channel of each tap."""
    a = s.args
    w = m.wmem.matrix(a["w"], a["rows"], a["taps"]).astype(np.int64)
    lanes = a["x"] + a["step"] * np.arange(a["taps"])[:, None] + np.arange(a["rows"])[None, :]
    return np.einsum("btr,tr->br", m.amem[:, lanes].astype(np.int64), w, out=out)


def _bias(m: Machine, s: Step) -> np.ndarray:
    return s.decoded(m, "bias", lambda one: m.wmem.biases(one.args["bias"], one.args["rows"]))


def _set(product: Callable, m: Machine, s: Step) -> None:
    """The product computed straight into the accumulators when they are a slice (a view), a
    pass fewer than storing a new array; stored when they are gathered."""
    place = s.at("acc", "rows")
    if isinstance(place, slice):
        product(m, s, m.acc[:, place])
    else:
        m.acc[:, place] = product(m, s, None)


def _preload(product: Callable, m: Machine, s: Step) -> None:
    total = product(m, s, None)
    total += _bias(m, s)  # in place: the product is a new array
    m.acc[:, s.at("acc", "rows")] = total


def _accumulate(product: Callable, m: Machine, s: Step) -> None:
    m.acc[:, s.at("acc", "rows")] += product(m, s, None)


# the matrix-vector family: which product each computes, and how it meets the accumulators
for _mnemonic, _product, _form in (("MV", _dot, _set), ("MVB", _biased_dot, _set), ("MVA", _dot, _accumulate),
                                   ("MVDB", _depthwise, _preload), ("MVDA", _depthwise, _accumulate)):
    semantics(_mnemonic)(functools.partial(_form, _product))


@semantics("MVC")
def _mvc(m: Machine, s: Step) -> None:
    """The decompression engine expands the index stream through the codebook, one weight per lane per cycle."""
    a = s.args
    index = m.wmem.indices(a["w"], a["rows"] * a["cols"], a["bits"])
    _expanded_dot(m, s, m.cbm[a["cb"] + index])


@semantics("MVCS")
def _mvcs(m: Machine, s: Step) -> None:
    """As MVC, the engine also reading a bitmap: a lane whose bit is clear gets a zero weight and
    takes no index, so the stream holds only the kept weights' indices."""
    a = s.args
    kept, index = m.wmem.sparse(a["w"], a["rows"] * a["cols"], a["bits"], a["nnz"], s.pc)
    weights = np.zeros(kept.size, np.int64)
    weights[kept] = m.cbm[a["cb"] + index]
    _expanded_dot(m, s, weights)


def _expanded_dot(m: Machine, s: Step, weights: np.ndarray) -> None:
    """acc = W x with the weights the decompression engine expanded, k-major as MV reads them."""
    w = weights.reshape(s.args["cols"], s.args["rows"]).astype(np.float64)
    x = m.amem[:, s.at("x", "cols")].astype(np.float64)
    m.acc[:, s.at("acc", "rows")] = x @ w


@semantics("CBLOAD")
def _cbload(m: Machine, s: Step) -> None:
    a = s.args
    m.cbm[s.at("dst", "n")] = m.wmem.values(a["src"], a["n"])


def _requant(m: Machine, s: Step) -> numerics.Scaling:
    """(mult, shift) for each of the n elements (VRQ, VRQA), prepared for numerics once."""
    return s.once(m, "scaling", lambda: numerics.Scaling.of(
        *s.decoded(m, "requant", lambda one: m.wmem.requant(one.args["q"], one.args["n"], one.pc))))


def _accumulators(m: Machine, s: Step) -> np.ndarray:
    """The accumulators a requantisation reads (`src`); gathered ones (a fused step's, from
    interleaved gates) through `take` of whole address rows of the sample-last memory."""
    place = s.at("src", "n")
    return m.acc[:, place] if isinstance(place, slice) else m.acc.T.take(place, axis=0).T


@semantics("VRQ")
def _vrq(m: Machine, s: Step) -> None:
    m.amem[:, s.at("dst", "n")] = numerics.requantize_with(_accumulators(m, s), _requant(m, s))


@semantics("VRQA")
def _vrqa(m: Machine, s: Step) -> None:
    addend = m.amem[:, s.at("add", "n")]
    m.amem[:, s.at("dst", "n")] = numerics.requantize_add_with(_accumulators(m, s), _requant(m, s), addend)


@semantics("VRQC")
def _vrqc(m: Machine, s: Step) -> None:
    a = s.args
    mult, shift = m.wmem.requant(a["q"], 1, s.pc)
    bias = np.left_shift(m.wmem.values(a["bias"], a["n"]), a["bshift"])
    m.amem[:, s.at("dst", "n")] = numerics.requantize_add(m.acc[:, s.at("src", "n")], mult, shift, bias)


@semantics("VRQAC")
def _vrqac(m: Machine, s: Step) -> None:
    a = s.args
    mult, shift = m.wmem.requant(a["q"], 1, s.pc)
    addend = m.amem[:, s.at("add", "n")]
    m.amem[:, s.at("dst", "n")] = numerics.requantize_add(m.acc[:, s.at("src", "n")], mult, shift, addend)


def _table(m: Machine, s: Step) -> np.ndarray:
    """The program's table that the instruction's `table` field numbers (VACT, VLOG, VPOW)."""
    number = s.args["table"]
    if number >= len(m.tables):
        raise RnnaccelError(f"pc {s.pc} ({s.instr.mnemonic}): table {number} does not exist "
                            f"(the program has {len(m.tables)})")
    return m.tables[number]


def _table_number(m: Machine, s: Step) -> int:
    """The `table` field, checked to name one of the program's tables."""
    _table(m, s)
    return s.args["table"]


RUNS_FROM = 64  # samples from which one take per table's run beats one take through the joined tables


@semantics("VACT")
def _vact(m: Machine, s: Step) -> None:
    """table(sat_act(src << up)), read from the table's expansion (machine.Tables). A fused step's
    members may read different tables (an LSTM's sigmoid and tanh gates, interleaved). In a batch
    each run of one table's elements is one `take` straight into memory (a block, sample-last);
    else (few samples, gathered operands) each element indexes the tables joined, at its offset."""
    expansion, offsets = s.once(m, "expansion", lambda: _expansion(m, s))
    runs = s.once(m, "table runs", lambda: _table_runs(m, s)) if offsets is None or len(m.amem) >= RUNS_FROM else None
    if runs is not None:
        memory = m.amem.T
        index = memory.view(np.uint16)  # the expansion's order: x, or 65536 + x below 0
        for table, src, dst in runs:
            table.take(index[src], out=memory[dst], mode="clip")
        return
    src = m.amem[:, s.at("src", "n")].view(np.uint16)
    index = src if offsets is None else np.add(src, offsets, dtype=np.int32)
    m.amem[:, s.at("dst", "n")] = expansion.take(index.T, mode="clip").T  # in memory order: stored as one block


def _table_runs(m: Machine, s: Step) -> tuple[tuple[np.ndarray, slice, slice], ...] | None:
    """(expansion, source, destination) of each of machine.Tables.runs, if the operands are ranges,
    the same or apart (a take into a range it still reads would read what it wrote); else None."""
    src, dst = s.at("src", "n"), s.at("dst", "n")
    if not (isinstance(src, slice) and isinstance(dst, slice)) or (
            src != dst and src.start < dst.stop and dst.start < src.stop):
        return None
    runs = m.tables.runs(tuple(_table_numbers(m, s).tolist()), s.args["up"])
    return tuple((expansion, slice(src.start + a, src.start + b), slice(dst.start + a, dst.start + b))
                 for expansion, a, b in runs)


def _expansion(m: Machine, s: Step) -> tuple[np.ndarray, np.ndarray | None]:
    """The expansion a VACT reads and each element's offset into it (None: all at 0), worked out
    once per step: the tables are the program's, as fixed as its weight memory."""
    numbers = _table_numbers(m, s)
    if (numbers == s.args["table"]).all():  # one table (or no element at all)
        return m.tables.lookup(s.args["table"], s.args["up"]), None
    return m.tables.joined(tuple(numbers.tolist()), s.args["up"])


def _table_numbers(m: Machine, s: Step) -> np.ndarray:
    """The table each element of a VACT (a fused one's members') reads."""
    return s.decoded(m, "table", lambda one: np.full(one.args["n"], _table_number(m, one)))


@semantics("VRELU")
def _vrelu(m: Machine, s: Step) -> None:
    m.amem[:, s.at("dst", "n")] = numerics.relu(m.amem[:, s.at("src", "n")])


@semantics("VMUL")
def _vmul(m: Machine, s: Step) -> None:
    a = s.args
    src_a, src_b = m.amem[:, s.at("a", "n")], m.amem[:, s.at("b", "n")]
    m.amem[:, s.at("dst", "n")] = numerics.multiply(src_a, src_b, a["shift"])


@semantics("VADD")
def _vadd(m: Machine, s: Step) -> None:
    m.amem[:, s.at("dst", "n")] = numerics.add(m.amem[:, s.at("a", "n")], m.amem[:, s.at("b", "n")])


@semantics("VSUB")
def _vsub(m: Machine, s: Step) -> None:
    m.amem[:, s.at("dst", "n")] = numerics.subtract(m.amem[:, s.at("a", "n")], m.amem[:, s.at("b", "n")])


@semantics("VCLAMP")
def _vclamp(m: Machine, s: Step) -> None:
    a = s.args
    m.amem[:, s.at("dst", "n")] = numerics.clamp(m.amem[:, s.at("src", "n")], a["lo"], a["hi"])


@semantics("VSCALE")
def _vscale(m: Machine, s: Step) -> None:
    """The 16-bit `mult` field is an unsigned magnitude: a scale change never flips the sign."""
    a = s.args
    src = m.amem[:, s.at("src", "n")].astype(np.int64)
    m.amem[:, s.at("dst", "n")] = numerics.sat_act(numerics.round_shift(src * a["mult"], a["shift"]))


@semantics("VMOV")
def _vmov(m: Machine, s: Step) -> None:
    m.amem[:, s.at("dst", "n")] = m.amem[:, s.at("src", "n")]


@semantics("VRMAX")
def _vrmax(m: Machine, s: Step) -> None:
    m.amem[:, s.at("dst", 1)] = numerics.reduce_max(m.amem[:, s.at("src", "n")])


@semantics("VSUBS")
def _vsubs(m: Machine, s: Step) -> None:
    m.amem[:, s.at("dst", "n")] = numerics.subtract(m.amem[:, s.at("a", "n")], m.amem[:, s.at("s", 1)])


@semantics("VRSUM")
def _vrsum(m: Machine, s: Step) -> None:
    m.acc[:, s.at("dst", 1)] = numerics.reduce_sum(m.amem[:, s.at("src", "n")])


@semantics("VNORM")
def _vnorm(m: Machine, s: Step) -> None:
    m.amem[:, s.at("dst", "n")] = numerics.divide(m.amem[:, s.at("src", "n")], m.acc[:, s.at("s", 1)])


@semantics("VRSS")
def _vrss(m: Machine, s: Step) -> None:
    a = s.args
    m.acc[:, s.at("dst", 1)] = numerics.root_sum_squares(m.amem[:, s.at("src", "n")], a["add"])


@semantics("VLOG")
def _vlog(m: Machine, s: Step) -> None:
    m.amem[:, s.at("dst", 1)] = numerics.log_sum(_table(m, s), m.acc[:, s.at("src", 1)])


@semantics("VPOW")
def _vpow(m: Machine, s: Step) -> None:
    a = s.args
    m.amem[:, s.at("dst", "n")] = numerics.mantissa_power(_table(m, s), m.amem[:, s.at("src", "n")],
                                                               a["pow"], a["mult"], a["shift"], a["off"])


@semantics("LOOP")
def _loop(m: Machine, s: Step) -> None:
    """Nothing to compute: the sequencer expanded the loop before execution (isa.loops)."""


def _check_complete() -> None:
    """Every instruction of the table has exactly one semantics (registration rejects doubles)."""
    missing = set(BY_MNEMONIC) - set(SEMANTICS)
    assert not missing, f"instructions without semantics: {sorted(missing)}"


_check_complete()

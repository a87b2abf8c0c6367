"""Hypothesis strategies for isa tests: instructions of every op and whole valid Programs."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from isa.container import REGION_SECTIONS, Loc, MemoryMap, Program, Region
from isa.encoding import Instruction
from isa.numerics import ACT_MAX, ACT_MIN, TABLE_SEGMENTS
from isa.table import OPS, Op
from isa.target import TARGETS
from isa.tensors import MAX_SCALE, MIN_SCALE, TensorDesc

names = st.text(max_size=12)
small = st.integers(0, 1 << 20)


def instructions_of(op: Op) -> st.SearchStrategy[Instruction]:
    args = [st.integers(f.low, f.high) for f in op.fields]
    return st.tuples(*args).map(lambda values: Instruction(op, values))


instructions = st.sampled_from(OPS).flatmap(instructions_of)

descs = st.builds(
    TensorDesc, names, st.lists(st.integers(1, 40), max_size=4).map(tuple),  # within MAX_HOST_ELEMENTS
    st.floats(min_value=MIN_SCALE, max_value=MAX_SCALE, allow_nan=False, allow_infinity=False), small)


@st.composite
def regions(draw, wmem: int) -> tuple[Region, ...]:
    chosen = draw(st.lists(st.sampled_from(sorted(REGION_SECTIONS)), unique=True))
    out = []
    for name in chosen:
        data = draw(st.binary(max_size=200))
        out.append(Region(name, draw(st.integers(0, wmem - len(data))), data))
    return tuple(out)


@st.composite
def locs(draw, count: int) -> tuple[Loc, ...]:
    pcs = sorted(draw(st.lists(st.integers(0, count), max_size=6)))
    ints = st.integers(-1, 1000)
    return tuple(Loc(pc, draw(names), draw(ints), draw(ints), draw(ints), draw(names)) for pc in pcs)


TABLE_NAMES = ("sigmoid", "tanh", "hardsigmoid(0.2,0.5)", "exp", 'any "name" at all')
tables = st.lists(st.sampled_from(TABLE_NAMES), unique=True, max_size=4).flatmap(
    lambda names: st.fixed_dictionaries({name: st.lists(st.integers(ACT_MIN, ACT_MAX), min_size=TABLE_SEGMENTS + 1,
                                                        max_size=TABLE_SEGMENTS + 1)
                                         .map(lambda v: np.array(v, dtype=np.int64)) for name in names}))


@st.composite
def programs(draw) -> Program:
    target = draw(st.sampled_from(sorted(TARGETS.values(), key=repr)))
    code = tuple(draw(st.lists(instructions, max_size=20)))
    return Program(
        target=target, model=draw(names),
        inputs=tuple(draw(st.lists(descs, max_size=3))), outputs=tuple(draw(st.lists(descs, max_size=3))),
        memory=MemoryMap(*(draw(small) for _ in range(5))), code=code,
        regions=draw(regions(target.weight_mem_bytes)), tables=draw(tables), locs=draw(locs(len(code))))


def sample_program() -> Program:
    """A small fixed program with every kind of content, for the example-based tests."""
    from isa.numerics import activation_table
    from isa.target import Target

    code = (Instruction.make("LOAD", dst=0, src=0, n=490),
            Instruction.make("MVB", acc=0, w=0, x=0, rows=12, cols=490, bias=0x1800),
            Instruction.make("VRQ", dst=490, src=0, n=12, q=0x1830),
            Instruction.make("VACT", dst=502, src=490, n=12, table=1),
            Instruction.make("STORE", dst=490, src=502, n=12))
    return Program(
        target=Target(), model="kws", inputs=(TensorDesc("x", (1, 49, 10), 0.0123, 0),),
        outputs=(TensorDesc("y", (1, 12), 3.0517578125e-05, 490),), memory=MemoryMap(502, 514, 12, 0x1860, 0),
        code=code, regions=(Region("weights", 0, bytes(range(256)) * 24), Region("biases", 0x1800, bytes(96))),
        tables={f: activation_table(f) for f in ("sigmoid", "tanh")},
        locs=(Loc(0, "input", 0, -1, 0, "load x"), Loc(1, "fc", 1, -1, 0, "matvec"),
              Loc(4, "output", 2, -1, 0, "store y")))

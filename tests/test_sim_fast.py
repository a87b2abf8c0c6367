"""The fast paths of the simulator against the slow ones, bit for bit.

A warm run executes fused steps (runtime_sim.fusion) and reads VACT from a table's expansion
(machine.Tables); a batch runs all samples through each step together. Each must give what
one instruction at a time in program order gives, and every run the same statistics and trace.
"""

from __future__ import annotations

import numpy as np
import pytest

from compiler.pipeline import compile_model
from isa import numerics
from isa.numerics import activation_table
from runtime_sim import Simulator
from runtime_sim.machine import Machine, Tables
from runtime_sim.semantics import RUNS_FROM

from models import lstm_model, recurrent_model
from sim_helpers import I, make_program, requant_bytes, weights_bytes
from toolchain import random_inputs

AMEM, ACC = 48, 16  # a small window, so random instructions collide often


def _random_program(seed: int, count: int = 300):
    """Fusable instructions on overlapping addresses: every kind of hazard, many times over."""
    rng = np.random.default_rng(seed)

    def span(limit: int, most: int = 8) -> tuple[int, int]:
        n = int(rng.integers(1, most + 1))
        return int(rng.integers(0, limit - n + 1)), n

    def vector() -> object:
        (dst, n), (a, _), (b, _) = span(AMEM), span(AMEM), span(AMEM)
        a, b = min(a, AMEM - n), min(b, AMEM - n)
        kind = rng.integers(9)
        return [lambda: I("VADD", dst=dst, a=a, b=b, n=n), lambda: I("VSUB", dst=dst, a=a, b=b, n=n),
                lambda: I("VMUL", dst=dst, a=a, b=b, n=n, shift=int(rng.integers(0, 3)) * 7),
                lambda: I("VMOV", dst=dst, src=a, n=n), lambda: I("VRELU", dst=dst, src=a, n=n),
                lambda: I("VCLAMP", dst=dst, src=a, n=n, lo=-900, hi=int(rng.choice([700, 900]))),
                lambda: I("VSCALE", dst=dst, src=a, n=n, mult=20000, shift=int(rng.choice([14, 15]))),
                lambda: I("VACT", dst=dst, src=a, n=n, table=int(rng.integers(2)), up=int(rng.integers(2))),
                product][kind]()

    def product() -> object:
        acc, rows = span(ACC)
        x, cols = span(AMEM)
        kind = ["MV", "MVB", "MVA", "VRQ", "VRQA"][rng.integers(5)]
        if kind.startswith("VRQ"):
            extra = {"add": min(x, AMEM - rows)} if kind == "VRQA" else {}
            return I(kind, dst=min(x, AMEM - rows), src=acc, n=rows, q=512 + 4 * int(rng.integers(0, 8)), **extra)
        bias = {"bias": 256 + 4 * int(rng.integers(0, 8))} if kind == "MVB" else {}
        return I(kind, acc=acc, w=int(rng.integers(0, 128)), x=x, rows=rows, cols=cols, **bias)

    weights = rng.integers(-128, 128, 256, dtype=np.int8).tobytes()
    weights += rng.integers(-5000, 5000, 64, dtype=np.int32).tobytes()
    weights += requant_bytes(rng.integers(1 << 14, 1 << 15, 16), rng.integers(10, 20, 16))
    code = [I("LOAD", dst=0, src=0, n=AMEM)] + [vector() for _ in range(count)]
    return make_program(code, weights=weights, inputs={"x": (0, (AMEM,))}, outputs={"y": (0, (AMEM,))})


def _executed(sim: Simulator, host: np.ndarray, fused: bool) -> Machine:
    m = sim.machine(len(host))
    m.host[:, :host.shape[1]] = host
    sim.execute(m, fused=fused)
    return m


@pytest.mark.parametrize("seed", range(6))
def test_fused_execution_equals_program_order_on_colliding_instructions(seed):
    sim = Simulator(_random_program(seed), trace=False)
    host = np.random.default_rng(seed).integers(-3000, 3000, (3, AMEM)).astype(np.int16)
    fast, slow = _executed(sim, host, True), _executed(sim, host, False)
    assert len(sim._plan.fused) < len(sim._plan.steps), "nothing fused: the test would prove nothing"
    np.testing.assert_array_equal(fast.amem, slow.amem)
    np.testing.assert_array_equal(fast.acc, slow.acc)


@pytest.mark.parametrize("samples", [1, 4, 5, 11])
def test_a_batch_across_chunks_equals_its_single_runs_on_every_fusable_kind(samples, monkeypatch):
    """Every product and vector kind the batch fuses, on colliding addresses (in place and
    gathered operands), batched over several chunks (the last one partial) against one sample
    at a time."""
    monkeypatch.setattr("runtime_sim.simulator.CHUNK", 4)
    sim = Simulator(_random_program(7), trace=False)
    x = np.random.default_rng(samples).integers(-3000, 3000, (samples, AMEM)).astype(np.float32)
    batch = sim.run({"x": x}, batch=True)
    singles = np.stack([sim.run({"x": one}).raw_outputs["y"] for one in x])
    np.testing.assert_array_equal(batch.raw_outputs["y"], singles)


_VACTS = [(100 + 8 * k, 8 * k, 8, k % 2, 1) for k in range(4)]  # (dst, src, n, table, up): apart, tables alternating
_VACTS += [(40, 40, 8, 0, 0), (48, 48, 8, 1, 0), (64, 59, 8, 1, 2)]  # in place, in place, overlapping shifted


def _tables_program():
    """VACTs of independent address ranges, the tables alternating, so that their fused steps
    read several tables' runs of addresses; in place, and one overlapping its source shifted."""
    code = [I("LOAD", dst=0, src=0, n=72)]
    code += [I("VACT", dst=dst, src=src, n=n, table=table, up=up) for dst, src, n, table, up in _VACTS]
    code += [I("STORE", dst=100, src=0, n=132)]
    return make_program(code, inputs={"x": (0, (72,))}, outputs={"y": (100, (132,))})


def _tables_expected(program, x: np.ndarray) -> np.ndarray:
    """The VACTs in program order, each element through numerics.table_lookup, in int64."""
    memory = np.zeros((len(x), 132), np.int64)
    memory[:, :72] = x
    tables = list(program.tables.values())
    for dst, src, n, table, up in _VACTS:
        shifted = numerics.sat_act(np.left_shift(memory[:, src:src + n], up))
        memory[:, dst:dst + n] = numerics.table_lookup(tables[table], shifted)
    return memory


def test_a_batch_reads_each_tables_run_at_once_and_equals_single_runs_and_the_lookup(monkeypatch):
    """From RUNS_FROM samples on, a VACT fused across tables takes each table's run straight into
    memory; chunks of that size and a partial one (fewer samples: one take through the joined
    tables) against single runs and the interpolation of every element."""
    monkeypatch.setattr("runtime_sim.simulator.CHUNK", RUNS_FROM)
    program = _tables_program()
    sim = Simulator(program, trace=False)
    mixed = [s for s in sim._plan.fused if s.instr.mnemonic == "VACT" and len({m.args["table"] for m in s.members}) > 1]
    assert mixed and all(isinstance(s.places["src"], slice) for s in mixed), "no step reads several tables' runs"
    x = np.random.default_rng(4).integers(-40000, 40000, (2 * RUNS_FROM + 3, 72)).clip(-32768, 32767)
    batch = sim.run({"x": x.astype(np.float32)}, batch=True).raw_outputs["y"]
    np.testing.assert_array_equal(batch, _tables_expected(program, x))
    singles = np.stack([sim.run({"x": one}).raw_outputs["y"] for one in x[-RUNS_FROM - 5:].astype(np.float32)])
    np.testing.assert_array_equal(singles, batch[-RUNS_FROM - 5:])


@pytest.mark.parametrize("samples", [1, RUNS_FROM])
def test_a_vact_of_no_elements_changes_nothing(samples):
    code = [I("LOAD", dst=0, src=0, n=8), I("VACT", dst=8, src=0, n=0, table=1, up=0), I("STORE", dst=8, src=0, n=8)]
    sim = Simulator(make_program(code, inputs={"x": (0, (8,))}, outputs={"y": (8, (8,))}), trace=False)
    x = np.random.default_rng(1).integers(-3000, 3000, (samples, 8)).astype(np.float32)
    np.testing.assert_array_equal(sim.run({"x": x}, batch=True).raw_outputs["y"], x)


def _products_program():
    """Three MVBs on one x, their accumulators not side by side (a fused step's gathered place),
    two MVs on another, side by side (a slice: written in place), an MVA; VRQs reading gathered
    accumulators and a VRQA reading adjacent ones, with their integer results expected."""
    rng = np.random.default_rng(5)
    w = rng.integers(-128, 128, (6, 12, 8))
    bias = rng.integers(-(1 << 31), 1 << 31, (3, 8))
    mult, shift = rng.integers(1 << 14, 1 << 15, 32), rng.integers(8, 24, 32)
    code = [I("LOAD", dst=0, src=0, n=24)]
    code += [I("MVB", acc=acc, w=96 * k, x=0, rows=8, cols=12, bias=1024 + 32 * k) for k, acc in enumerate((0, 20, 8))]
    code += [I("MV", acc=32 + 8 * k, w=96 * (3 + k), x=12, rows=8, cols=12) for k in range(2)]
    code += [I("MVA", acc=32, w=96 * 5, x=0, rows=8, cols=12),
             I("VRQ", dst=100, src=0, n=8, q=2048), I("VRQ", dst=108, src=20, n=8, q=2080),
             I("VRQA", dst=116, src=32, n=16, q=2112, add=100),
             I("STORE", dst=24, src=100, n=32)]
    weights = weights_bytes(w.reshape(-1, 8))
    weights += bytes(1024 - len(weights)) + bias.astype("<i4").tobytes()
    weights += bytes(2048 - len(weights)) + requant_bytes(mult, shift)
    program = make_program(code, weights=weights, inputs={"x": (0, (24,))}, outputs={"y": (24, (32,))})

    def expected(x: np.ndarray) -> np.ndarray:
        x1, x2 = x[:, :12].astype(np.int64), x[:, 12:].astype(np.int64)
        gathered = np.concatenate([bias[0] + x1 @ w[0], bias[1] + x1 @ w[1]], axis=1)
        rq = _integer_requantize(gathered, mult[:16], shift[:16])
        adjacent = np.concatenate([x2 @ w[3] + x1 @ w[5], x2 @ w[4]], axis=1)
        return np.concatenate([rq, _integer_requantize(adjacent, mult[16:], shift[16:], rq)], axis=1)

    return program, expected


def test_fused_products_and_requantisations_equal_the_integer_definitions():
    program, expected = _products_program()
    sim = Simulator(program, trace=False)
    kinds = {(s.instr.mnemonic, name, isinstance(place, slice)) for s in sim._plan.fused if s.members
             for name, place in s.places.items() if name in ("acc", "src")}
    assert {("MVB", "acc", False), ("MV", "acc", True), ("VRQ", "src", False)} <= kinds
    x = np.random.default_rng(2).integers(-32768, 32768, (5, 24)).astype(np.float32)
    np.testing.assert_array_equal(sim.run({"x": x}, batch=True).raw_outputs["y"], expected(x))


def _compiled(op: str):
    model = lstm_model(6, 1, 5, 20, outputs=("Y_h",)) if op == "LSTM" else recurrent_model("GRU", 6, 1, 5, 20)
    inputs = random_inputs(model, seed=3, samples=5)
    return compile_model(model, calibration=inputs).program, inputs


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_a_warm_run_equals_a_cold_one_and_program_order(op):
    program, inputs = _compiled(op)
    one = {k: v[0] for k, v in inputs.items()}
    sim = Simulator(program)
    cold, warm = sim.run(one), sim.run(one)
    for name in cold.outputs:
        np.testing.assert_array_equal(warm.outputs[name], cold.outputs[name])
        np.testing.assert_array_equal(warm.raw_outputs[name], cold.raw_outputs[name])
    assert warm.stats == cold.stats and warm.trace == cold.trace and len(warm.trace) == warm.stats["instructions"]
    m = sim.machine(1)
    for d in program.inputs:
        m.write_host(d, numerics.quantize(inputs[d.name][:1], d.scales()))
    sim.execute(m, fused=False)
    for d in program.outputs:
        np.testing.assert_array_equal(m.read_host(d)[0], warm.raw_outputs[d.name])


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_a_batch_equals_its_single_runs(op):
    program, inputs = _compiled(op)
    sim = Simulator(program, trace=False)
    batch = sim.run(inputs, batch=True)
    singles = [sim.run({k: v[i] for k, v in inputs.items()}) for i in range(5)]
    for name, raw in batch.raw_outputs.items():
        np.testing.assert_array_equal(raw, np.stack([s.raw_outputs[name] for s in singles]))
    assert all(s.stats == batch.stats for s in singles)


@pytest.mark.parametrize("up", [0, 1, 5])
def test_a_table_expansion_is_the_interpolation_of_every_input(up):
    table = activation_table("tanh")
    x = np.arange(numerics.ACT_MIN, numerics.ACT_MAX + 1).astype(np.int16)
    expected = numerics.table_lookup(table, numerics.sat_act(np.left_shift(x.astype(np.int64), up)))
    np.testing.assert_array_equal(Tables([table]).lookup(0, up)[x], expected)


def test_the_arithmetic_shortcuts_match_the_general_forms():
    v = np.random.default_rng(0).integers(-(1 << 40), 1 << 40, 4000)
    for shift in range(0, 63, 5):
        np.testing.assert_array_equal(numerics.round_shift(v, shift), numerics.round_shift(v, np.full(v.shape, shift)))
    np.testing.assert_array_equal(numerics.saturate(v, -(1 << 20), 1 << 30), np.clip(v, -(1 << 20), 1 << 30))


def _integer_requantize(acc, mult, shift, addend=0):
    """requantize(_add) as the ISA defines it, in int64 throughout."""
    scaled = numerics.round_shift(numerics.sat_acc(acc) * mult, shift)
    return numerics.sat_act(scaled + np.asarray(addend, np.int64))


EDGES = [numerics.ACC_MIN - 1, numerics.ACC_MIN, -1, 0, 1, numerics.ACC_MAX, numerics.ACC_MAX + 1, 1 << 50, -(1 << 62)]


@pytest.mark.parametrize("rows", [6, numerics.EINSUM_FROM])
@pytest.mark.parametrize("shifts", [(0, 64), (12, 20), (28, 34)])
def test_requantisation_in_float_equals_the_integer_definition(shifts, rows):
    """The float form, with the accumulator's saturation skipped where it is subsumed, against the
    int64 definition: every accumulator edge, the usual shifts (where the skip applies) and the
    extremes (where it does not), any sign of multiplier, int16 and int64 addends; a few samples
    and a batch's many (scaled through einsum), sample-last as the simulator holds them."""
    rng = np.random.default_rng(shifts[0])
    for _ in range(200 if rows < numerics.EINSUM_FROM else 10):
        n = int(rng.integers(1, 24))
        acc = np.asfortranarray(rng.integers(-(1 << 62), 1 << 62, (rows, n)) >> int(rng.integers(0, 62)))
        acc[0] = rng.choice(EDGES, n)
        mult, shift = rng.integers(-(1 << 15), 1 << 15, n), rng.integers(*shifts, n)
        addend = rng.integers(numerics.ACT_MIN, numerics.ACT_MAX + 1, (rows, n)).astype(np.int16)
        addend[1] = rng.choice([numerics.ACT_MIN, numerics.ACT_MAX], n)
        scaling = numerics.Scaling.of(mult, shift)
        expected, with_addend = _integer_requantize(acc, mult, shift), _integer_requantize(acc, mult, shift, addend)
        np.testing.assert_array_equal(numerics.requantize(acc, mult, shift), expected)
        np.testing.assert_array_equal(numerics.requantize_with(acc, scaling), expected)
        np.testing.assert_array_equal(numerics.requantize_add_with(acc, scaling, addend), with_addend)
        np.testing.assert_array_equal(numerics.requantize_add(acc, mult, shift, addend.astype(np.int64)), with_addend)


def test_int16_operands_take_the_narrow_path_with_the_same_values():
    rng = np.random.default_rng(1)
    a, b = (rng.integers(numerics.ACT_MIN, numerics.ACT_MAX + 1, 5000).astype(np.int16) for _ in range(2))
    low, high = numerics.ACT_MIN, numerics.ACT_MAX
    a[:4], b[:4] = [low, low, high, -1], [low, high, 1, 1]
    wide_a, wide_b = a.astype(np.int64), b.astype(np.int64)
    for shift in (0, 1, 15, 18, 30, 31, 40, 63):
        expected = numerics.sat_act(numerics.round_shift(wide_a * wide_b, shift))
        np.testing.assert_array_equal(numerics.multiply(a, b, shift), expected)
    np.testing.assert_array_equal(numerics.add(a, b), numerics.sat_act(wide_a + wide_b))
    np.testing.assert_array_equal(numerics.subtract(a, b), numerics.sat_act(wide_a - wide_b))
    assert numerics.multiply(a, b, 15).dtype == np.int32 and numerics.multiply(wide_a, wide_b, 15).dtype == np.int64

"""Hand-built programs for the simulator tests: no compiler, just Program records and packed bytes."""

from __future__ import annotations

import numpy as np

from isa import container
from isa.container import MemoryMap, Program, Region
from isa.encoding import Instruction
from isa.numerics import activation_table, quantize_multiplier
from isa.target import Target
from isa.tensors import TensorDesc
from runtime_sim import Simulator
from runtime_sim.machine import Machine

I = Instruction.make  # noqa: E741  (reads like assembly in the tests)
RNG = np.random.default_rng(1234)
B = 3  # every test runs a batch: rows of the state must stay independent
STEPS, FEATURES, HIDDEN = 4, 10, 8  # tiny_rnn


def weights_bytes(w_kr: np.ndarray, weight_bits: int = 8) -> bytes:
    """W[k, r] laid out k-major then row, little-endian signed."""
    return np.ascontiguousarray(w_kr).astype(f"<i{weight_bits // 8}").tobytes()


def requant_bytes(mult: np.ndarray, shift: np.ndarray) -> bytes:
    return np.stack([mult, shift], axis=1).astype("<i2").tobytes()


def make_program(code: list[Instruction], *, inputs: dict[str, tuple] | None = None,
                 outputs: dict[str, tuple] | None = None, weights: bytes = b"", biases: bytes = b"",
                 bias_base: int = 0, host: int = 4096, target: Target | None = None,
                 scale: float = 1.0) -> Program:
    """A program whose inputs and outputs are `{name: (host address, shape)}`, weights at wmem 0."""
    regions = tuple(r for r in (Region("weights", 0, weights), Region("biases", bias_base, biases)) if r.data)
    return Program(
        target=target or Target(),
        model="hand-built",
        inputs=tuple(TensorDesc(n, tuple(shape), scale, a) for n, (a, shape) in (inputs or {}).items()),
        outputs=tuple(TensorDesc(n, tuple(shape), scale, a) for n, (a, shape) in (outputs or {}).items()),
        memory=MemoryMap(host=host, amem=0, acc=0, wmem=len(weights), cbm=0),
        code=tuple(code),
        regions=regions,
        tables={f: activation_table(f) for f in ("sigmoid", "tanh")},
    )


def run_state(prog: Program, host_values: np.ndarray) -> Machine:
    """Execute `prog` on a batch of raw host-memory images and return the final machine state."""
    sim = Simulator(prog)
    m = sim.machine(len(host_values))
    m.host[:, :host_values.shape[1]] = host_values
    sim.execute(m)
    return m


def host_images(n: int, lo: int = -32768, hi: int = 32768) -> np.ndarray:
    return RNG.integers(lo, hi, (B, n)).astype(np.int16)


def round_shift(v: np.ndarray, shift: np.ndarray | int) -> np.ndarray:
    v, shift = np.asarray(v, np.int64), np.asarray(shift, np.int64)
    return (v + np.where(shift > 0, 1 << np.maximum(shift - 1, 0), 0)) >> shift


def sat16(v: np.ndarray) -> np.ndarray:
    return np.clip(v, -32768, 32767)


def tiny_rnn() -> container.Program:
    """h = tanh(sum_t W_t x_t): four accumulating MVs, requantise to Q3.12, tanh, store."""
    rng = np.random.default_rng(7)
    w = rng.integers(-128, 128, (STEPS, FEATURES, HIDDEN))
    mult, shift = quantize_multiplier(1 / 64)
    code = [I("LOAD", dst=0, src=0, n=STEPS * FEATURES),
            I("MV", acc=0, w=0, x=0, rows=HIDDEN, cols=FEATURES)]
    code += [I("MVA", acc=0, w=t * FEATURES * HIDDEN, x=t * FEATURES, rows=HIDDEN, cols=FEATURES)
             for t in range(1, STEPS)]
    code += [I("VRQ", dst=100, src=0, n=HIDDEN, q=1024), I("VACT", dst=100, src=100, n=HIDDEN, table=1),
             I("STORE", dst=STEPS * FEATURES, src=100, n=HIDDEN)]
    weights = weights_bytes(w.reshape(-1, HIDDEN))
    q = requant_bytes(np.full(HIDDEN, mult), np.full(HIDDEN, shift))
    return make_program(code, inputs={"x": (0, (STEPS, FEATURES))}, outputs={"h": (STEPS * FEATURES, (HIDDEN,))},
                        weights=weights + bytes(1024 - len(weights)) + q, host=64, scale=1 / 4096)


def samples(count: int) -> np.ndarray:
    return np.random.default_rng(3).uniform(-1, 1, (count, STEPS, FEATURES)).astype(np.float32)

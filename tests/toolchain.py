"""Compile a model, run it on the simulator, and check everything a compiled program owes us.

Every simulator-backed test goes through `run_checked`: the golden reference must match the
simulation bit for bit, the trace must obey SPEC section 2, and the program must survive
objdump -> as byte for byte, and the report must count the MACs the simulator counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx.reference import ReferenceEvaluator

from compiler.passes.compress import Compression
from compiler.pipeline import Compiled, compile_model
from compiler.reference import reference_outputs
from isa.assembler import assemble
from isa.container import to_bytes
from isa.listing import disassemble
from isa.target import Target
from runtime_sim import Simulator

from report_checks import check_against_stats
from trace_audit import audit_trace


@dataclass
class Checked:
    compiled: Compiled
    outputs: dict[str, np.ndarray]
    raw: dict[str, np.ndarray]
    stats: dict


def without_tuning(monkeypatch) -> None:
    """Compile with each recurrent layer's rule-of-thumb schedule (passes/tune.py off): for tests
    of the rules themselves, and for comparing a tuned program with the rule's."""
    monkeypatch.setattr("compiler.pipeline.tune_schedules", lambda graph, target, log: graph)


def random_inputs(model: onnx.ModelProto, seed: int, samples: int | None = None, scale: float = 1.0) -> dict:
    """Normal random arrays for every graph input (with a leading samples axis if asked)."""
    rng = np.random.default_rng(seed)
    inits = {i.name for i in model.graph.initializer}
    out = {}
    for value in model.graph.input:
        if value.name in inits:
            continue
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        lead = [samples] if samples else []
        out[value.name] = (rng.standard_normal(lead + shape) * scale).astype(np.float32)
    return out


def run_checked(model: onnx.ModelProto, inputs: dict[str, np.ndarray], target: Target | None = None,
                calibration: dict | None = None, shapes: dict | None = None,
                compression: Compression | None = None, streaming: bool = False) -> Checked:
    """Compile, simulate `inputs` (one sample), and check reference, trace and round trip.

    A streaming program takes one frame of `inputs` (its first run: zero state)."""
    calibration = calibration or {k: v[None] for k, v in inputs.items()}
    compiled = compile_model(model, target or Target(), calibration, shapes, compression=compression,
                             streaming=streaming)
    blob = to_bytes(compiled.program)
    assert to_bytes(assemble(disassemble(compiled.program))) == blob, "objdump -> as changed the program"
    result = Simulator(compiled.program).run(inputs)
    expected = reference_outputs(compiled.graph, {k: v[None] for k, v in inputs.items()})
    for name, value in expected.items():
        np.testing.assert_array_equal(result.raw_outputs[name], value[0], err_msg=f"{name} is not bit-exact")
    audit_trace(result.trace, result.stats, compiled.program.target)
    check_against_stats(compiled, result.stats)
    return Checked(compiled, result.outputs, result.raw_outputs, result.stats)


TOLERANCE = {8: 0.03, 16: 0.003}  # docs/numerics.md; measured worst: 0.019 and 0.0014


def float_outputs(model, inputs: dict) -> dict[str, np.ndarray]:
    names = [o.name for o in model.graph.output]
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001  (ONNX Runtime refuses some valid variants, e.g. LSTM layout=1)
        return dict(zip(names, ReferenceEvaluator(model).run(None, inputs)))
    return dict(zip(names, session.run(None, inputs)))


def assert_close(model, inputs: dict, bits: int = 8, calibration: dict | None = None, shapes: dict | None = None,
                 target: Target | None = None, compression: Compression | None = None):
    """Simulated outputs within the documented tolerance of the float model's; returns the checks.
    `target` (default: the default target with `bits`-bit weights) must have `bits`-bit weights;
    `compression` suits only a model whose weights the codebooks hold exactly (fine-tuned)."""
    checked = run_checked(model, inputs, target or Target(weight_bits=bits), calibration, shapes, compression)
    for name, want in float_outputs(model, inputs).items():
        error = float(np.max(np.abs(checked.outputs[name] - want)))
        bound = TOLERANCE[bits] * max(1.0, float(np.max(np.abs(want))))
        assert error <= bound, f"{name}: error {error} above {bound}"
    return checked

"""One point of a sweep: compile, simulate every sample bit-accurately, and measure.

This is the function a Dask worker runs. It takes everything it needs as values (the model, the
calibration and data arrays, the classes to score against), never paths, so a worker on another
machine needs no shared file system. A point the chip cannot take (a model that does not fit the
target's memories, or, chip only, one with a node the chip cannot run; an input the program
refuses) is a failed row, not a failed sweep: the
compiler and the simulator say why with an RnnaccelError, and the row keeps that line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from compiler.compiled import Compiled
from compiler.passes.budget import DEFAULT_AGREEMENT, Budget
from compiler.passes.compress import Compression
from compiler.pipeline import compile_model
from compiler.sweep.grid import Point
from isa.errors import RnnaccelError
from runtime_sim.evaluate import check_label_range, class_count, evaluate, select_inputs
from runtime_sim.partitioned import simulator_for
from runtime_sim.simulator import check_inputs

COMPRESSION: dict[str, Compression | Budget | None] = {
    "none": None, "4": Compression(4), "3": Compression(3), "2": Compression(2),
    "auto": Budget(DEFAULT_AGREEMENT),
}


def compression_of(text: str) -> Compression | Budget | None:
    """A point's compression: a COMPRESSION name, or `auto:S` (grid.compression checked it)."""
    kind, _, share = text.partition(":")
    return Budget(float(share)) if share else COMPRESSION[kind]
STATS = ("cycles", "latency_us", "energy_uj", "tops_per_w", "mac_utilization", "weight_bytes_read")
REPORT = ("code_bytes", "stored_bytes", "fp32_bytes", "compression_ratio")
# `score` is the accuracy or the agreement (Scoring.metric)
MEASURES = ("score", *STATS, "weight_mem_used", "act_mem_used", *REPORT, "chip_mac_fraction")


@dataclass(frozen=True)
class Scoring:
    """How a point is scored: the classes each sample is scored against (the data's labels for
    `accuracy`, the float model's top-1 for `agreement`), and which arrays of the data are the
    labels and the program's input (runtime_sim.evaluate.select_inputs)."""

    metric: str
    classes: np.ndarray
    label_key: str
    input_key: str | None = None


def measure(point: Point, model: onnx.ModelProto, calibration: dict[str, np.ndarray] | None,
            data: dict[str, np.ndarray], scoring: Scoring) -> dict[str, object]:
    """The point's status and measures: `ok` with every field of MEASURES, or `failed` and why."""
    try:
        return {"status": "ok", "error": "", **_measured(point, model, calibration, data, scoring)}
    except RnnaccelError as exc:
        return {"status": "failed", "error": " ".join(str(exc).split())}


def _measured(point: Point, model: onnx.ModelProto, calibration: dict[str, np.ndarray] | None,
              data: dict[str, np.ndarray], scoring: Scoring) -> dict[str, object]:
    compiled = compile_model(model, point.target, calibration, compression=compression_of(point.compress),
                             chip_only=point.chip_only)
    sim = simulator_for(compiled.program, trace=False)
    inputs = select_inputs(sim.inputs, data, scoring.label_key, scoring.input_key)
    check_inputs(sim.inputs, inputs, batch=True)
    check_label_range(scoring.classes, scoring.label_key, class_count(sim.outputs))
    ev = evaluate(sim, inputs, scoring.classes)
    total = compiled.report["total"]
    return {"score": ev.chip_accuracy, **{k: ev.stats[k] for k in STATS}, **_memory_used(compiled),
            **{k: total[k] for k in REPORT}, "chip_mac_fraction": compiled.partition.chip_mac_fraction}


def _memory_used(compiled: Compiled) -> dict[str, int]:
    """Weight and activation memory the program takes, in bytes (a partitioned program's islands summed)."""
    programs = [island.compiled.program for island in compiled.islands] or [compiled.program]
    act_bytes = programs[0].target.act_bits // 8
    return {"weight_mem_used": sum(p.memory.wmem for p in programs),
            "act_mem_used": sum(p.memory.amem for p in programs) * act_bytes}

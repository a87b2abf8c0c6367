"""The compiler as one flat list of named steps: ONNX in, program, listing and report out."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from compiler.backend.emit import emit
from compiler.backend.report import build_report
from compiler.frontend.freeze import freeze
from compiler.frontend.limits import check_fits_target
from compiler.frontend.onnx_import import check_model, import_model, read_model, with_input_shapes
from compiler.ir import Graph
from compiler.passes.allocate import allocate
from compiler.passes.calibrate import calibrate, check_calibration, default_calibration
from compiler.passes.compress import Compression
from compiler.passes.interleave import interleave
from compiler.passes.quantize import quantize_graph
from compiler.passes.reroll import reroll
from compiler.passes.schedule import lower
from compiler.passes.streaming import frame_shapes, mark_streaming
from compiler.passes.trim import trim_sequence_outputs
from compiler.verify import verify
from isa.container import Program
from isa.target import Target


@dataclass(frozen=True)
class Compiled:
    graph: Graph  # quantised (and tiled): what the golden reference runs
    program: Program
    report: dict
    sources: tuple[Path, ...] = ()  # the files the model was read from: the model, then its external data


def compile_model(model: str | Path | onnx.ModelProto, target: Target | None = None,
                  calibration: dict[str, np.ndarray] | None = None,
                  shapes: dict[str, tuple[int, ...]] | None = None,
                  log: Callable[[str], None] = lambda message: None,
                  compression: Compression | None = None, streaming: bool = False,
                  consts: dict[str, list[str | float | int]] | None = None) -> Compiled:
    """Compile a model. Codebook `compression` is activation-aware only with real calibration data.

    `streaming` makes a program that takes one frame per run and keeps the recurrent state
    between runs (passes/streaming.py); `shapes` and `calibration` are still whole sequences.
    `consts` freezes graph inputs to values (freeze.py): they leave the program's inputs, and an
    `If` on them is decided at compile time.
    """
    target = target or Target()
    if isinstance(model, onnx.ModelProto):
        proto, name, sources = check_model(model), model.graph.name or "model", ()
    else:
        (proto, sources), name = read_model(model), Path(model).stem
    proto = freeze(proto, consts)
    graph = verify(import_model(proto, shapes))
    check_fits_target(graph, target, streaming)
    given = calibration is not None
    if not given:
        log("no --calibration given: calibrating on random N(0,1) inputs; give real samples for real ranges")
        calibration = default_calibration(graph)
    calib = calibrate(graph, check_calibration(graph, calibration))  # on whole sequences, before trimming
    if streaming:
        graph = verify(mark_streaming(import_model(with_input_shapes(proto, frame_shapes(graph)))))
    graph = verify(trim_sequence_outputs(graph))
    calib = calib.derived(graph)
    if compression is not None and not given:
        compression = dataclasses.replace(compression, activation_aware=False)
    graph = verify(quantize_graph(graph, calib, target, compression))
    kernel = lower(graph, target)
    kernel = interleave(kernel)
    kernel = reroll(kernel)
    kernel = allocate(kernel, target)
    program = emit(kernel, target, name)
    return Compiled(graph, program, build_report(graph, kernel, program), sources)


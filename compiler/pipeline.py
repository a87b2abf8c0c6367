"""The compiler as one flat list of named steps: ONNX in, program, listing and report out."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnx

from compiler.backend.emit import emit
from compiler.backend.report import build_report
from compiler.compiled import Compiled
from compiler.frontend.cells import recognise_cells
from compiler.frontend.freeze import freeze
from compiler.frontend.limits import check_fits_target
from compiler.frontend.onnx_import import check_model, finish_import, import_model, read_model, with_input_shapes
from compiler.frontend.partition import checked, host_list, placed_and_converted
from compiler.ir import Graph
from compiler.partitioned import (
    check_streaming_host,
    compile_islands,
    partitioned_program,
    partitioned_report,
)
from compiler.passes.allocate import allocate
from compiler.passes.calibrate import calibrate, check_calibration, default_calibration
from compiler.passes.compress import Compression
from compiler.passes.headroom import headroom_warnings
from compiler.passes.interleave import interleave
from compiler.passes.quantize import quantize_graph
from compiler.passes.reroll import reroll
from compiler.passes.schedule import lower
from compiler.passes.streaming import frame_shapes, mark_streaming
from compiler.passes.trim import trim_sequence_outputs
from compiler.verify import verify
from isa.errors import RnnaccelError
from isa.target import Target


def compile_model(model: str | Path | onnx.ModelProto, target: Target | None = None,
                  calibration: dict[str, np.ndarray] | None = None,
                  shapes: dict[str, tuple[int, ...]] | None = None,
                  log: Callable[[str], None] = lambda message: None,
                  compression: Compression | None = None, streaming: bool = False,
                  consts: dict[str, list[str | float | int]] | None = None, chip_only: bool = False) -> Compiled:
    """Compile a model: one chip program, or, when some nodes need the host, a partitioned
    program (docs/partitioning.md) unless `chip_only`. Codebook `compression` is
    activation-aware only with real calibration data.

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
    proto, notes = recognise_cells(proto)
    for note in notes:
        log(note)
    plan, builder = placed_and_converted(proto, shapes, target, streaming, compression)
    checked(plan)
    given = calibration is not None
    if not given:
        log("no --calibration given: calibrating on random N(0,1) inputs; give real samples for real ranges")
    if compression is not None and not given:
        compression = dataclasses.replace(compression, activation_aware=False)
    chip = partial(_compile_chip, target=target, compression=compression, streaming=streaming, log=log)
    if not plan.needs_host:
        graph = verify(finish_import(builder, proto))
        compiled = chip(proto, graph, name, calibration or default_calibration(graph.input_shapes))
        return dataclasses.replace(compiled, sources=sources, partition=plan)
    if chip_only:
        raise RnnaccelError(f"--chip-only: {host_list(plan)}")
    if streaming:
        check_streaming_host(plan, proto)
    inputs = {n: builder.shapes[n] for n in (v.name for v in proto.graph.input) if n in builder.shapes}
    samples = check_calibration(inputs, calibration) if given else default_calibration(inputs)
    islands = compile_islands(proto, plan, builder, samples,
                              lambda sub, calib: chip(sub, verify(import_model(sub)), sub.graph.name, calib))
    program = partitioned_program(name, proto, plan, builder, islands)
    return Compiled(None, program, partitioned_report(name, plan, islands), sources, tuple(islands), plan)


def _compile_chip(proto: onnx.ModelProto, graph: Graph, name: str, calibration: dict[str, np.ndarray],
                  target: Target, compression: Compression | None, streaming: bool,
                  log: Callable[[str], None]) -> Compiled:
    """One chip program from an imported graph: the whole model's, or one island's."""
    check_fits_target(graph, target, streaming, compression)
    calib = calibrate(graph, check_calibration(graph.input_shapes, calibration))  # whole sequences, before trimming
    if streaming:
        graph = verify(mark_streaming(import_model(with_input_shapes(proto, frame_shapes(graph)))))
    graph = verify(trim_sequence_outputs(graph))
    calib = calib.derived(graph)
    graph = verify(quantize_graph(graph, calib, target, compression))
    for line in headroom_warnings(graph, calib):
        log(line)
    kernel = lower(graph, target)
    kernel = interleave(kernel)
    kernel = reroll(kernel)
    kernel = allocate(kernel, target)
    program = emit(kernel, target, name)
    return Compiled(graph, program, build_report(graph, kernel, program))

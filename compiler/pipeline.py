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
from compiler.frontend.batchnorm_fold import fold_batch_norms
from compiler.frontend.cells import recognise_cells
from compiler.frontend.frames import one_frame_model
from compiler.frontend.freeze import freeze
from compiler.frontend.limits import check_fits_target
from compiler.frontend.onnx_import import check_model, finish_import, import_model, read_model, with_fixed_shapes
from compiler.frontend.partition import Partition, checked, host_list, placed_and_converted
from compiler.frontend.rechain import reroll_layers
from compiler.frontend.state import closed_loop_samples, describe, one_step, state_pairs
from compiler.ir import Graph
from compiler.ops.recurrent.bound import recurrence_bounds
from compiler.partitioned import (
    SplitState,
    check_streaming_host,
    compile_islands,
    island_streams,
    partitioned_program,
    partitioned_report,
    split_state,
)
from compiler.passes.allocate import allocate
from compiler.passes.budget import Budget, Choice, choose_compression, fewest_bytes
from compiler.passes.calibrate import Calibration, calibrate, check_calibration, default_calibration
from compiler.passes.compress import Compression
from compiler.passes.dead import drop_dead_copies
from compiler.passes.headroom import headroom_warnings
from compiler.passes.interleave import interleave
from compiler.passes.quantize import quantize_graph
from compiler.passes.reroll import reroll
from compiler.passes.schedule import lower
from compiler.passes.sink import sink_pointwise
from compiler.passes.streaming import StateBinding, check_frame_local, frame_shapes, mark_streaming, per_frame
from compiler.passes.trim import trim_sequence_outputs
from compiler.passes.tune import tune_schedules
from compiler.passes.widths import Widths, as_option
from compiler.verify import verify
from isa.errors import RnnaccelError
from isa.target import Target


def compile_model(model: str | Path | onnx.ModelProto, target: Target | None = None,
                  calibration: dict[str, np.ndarray] | None = None,
                  shapes: dict[str, tuple[int, ...]] | None = None,
                  log: Callable[[str], None] = lambda message: None,
                  compression: Compression | Budget | Widths | None = None, streaming: bool = False,
                  consts: dict[str, list[str | float | int]] | None = None, chip_only: bool = False,
                  states: dict[str, str] | None = None, state_outputs: bool = False) -> Compiled:
    """Compile a model: one chip program, or, when some nodes need the host, a partitioned
    program (docs/partitioning.md) unless `chip_only`. Codebook `compression` is
    activation-aware only with real calibration data; a `Budget` chooses each matrix's
    (passes/budget.py), `Widths` gives them by name.

    `streaming` makes a program that takes one frame per run and keeps the recurrent state
    between runs (passes/streaming.py); `shapes` and `calibration` are still whole sequences.
    `states` pairs a graph input with the graph output that carries the same state out
    (frontend/state.py; --streaming also finds a recurrent layer's): the model is calibrated
    closed loop, and with `streaming` each pair stays on chip between runs, its output read by
    the host only with `state_outputs`.
    `consts` freezes graph inputs to values (freeze.py): they leave the program's inputs, and an
    `If` on them is decided at compile time.
    """
    target = target or Target()
    if isinstance(model, onnx.ModelProto):
        proto, name, sources = check_model(model), model.graph.name or "model", ()
    else:
        (proto, sources), name = read_model(model), Path(model).stem
    proto = prepare(proto, consts, shapes, log)
    plan, builder = placed_and_converted(proto, shapes, target, streaming, fewest_bytes(compression))
    checked(plan)
    given = calibration is not None
    if not given:
        log("no --calibration given: calibrating on random N(0,1) inputs; give real samples for real ranges")
    if compression is not None and not given:
        compression = dataclasses.replace(compression, activation_aware=False)
    if isinstance(compression, Budget) and not given:
        log("--compress auto measures its budget on those random inputs: the widths it chooses say little "
            "about accuracy on real data")
    pairs = state_pairs(proto, states or {}, plan.shapes, find=streaming)
    if pairs:
        calibration = closed_loop_samples(proto, pairs, plan.shapes, calibration)
    state = _kept_state(plan, proto, pairs, streaming, state_outputs)
    for pairs_of, where in ((state.chip, "kept on chip between runs"), (state.host, "carried by the host"),
                            ({} if streaming else pairs, "calibrated closed loop, the host feeding each output back")):
        if pairs_of:
            log(describe(pairs_of, where))
    bound = StateBinding(state.chip if streaming else pairs, state_outputs, on_chip=streaming)
    chip = partial(_compile_chip, target=target, compression=compression, log=log, bound=bound)
    if not plan.needs_host:
        graph = verify(finish_import(builder, proto))
        compiled = chip(proto, graph, name, calibration or default_calibration(graph.input_shapes),
                        streaming=streaming)
        _check_widths(compression, [compiled.graph])
        _log_widths(compression, [compiled.report], log)
        return dataclasses.replace(compiled, sources=sources, partition=plan)
    if chip_only:
        raise RnnaccelError(f"--chip-only: {host_list(plan)}")
    if streaming and not (pairs and one_step(proto, plan.shapes)):
        check_streaming_host(plan, proto)
    inputs = {n: builder.shapes[n] for n in (v.name for v in proto.graph.input) if n in builder.shapes}
    samples = check_calibration(inputs, calibration) if calibration is not None else default_calibration(inputs)
    islands = compile_islands(proto, plan, builder, samples,
                              lambda sub, calib: chip(sub, verify(import_model(sub)), sub.graph.name, calib,
                                                      streaming=streaming and island_streams(sub, state)))
    _check_widths(compression, [island.compiled.graph for island in islands])
    _log_widths(compression, [island.compiled.report for island in islands], log)
    program = partitioned_program(name, proto, plan, builder, islands, state)
    return Compiled(None, program, partitioned_report(name, plan, islands), sources, tuple(islands), plan)


def _kept_state(plan: Partition, proto: onnx.ModelProto, pairs: dict[str, str], streaming: bool,
                state_outputs: bool) -> SplitState:
    """Where a streaming program keeps each pair: a chip program all on chip, a partitioned one
    split between its islands and the host; a program that does not stream keeps none."""
    if not streaming:
        return SplitState()
    if not plan.needs_host:
        return SplitState(chip=dict(pairs), state_outputs=state_outputs)
    return split_state(plan, proto, pairs, state_outputs)


def prepare(proto: onnx.ModelProto, consts: dict[str, list[str | float | int]] | None,
            shapes: dict[str, tuple[int, ...]] | None, log: Callable[[str], None]) -> onnx.ModelProto:
    """The model as the compiler reads it (and --check judges it): inputs frozen (--const),
    --shape written in, BatchNormalization folded into the layer before it (frontend/batchnorm_fold.py),
    cells written as arithmetic recognised (frontend/cells.py) and layers unrolled over time
    re-rolled (frontend/rechain.py), each rewrite logged."""
    proto = with_fixed_shapes(freeze(proto, consts), shapes)
    proto, folds = fold_batch_norms(proto)
    proto, cell_notes = recognise_cells(proto)
    proto, notes = reroll_layers(proto)
    for note in folds + cell_notes + notes:
        log(note)
    return proto


def _compile_chip(proto: onnx.ModelProto, graph: Graph, name: str, calibration: dict[str, np.ndarray],
                  target: Target, compression: Compression | Budget | Widths | None, streaming: bool,
                  log: Callable[[str], None], bound: StateBinding) -> Compiled:
    """One chip program from an imported graph: the whole model's, or one island's."""
    graph = bound.bind(graph)
    check_fits_target(graph, target, streaming, fewest_bytes(compression))
    aware = compression is not None and compression.activation_aware
    samples = check_calibration(graph.input_shapes, calibration)
    calib = calibrate(graph, samples, moments=aware)  # whole sequences, before trimming
    budget = compression if isinstance(compression, Budget) else None
    frame = _frame_graph(proto, graph, bound) if streaming and not per_frame(graph) else None
    whole = None if frame and budget is None else _trimmed(graph)  # what runs, unless one frame does
    choice = _choice(whole, calib.derived(whole), samples, target, budget, bound, log) if budget else None
    graph = _trimmed(frame) if frame else whole
    calib = calib.derived(graph)
    chosen = compression.chosen if isinstance(compression, Widths) else choice.chosen if choice else None
    graph = verify(quantize_graph(graph, calib, target, None if chosen is not None else compression,
                                  bound.mine(graph), chosen, log))
    graph = tune_schedules(graph, target, log)
    for line in headroom_warnings(graph, calib):
        log(line)
    kernel = drop_dead_copies(lower(graph, target))
    kernel = interleave(kernel)
    kernel = reroll(kernel)
    kernel = allocate(kernel, target)
    program = emit(kernel, target, name)
    program = dataclasses.replace(program, recurrence=recurrence_bounds(graph, program))
    report = build_report(graph, kernel, program)
    return Compiled(graph, program, report | {"compression": choice.figures()} if choice else report)


def _frame_graph(proto: onnx.ModelProto, graph: Graph, bound: StateBinding) -> Graph:
    """The graph of one frame of a streaming program, made before --compress auto's search so that
    a model that cannot stream is refused at once, not after it."""
    one_frame = one_frame_model(proto, graph.input_shapes, frame_shapes(graph))
    frame = verify(mark_streaming(bound.bind(import_model(one_frame))))
    check_frame_local(graph, frame)
    return frame


def _log_widths(compression: Compression | Budget | Widths | None, reports: list[dict],
                log: Callable[[str], None]) -> None:
    """--compress auto's last line: the widths it chose (a partitioned program's, every island's,
    each chosen on its own), as the option that compiles the same program without searching; it
    comes after the schedule tuning's lines."""
    choices = [report["compression"] for report in reports if "compression" in report]
    widths = [(m["matrix"], m["bits"]) for choice in choices for m in choice["matrices"]]
    if isinstance(compression, Budget) and widths:
        log(f"the same without searching: --widths {as_option(widths)}")


def _check_widths(compression: Compression | Budget | Widths | None, graphs: list[Graph]) -> None:
    if isinstance(compression, Widths):
        compression.check_names(graphs)


def _trimmed(graph: Graph) -> Graph:
    """Pointwise ops moved before gathers, and sequence outputs nobody reads dropped."""
    return verify(trim_sequence_outputs(sink_pointwise(graph)))


def _choice(graph: Graph, calib: Calibration, samples: dict[str, np.ndarray], target: Target, budget: Budget,
            bound: StateBinding, log: Callable[[str], None]) -> Choice:
    """--compress auto: the widths, chosen on the whole sequences, trimmed (a streaming program's
    frame graph names its matrices as the sequence graph does)."""
    return choose_compression(graph, samples, budget, target,
                              lambda chosen: quantize_graph(graph, calib, target, None, bound.mine(graph), chosen),
                              log, frozenset(bound.mine(graph).values()))

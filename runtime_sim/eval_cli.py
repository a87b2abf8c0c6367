"""rnnaccel-eval: a program's accuracy on a labelled data set, bit-accurately.

    rnnaccel-eval PROG.rnna --data TEST.npz [--labels KEY] [--input-key KEY] [--per-frame]
                  [--threshold X] [--reference MODEL.onnx] [--plot FILE.png]

Prints chip top-1, with --reference the float model's top-1 (ONNX Runtime) and the top-1
agreement, the confusion matrix and the throughput. Labels [N, T] (or --per-frame) evaluate
every frame instead (runtime_sim.frames): frame accuracy and agreement, and event detection.
A user error ends with one line on stderr and exit status 2, and writes no plot (isa.cliutil, isa.fileio).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from isa.cliutil import add_max_instructions, add_version, run_cli, write_stdout
from isa.errors import RnnaccelError
from isa.fileio import read_npz
from isa.outputs import check_paths, write_atomic
from runtime_sim.batch import progress_bar
from runtime_sim.detection import Detection
from runtime_sim.evaluate import (
    Evaluation,
    class_count,
    class_names,
    data_array,
    evaluate,
    labels_path,
    select_inputs,
    select_labels,
    top1,
)
from runtime_sim.float_ref import float_scores, onnxruntime
from runtime_sim.frames import FrameEvaluation, evaluate_frames
from runtime_sim.partitioned import load
from runtime_sim.plot import confusion_png, require_matplotlib
from runtime_sim.simulator import check_inputs

PROG = "rnnaccel-eval"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Measure a program's top-1 accuracy on a labelled data set; with labels [N, T], its "
                               "accuracy per frame and its event detection (latency, misses, false alarms), "
                               "whole-sequence or streaming.")
    p.add_argument("program", metavar="PROG.rnna", help="program container from rnnaccel-compile")
    add_data_arguments(p, "the model inputs with a leading samples axis, and the labels",
                       "the data's array of integer labels: [N], one per sample, or [N, T], one per frame (default y)",
                       "program's")
    p.add_argument("--per-frame", action="store_true",
                   help="evaluate every frame: labels [N, T] (chosen anyway when the labels are 2-D); class 0 "
                        "is the background, a run of one other label an event")
    p.add_argument("--threshold", type=float, metavar="X",
                   help="a one-score-per-frame output is positive above X, on the dequantised score (default 0.5; "
                        "give 0 for a logit output)")
    p.add_argument("--reference", metavar="MODEL.onnx",
                   help="also run the float model with ONNX Runtime (for a streaming program, the whole-sequence "
                        "model it was compiled from, or a per-frame model that carries its state, run frame by frame)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="write the confusion matrix (of frames, in frame mode) as a heatmap (needs matplotlib)")
    add_max_instructions(p)
    add_version(p)
    return p


def add_data_arguments(p: argparse.ArgumentParser, data_help: str, labels_help: str, whose: str) -> None:
    """--data, --labels and --input-key: a data set and which of its arrays are the labels and the
    input, as rnnaccel-eval and rnnaccel-sweep read them (runtime_sim.evaluate.select_inputs)."""
    p.add_argument("--data", required=True, metavar="TEST.npz", help=data_help)
    p.add_argument("--labels", default="y", metavar="KEY", help=labels_help)
    p.add_argument("--input-key", metavar="KEY",
                   help=f"the data's array for the {whose} one input (default: the input's name, else the only "
                        "array besides the labels)")


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f} % ({part}/{whole})" if whole else "- (no samples)"


def confusion_text(ev: Evaluation, names: list[str]) -> str:
    """Rows: true class; columns: chip prediction; last column: the row's accuracy."""
    width = max(5, *(len(n) for n in names))
    head = " " * width + "".join(f" {n[:width]:>{width}}" for n in names) + f" {'acc':>6}\n"
    rows = []
    for name, row in zip(names, ev.confusion):
        acc = f"{row[names.index(name)] / row.sum():6.2f}" if row.sum() else "     -"
        rows.append(f"{name:<{width}}" + "".join(f" {n:>{width}}" for n in row) + f" {acc}\n")
    return head + "".join(rows)


def _line(label: str, text: str) -> str:
    return f"{label + ':':<18}{text}"


def _agreement(ev: Evaluation, reference: str | None, what: str, agreement: str) -> list[str]:
    """Chip and float accuracy (`what`) and their `agreement`, over the entries of `ev` (samples or frames)."""
    n = len(ev.labels)
    lines = [_line(f"chip {what}", _percent(int((ev.chip == ev.labels).sum()), n))]
    if ev.reference is not None:
        lines += [_line(f"float {what}", f"{_percent(int((ev.reference == ev.labels).sum()), n)}  (ONNX Runtime, "
                                          f"{Path(reference).name})"),
                  _line(agreement, _percent(int((ev.reference == ev.chip).sum()), n))]
    return lines


def _throughput(ev: Evaluation, unit: str, run: str) -> list[str]:
    """Wall-clock and chip speed; `unit` is what the totals count, `run` what one chip run computes."""
    totals, stats, n = ev.totals, ev.stats, ev.totals["samples"]
    rate = n / totals["wall_seconds"] if totals["wall_seconds"] else 0.0
    return [_line("throughput", f"{n} {unit}s in {totals['wall_seconds']:.2f} s wall ({rate:.0f} {unit}s/s, "
                                f"{totals['simulated_macs_per_second'] / 1e6:.1f} M simulated MACs/s)"),
            _line("on the chip", f"{stats['latency_us']:.2f} us per {run} at {stats['clock_mhz']} MHz "
                                 f"({1e6 / stats['latency_us']:.0f} {run}s/s), {stats['mac_utilization']:.1%} MAC "
                                 f"utilisation")]


def report(ev: Evaluation, reference: str | None) -> str:
    """The classifier's summary, up to the confusion matrix."""
    lines = [_line("samples", f"{len(ev.labels)}, {ev.classes} classes"),
             *_agreement(ev, reference, "top-1", "top-1 agreement"),
             *_throughput(ev, "sample", "inference"), "confusion matrix (rows: true class, columns: chip prediction):"]
    return "\n".join(lines) + "\n"


def _detection(d: Detection) -> str:
    latency = "-" if d.mean_latency is None else f"mean {d.mean_latency:.2f}, median {d.median_latency:.1f} frames"
    return f"{d.events - d.missed} detected, {d.missed} missed, {d.false_alarms} false alarms; latency {latency}"


def frame_report(fe: FrameEvaluation, reference: str | None) -> str:
    """The frame-level summary, up to the confusion matrix of frames."""
    ev = fe.frames
    scores = f"one score per frame, positive above {fe.threshold:g}" if fe.one_score else f"{ev.classes} classes"
    lines = [_line("sequences", f"{fe.sequences} of {fe.length} frames, {scores}"),
             *_agreement(ev, reference, "frames", "frame agreement"),
             _line("events", f"{fe.chip_events.events} (runs of one non-zero label)"),
             _line("chip detection", _detection(fe.chip_events))]
    if fe.float_events is not None:
        lines.append(_line("float detection", _detection(fe.float_events)))
    unit = "frame" if fe.streaming else "sequence"
    lines += [*_throughput(ev, unit, unit), "confusion matrix of frames (rows: true class, columns: chip prediction):"]
    return "\n".join(lines) + "\n"


def _main(argv: list[str] | None) -> None:
    args = _parser().parse_args(argv)
    if args.reference:
        onnxruntime()
    if args.plot:
        require_matplotlib()
    check_paths({"program": args.program, "data": args.data, "reference model": args.reference,
                 "class names": labels_path(args.data)}, {"--plot": args.plot})
    sim = load(args.program, False, args.max_instructions)
    data = read_npz(args.data, "data")
    inputs = select_inputs(sim.inputs, data, args.labels, args.input_key)
    labels = data_array(data, args.labels, "--labels")
    if args.per_frame or labels.ndim == 2:
        fe = evaluate_frames(sim, inputs, labels, args.labels, args.threshold, args.reference, progress_bar())
        ev, text, what = fe.frames, frame_report(fe, args.reference), "frame accuracy"
    else:
        ev = _classify(args, sim, inputs, data)
        text, what = report(ev, args.reference), "top-1"
    names = class_names(args.data, ev.classes, _warn)
    if args.plot:
        write_atomic(args.plot, confusion_png(ev.confusion, names, f"{sim.program.model}: chip {what} "
                                              f"{ev.chip_accuracy:.2%}"))
    write_stdout(text + confusion_text(ev, names))


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _classify(args: argparse.Namespace, sim, inputs: dict, data: dict) -> Evaluation:
    """One label per sample: top-1 of the program's one score vector."""
    if args.threshold is not None:
        raise RnnaccelError("--threshold applies to frame-level evaluation (labels [N, T] or --per-frame)")
    check_inputs(sim.inputs, inputs, batch=True)
    classes, samples = class_count(sim.outputs), len(next(iter(inputs.values())))
    if samples == 0:
        raise RnnaccelError(f"the data {args.data} has no samples: its arrays' leading axis is 0")
    labels = select_labels(data, args.labels, samples, classes)
    ref = top1(float_scores(args.reference, sim.program, inputs)) if args.reference else None
    return evaluate(sim, inputs, labels, ref, progress_bar())


def main(argv: list[str] | None = None) -> None:
    """Entry point of rnnaccel-eval; exits (status 2 with one line on stderr for a user error)."""
    run_cli(PROG, _main, argv)


if __name__ == "__main__":
    main()

"""rnnaccel-eval: a program's accuracy on a labelled data set, bit-accurately.

    rnnaccel-eval PROG.rnna --data TEST.npz [--labels KEY] [--input-key KEY]
                  [--reference MODEL.onnx] [--plot FILE.png]

Prints chip top-1, with --reference the float model's top-1 (ONNX Runtime) and the top-1
agreement, the confusion matrix and the throughput. A user error ends with one line on stderr
and exit status 2, and writes no plot (isa.cliutil, isa.fileio).
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
from runtime_sim.evaluate import (
    Evaluation,
    class_count,
    class_names,
    evaluate,
    labels_path,
    select_inputs,
    select_labels,
    top1,
)
from runtime_sim.float_ref import float_scores, onnxruntime
from runtime_sim.partitioned import load
from runtime_sim.plot import confusion_png, require_matplotlib
from runtime_sim.simulator import check_inputs

PROG = "rnnaccel-eval"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Measure a program's top-1 accuracy on a labelled data set.")
    p.add_argument("program", metavar="PROG.rnna", help="program container from rnnaccel-compile")
    p.add_argument("--data", required=True, metavar="TEST.npz",
                   help="the model inputs with a leading samples axis, and the labels")
    p.add_argument("--labels", default="y", metavar="KEY", help="the data's array of integer labels (default y)")
    p.add_argument("--input-key", metavar="KEY",
                   help="the data's array for the program's one input (default: the input's name, else the only "
                        "array besides the labels)")
    p.add_argument("--reference", metavar="MODEL.onnx", help="also run the float model with ONNX Runtime")
    p.add_argument("--plot", metavar="FILE.png", help="write the confusion matrix as a heatmap (needs matplotlib)")
    add_max_instructions(p)
    add_version(p)
    return p


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


def report(ev: Evaluation, names: list[str], reference: str | None) -> str:
    n, totals, stats = len(ev.labels), ev.totals, ev.stats
    lines = [f"samples:          {n}, {ev.classes} classes",
             f"chip top-1:       {_percent(int((ev.chip == ev.labels).sum()), n)}"]
    if ev.reference is not None:
        lines += [f"float top-1:      {_percent(int((ev.reference == ev.labels).sum()), n)}  (ONNX Runtime, "
                  f"{Path(reference).name})",
                  f"top-1 agreement:  {_percent(int((ev.reference == ev.chip).sum()), n)}"]
    rate = n / totals["wall_seconds"] if totals["wall_seconds"] else 0.0
    lines += [f"throughput:       {n} samples in {totals['wall_seconds']:.2f} s wall ({rate:.0f} samples/s, "
              f"{totals['simulated_macs_per_second'] / 1e6:.1f} M simulated MACs/s)",
              f"on the chip:      {stats['latency_us']:.2f} us per inference at {stats['clock_mhz']} MHz "
              f"({1e6 / stats['latency_us']:.0f} inferences/s), {stats['mac_utilization']:.1%} MAC utilisation",
              "confusion matrix (rows: true class, columns: chip prediction):"]
    return "\n".join(lines) + "\n" + confusion_text(ev, names)


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
    check_inputs(sim.inputs, inputs, batch=True)
    classes, samples = class_count(sim.outputs), len(next(iter(inputs.values())))
    if samples == 0:
        raise RnnaccelError(f"the data {args.data} has no samples: its arrays' leading axis is 0")
    labels = select_labels(data, args.labels, samples, classes)
    ref = top1(float_scores(args.reference, sim.program, inputs)) if args.reference else None
    ev = evaluate(sim, inputs, labels, ref, progress_bar())
    names = class_names(args.data, classes, lambda message: print(f"{PROG}: warning: {message}", file=sys.stderr))
    if args.plot:
        write_atomic(args.plot, confusion_png(ev.confusion, names, f"{sim.program.model}: chip top-1 "
                                              f"{ev.chip_accuracy:.2%}"))
    write_stdout(report(ev, names, args.reference))


def main(argv: list[str] | None = None) -> None:
    """Entry point of rnnaccel-eval; exits (status 2 with one line on stderr for a user error)."""
    run_cli(PROG, _main, argv)


if __name__ == "__main__":
    main()

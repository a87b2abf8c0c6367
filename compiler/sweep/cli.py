"""rnnaccel-sweep: a design-space sweep over targets, compile options and models.

    rnnaccel-sweep MODEL.onnx [MODEL.onnx ...] [--target NAME|FILE,...] [--macs N,...]
                   [--weight-bits 8,16] [--weight-mem BYTES,...] [--compress none,4,3,2,auto,auto:S] [--partition]
                   --calibration CALIB.npz --data TEST.npz [--labels KEY] [--input-key KEY] [--samples N]
                   -o RESULTS.csv [--cache DIR] [--plot PARETO.png]
                   [--workers N | --scheduler ADDRESS [--timeout SECONDS]] [-q]

Every combination of the comma lists is a point, compiled, simulated on the data and scored
(accuracy against the labels, else top-1 agreement with the float model); the table has a row per
point, a failed point's row says why. Points are computed on Dask and cached beside the results,
so a stopped sweep resumes and a repeated one recomputes nothing. The CSV and the plot are written
whole at the end; a user error ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import onnx

from compiler.frontend.onnx_import import load_model
from compiler.sweep.cache import Cache
from compiler.sweep.data import metric, read_data, scorings
from compiler.sweep.grid import (
    Axes,
    Point,
    bytes_digest,
    comma_list,
    compression,
    grid,
    inputs_digest,
    integer,
    point_key,
    toolchain_digest,
)
from compiler.sweep.pareto import front_text, fronts, fronts_png
from compiler.sweep.run import Outcome, Progress, Work, dask_client, distributed, run_sweep
from compiler.sweep.table import csv_text, rows
from isa.cliutil import add_version, run_cli, write_stdout
from isa.errors import RnnaccelError
from isa.fileio import read_npz
from isa.outputs import check_paths, write_all
from isa.target import TARGETS
from runtime_sim.eval_cli import add_data_arguments
from runtime_sim.plot import require_matplotlib

PROG = "rnnaccel-sweep"
# the comma-list options: argparse dest, Axes field, parser of one value, metavar, default, help
AXES: tuple[tuple[str, str, Callable[[str], object], str, str | None, str], ...] = (
    ("target", "targets", str, "NAME|FILE,...", "rnnaccel",
     f"target descriptions: names ({', '.join(TARGETS)}) or JSON files (default rnnaccel)"),
    ("macs", "macs", integer, "N,...", None, "MAC lanes (default: each target's)"),
    ("weight_bits", "weight_bits", integer, "B,...", None, "stored weight widths, 8 or 16 (default: each target's)"),
    ("weight_mem", "weight_mem", integer, "BYTES,...", None, "weight memory sizes (default: each target's)"),
    ("compress", "compress", compression, "C,...", "none",
     "weight compression: none, 4, 3, 2 (bits per codebook index), auto (within the default accuracy budget "
     "of rnnaccel-compile --compress auto) or auto:S (within top-1 agreement S, its --min-agreement) "
     "(default none)"),
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Compile, simulate and score every combination of targets, "
                                "compile options and models; print and plot the Pareto fronts.")
    p.add_argument("models", metavar="MODEL.onnx", nargs="+", help="the ONNX models to sweep (distinct file names)")
    for dest, _, _, metavar, default, text in AXES:
        p.add_argument(f"--{dest.replace('_', '-')}", metavar=metavar, default=default, help=text)
    p.add_argument("--partition", action="store_true",
                   help="let the host run what the chip cannot run or hold, as rnnaccel-compile does by default "
                        "(default: chip only, such a point fails; energy counts only the chip's part)")
    p.add_argument("--calibration", metavar="CALIB.npz", required=True, help="sample inputs for quantisation")
    add_data_arguments(p, "the inputs every point is scored on, with a leading samples axis, and the labels",
                       "the data's array of integer labels, one per sample (default y); without it points are "
                       "scored by top-1 agreement with the float model (ONNX Runtime)", "models'")
    p.add_argument("--samples", type=integer, metavar="N", help="score on N evenly spaced samples of the data")
    p.add_argument("-o", "--output", metavar="RESULTS.csv", required=True, help="the results table to write")
    p.add_argument("--cache", metavar="DIR", help="computed points, one JSON file each (default RESULTS.csv.cache)")
    p.add_argument("--plot", metavar="PARETO.png", help="also plot the Pareto fronts (needs matplotlib)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=integer, metavar="N", default=os.cpu_count() or 1,
                       help="worker processes of the local Dask cluster (default: this machine's cores)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on an existing Dask cluster, given its scheduler's address (tcp://host:port)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long to try to reach --scheduler (default 10)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or notes on standard error")
    add_version(p)
    return p


def _axes(args: argparse.Namespace) -> Axes:
    """The comma lists given; an option left out keeps Axes' default."""
    given = {field: comma_list(getattr(args, dest), f"--{dest.replace('_', '-')}", parse)
             for dest, field, parse, *_ in AXES if getattr(args, dest) is not None}
    return Axes(**given, chip_only=not args.partition)


def _models(paths: list[str]) -> dict[str, onnx.ModelProto]:
    """Each model by its file name's stem, the name its rows carry."""
    names = [Path(p).stem for p in paths]
    if len(set(names)) != len(names):
        raise RnnaccelError(f"two models are named alike ({', '.join(names)}): rows name a model by its file name")
    return {name: load_model(path) for name, path in zip(names, paths)}


def _note(args: argparse.Namespace) -> Callable[[str], None]:
    return (lambda message: None) if args.quiet else (lambda message: print(f"{PROG}: {message}", file=sys.stderr))


def _progress(args: argparse.Namespace) -> Progress | None:
    """Points done of all and failures, on one line of a terminal's standard error."""
    if args.quiet or not sys.stderr.isatty():
        return None

    def draw(done: int, total: int, failed: int) -> None:
        sys.stderr.write(f"\r{PROG}: {done}/{total} points done, {failed} failed")
        sys.stderr.write("\n" if done >= total else "")
        sys.stderr.flush()

    return draw


def _checked_paths(args: argparse.Namespace) -> None:
    targets = [t for t in args.target.split(",") if t.strip() and t.strip() not in TARGETS]
    inputs = {**{f"model {m}": m for m in args.models}, **{f"target file {t}": t for t in targets},
              "calibration data": args.calibration, "data": args.data}
    check_paths(inputs, {"-o": args.output, "--plot": args.plot})


def _main(argv: list[str] | None) -> None:
    args = _parser().parse_args(argv)
    if not args.timeout > 0:
        raise RnnaccelError(f"--timeout {args.timeout:g}: expected a positive number of seconds")
    axes = _axes(args)
    distributed()
    if args.plot:
        require_matplotlib()
    _checked_paths(args)
    models = _models(args.models)
    points = grid(list(models), axes)
    calibration, data = read_npz(args.calibration, "calibration"), read_data(args.data, args.samples)
    keys = _keys(points, models, inputs_digest(calibration, data, args.labels, args.input_key))
    work = Work(models, calibration, data, scorings(data, args.labels, args.input_key, dict(zip(models, args.models))))
    connect = partial(dask_client, args.scheduler, args.workers, args.timeout)
    outcome = run_sweep(connect, points, keys, work, Cache(args.cache or f"{args.output}.cache"), _progress(args))
    score = metric(data, args.labels)
    table = rows(points, outcome.measures, score)
    title = f"{', '.join(models)}: {len(points)} points on {len(next(iter(data.values())))} samples"
    plot = {args.plot: fronts_png(table, score, title)} if args.plot else {}
    write_all({args.output: csv_text(table, score), **plot})
    _note(args)(_counts(outcome, table, args.output))
    write_stdout("\n".join(front_text(f, table) for f in fronts(score)))


def _keys(points: list[Point], models: dict[str, onnx.ModelProto], inputs: str) -> list[str]:
    """Each point's cache key (grid.point_key), the models' bytes and the toolchain hashed once."""
    toolchain = toolchain_digest()
    digests = {name: bytes_digest(m.SerializeToString(deterministic=True)) for name, m in models.items()}
    return [point_key(p, digests[p.model], inputs, toolchain) for p in points]


def _counts(outcome: Outcome, table: list[dict[str, object]], output: str) -> str:
    failed = sum(row["status"] != "ok" for row in table)
    return (f"{len(table)} points ({outcome.computed} computed, {outcome.cached} from the cache), {failed} failed; "
            f"table in {output}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of rnnaccel-sweep; exits (status 2 with one line on stderr for a user error)."""
    run_cli(PROG, _main, argv)


if __name__ == "__main__":
    main()
